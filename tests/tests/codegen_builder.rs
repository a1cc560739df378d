//! Builder settings, checked on the generated code: which messages are events, the prost config
//! pass-through, and `bus/options.proto` served without an include path.

/// Builds `source` (as `acme/v1/acme.proto`) with `configure` and returns the code generated for
/// `package`.
fn generate(
    source: &str,
    package: &str,
    configure: impl FnOnce(bus_build::Builder) -> bus_build::Builder,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("acme/v1")).unwrap();
    std::fs::write(src.join("acme/v1/acme.proto"), source).unwrap();
    configure(bus_build::configure())
        .out_dir(dir.path())
        .emit_rerun_if_changed(false)
        .compile_protos(&[src.join("acme/v1/acme.proto")], &[&src])
        .expect("builds");
    std::fs::read_to_string(dir.path().join(format!("{package}.rs"))).unwrap()
}

const ACME: &str = r#"syntax = "proto3";
package acme.v1;
message Pinged { string event_id = 1; }
message Ponged { string event_id = 1; }
message Detail { string text = 1; }
"#;

fn is_event(code: &str, rust_name: &str) -> bool {
    code.contains(&format!("impl ::bus::__private::Event for {rust_name} {{"))
}

#[test]
fn a_package_without_an_events_segment_has_no_events_by_default() {
    let code = generate(ACME, "acme.v1", |b| b);
    assert!(!is_event(&code, "Pinged"));
    assert!(
        !code.contains("AnyEvent"),
        "no registry for a package without events"
    );
    assert!(
        code.contains("pub struct Detail"),
        "messages are still generated"
    );
}

#[test]
fn event_packages_and_event_messages_select_events() {
    let code = generate(ACME, "acme.v1", |b| b.event_packages(["acme.v1"]));
    for name in ["Pinged", "Ponged", "Detail"] {
        assert!(is_event(&code, name), "{name}");
    }
    let code = generate(ACME, "acme.v1", |b| b.event_messages([".acme.v1.Pinged"]));
    assert!(is_event(&code, "Pinged"));
    assert!(!is_event(&code, "Ponged") && !is_event(&code, "Detail"));
    assert!(
        code.contains("\"acme.v1.pinged\""),
        "default topic: package + snake_case"
    );
}

#[test]
fn a_topic_option_makes_an_event_anywhere() {
    let source = r#"syntax = "proto3";
package acme.v1;
import "bus/options.proto";
message Pinged {
  option (bus.topic) = "acme.pings";
}
message Detail { string text = 1; }
"#;
    let code = generate(source, "acme.v1", |b| b);
    assert!(is_event(&code, "Pinged"));
    assert!(!is_event(&code, "Detail"));
    assert!(
        code.contains("/// `acme.pings`: the topic of [`acme.v1.Pinged`]"),
        "{code}"
    );
}

#[test]
fn the_prost_config_is_used() {
    let mut config = prost_build::Config::new();
    config.type_attribute(
        ".acme.v1.Detail",
        "#[allow(clippy::derive_partial_eq_without_eq)]",
    );
    let code = generate(ACME, "acme.v1", |b| b.prost_config(config));
    assert!(
        code.contains("#[allow(clippy::derive_partial_eq_without_eq)]\n"),
        "{code}"
    );
}

#[test]
fn the_options_proto_is_shipped() {
    assert!(bus_build::OPTIONS_PROTO.contains("optional string topic = 50851;"));
    assert_eq!(bus_build::OPTIONS_PROTO_NAME, "bus/options.proto");
}
