//! AsyncAPI documents: the committed document of the `cqc` package is what `bus docs` writes now,
//! and every document `bus-build` writes (from the `cqc` schema, with operations, from a schema
//! using maps, oneofs and well-known types, and through `Builder::asyncapi`) is valid against the
//! official AsyncAPI 3.0.0 JSON Schema, vendored in `tests/fixtures/asyncapi/`.
//!
//! After an intended change, re-bless the committed document with
//! `BUS_DOCS_BLESS=1 cargo test -p bus-cli --test asyncapi`, then review `git diff`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

const COMMITTED: &str = "docs/asyncapi/cqc.asyncapi.json";

/// `bus docs ARGS` with a clean `BUS_*` environment (so: the default configuration).
fn docs(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bus"));
    for (name, _) in std::env::vars() {
        if name.starts_with("BUS_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .arg("docs")
        .args(args)
        .output()
        .expect("the bus binary runs");
    assert!(
        out.status.success(),
        "bus docs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every way `doc` breaks the AsyncAPI 3.0.0 schema, one per line.
fn violations(doc: &Value) -> Vec<String> {
    let path = workspace().join("tests/fixtures/asyncapi/asyncapi-3.0.0.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft7::new(&schema).expect("the official schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(what: &str, doc: &Value) {
    let errors = violations(doc);
    assert!(
        errors.is_empty(),
        "{what} is not valid AsyncAPI 3.0.0:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_committed_cqc_document_is_fresh() {
    let generated = docs(&[]);
    let path = workspace().join(COMMITTED);
    if std::env::var_os("BUS_DOCS_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{COMMITTED} is stale: it differs from `bus docs` at line {}:\n  committed: {:?}\n  \
             generated: {:?}\nRe-bless with `BUS_DOCS_BLESS=1 cargo test -p bus-cli --test \
             asyncapi` and review the diff.",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            generated.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn the_cqc_document_is_valid_and_complete() {
    let doc: Value = serde_json::from_str(&docs(&[])).unwrap();
    assert_valid("the cqc document", &doc);
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().unwrap();
    assert_eq!(
        channels.len(),
        28,
        "14 topics and their 14 dead-letter channels"
    );
    let channel = &channels["cqc.events.v1.price_updated"];
    assert_eq!(channel["address"], "cqc.events.v1.price_updated");
    assert_eq!(channel["description"], "A market's price changed.");
    let dlq = &channels["dlq.cqc.events.v1.price_updated"];
    assert_eq!(dlq["address"], "dlq.cqc.events.v1.price_updated");
    let messages = &doc["components"]["messages"];
    let dead = &messages["cqc.events.v1.PriceUpdated.dead_letter"]["headers"];
    // The dead-letter headers are the bus's own.
    let mut required: Vec<&str> = dead["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    let mut want = vec![
        bus::headers::MSG_ID,
        bus::headers::DLQ_TOPIC,
        bus::headers::DLQ_STREAM_SEQ,
        bus::headers::DLQ_DELIVERIES,
        bus::headers::DLQ_GROUP,
        bus::headers::DLQ_ERROR_CLASS,
        bus::headers::DLQ_ERROR,
    ];
    want.sort_unstable();
    assert_eq!(required, want);
    for header in [
        bus::headers::DLQ_MSG_ID,
        bus::headers::REPLAY_OF,
        bus::headers::EVENT_TYPE,
    ] {
        assert!(dead["properties"].get(header).is_some(), "{header}");
    }
    let classes: Vec<&str> = dead["properties"]["Bus-Dlq-Error-Class"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for class in [
        bus::ErrorClass::Retryable,
        bus::ErrorClass::Timeout,
        bus::ErrorClass::Permanent,
        bus::ErrorClass::Decode,
        bus::ErrorClass::Panic,
        bus::ErrorClass::MaxDeliveries,
    ] {
        assert!(classes.contains(&class.as_str()), "{class}");
    }
    // Payloads: the JSON form of the protobuf message, with the comments.
    let schemas = &doc["components"]["schemas"];
    let price = &schemas["cqc.markets.v1.Price"];
    assert_eq!(price["properties"]["value"]["oneOf"][0]["type"], "number");
    assert_eq!(price["properties"]["timestamp"]["format"], "date-time");
    assert_eq!(
        price["properties"]["marketId"]["description"],
        "The market priced."
    );
    assert_eq!(doc["servers"]["default"]["host"], "127.0.0.1:4222");
    assert_eq!(doc["servers"]["default"]["protocol"], "nats");
}

#[test]
fn documents_with_operations_and_every_kind_of_field_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("kinds/v1")).unwrap();
    std::fs::write(
        dir.path().join("kinds/v1/kinds.proto"),
        r#"syntax = "proto3";
package kinds.events.v1;
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/empty.proto";

// Every kind of field.
message Everything {
  string event_id = 1; // Trailing comment.
  int32 i32 = 2; sint64 s64 = 3; uint64 u64 = 4; fixed32 f32 = 5; double d = 6; float f = 7;
  bool b = 8; bytes raw = 9;
  repeated string tags = 10;
  map<string, Part> parts = 11;
  map<int32, double> weights = 12;
  oneof target { string user_id = 13; Part part = 14; }
  optional uint32 retries = 15;
  Kind kind = 16;
  // Well-known types.
  google.protobuf.Timestamp at = 17; google.protobuf.Duration took = 18;
  google.protobuf.Struct meta = 19; google.protobuf.Value value = 20;
  google.protobuf.ListValue list = 21; google.protobuf.Any any = 22;
  google.protobuf.Int64Value big = 23; google.protobuf.FieldMask mask = 24;
  google.protobuf.Empty nothing = 25; google.protobuf.NullValue null = 26;
  Nested.Deep deep = 27;
  message Nested { message Deep { Everything back = 1; } }
}
message Part { string name = 1; }
enum Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; }
"#,
    )
    .unwrap();
    let proto = dir.path().to_str().unwrap();
    let doc: Value = serde_json::from_str(&docs(&[
        "--proto",
        proto,
        "--server",
        "nats://a.example:4222",
        "--server",
        "tls://user:secret@b.example:4443",
        "--title",
        "Risk service",
        "--api-version",
        "2.1.0",
        "--sends",
        "kinds.events.v1.Everything",
        "--receives",
        "risk=cqc.events.v1.price_updated",
    ]))
    .unwrap();
    assert_valid("a document with operations and every kind of field", &doc);
    let ops = doc["operations"].as_object().unwrap();
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(
        ops["receive.risk.cqc.events.v1.price_updated"]["bindings"]["nats"]["queue"],
        "risk"
    );
    assert_eq!(doc["info"]["title"], "Risk service");
    assert_eq!(
        doc["servers"]["server-2"]["host"], "b.example:4443",
        "credentials are not written"
    );
    let everything = &doc["components"]["schemas"]["kinds.events.v1.Everything"];
    assert_eq!(
        everything["properties"]["eventId"]["description"],
        "Trailing comment."
    );
    assert_eq!(everything["properties"]["null"]["type"], "null");
    assert!(doc["components"]["schemas"]["kinds.events.v1.Everything.Nested.Deep"].is_object());

    // The validator does reject what breaks the schema.
    let mut broken = doc.clone();
    broken["channels"]["kinds.events.v1.everything"]["messages"] = Value::String("x".into());
    broken.as_object_mut().unwrap().remove("info");
    assert!(violations(&broken).len() >= 2, "{:?}", violations(&broken));

    // An unknown event for an operation is an error naming it.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bus"));
    let out = cmd
        .args(["docs", "--sends", "cqc.events.v1.Nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`cqc.events.v1.Nope`"));
}

#[test]
fn the_builder_writes_a_valid_document_beside_the_code() {
    let out = tempfile::tempdir().unwrap();
    let shop = workspace().join("tests/fixtures/shop");
    bus_build::configure()
        .topic_prefix("shop.v1")
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .asyncapi("docs/shop.asyncapi.json")
        .asyncapi_settings(
            bus_build::AsyncApi::new()
                .version("1.0.0")
                .receives("billing", ["shop.events.v1.OrderPlaced"]),
        )
        .compile_protos(&[shop.join("shop/events/v1/events.proto")], &[&shop])
        .unwrap();
    let text = std::fs::read_to_string(out.path().join("docs/shop.asyncapi.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_valid("the shop document", &doc);
    // The `(bus.topic)` option gives the channel its address.
    assert_eq!(
        doc["channels"]["shop.v1.shipping.shipped"]["address"],
        "shop.v1.shipping.shipped"
    );
    assert_eq!(doc["info"]["version"], "1.0.0");
}
