//! Builds that must fail, and say why: the builder is called as a library on `.proto` files
//! written to a temporary directory. The shared table of subject rules is run through the
//! `(bus.topic)` option too, so the build rejects exactly the topics the runtime rejects.

use std::fmt::Write as _;
use std::path::Path;

/// Writes `files` (name, source) under a temp dir and builds the first one into `out/` there;
/// returns the temp dir (to read the output) and the result.
fn build(
    files: &[(&str, &str)],
    configure: fn(bus_build::Builder) -> bus_build::Builder,
) -> (tempfile::TempDir, std::io::Result<()>) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for (name, source) in files {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, source).unwrap();
    }
    let result = configure(bus_build::configure())
        .out_dir(dir.path().join("out"))
        .emit_rerun_if_changed(false)
        .compile_protos(&[src.join(files[0].0)], &[&src]);
    (dir, result)
}

/// Writes `files` (name, source) under a temp dir and builds the first one; returns the error.
fn build_err(
    files: &[(&str, &str)],
    configure: fn(bus_build::Builder) -> bus_build::Builder,
) -> String {
    let (dir, result) = build(files, configure);
    let err = result.expect_err("the build must fail");
    // Nothing half-generated is left behind.
    assert!(!dir.path().join("out").exists() || dir_is_empty(&dir.path().join("out")));
    let message = err.to_string();
    eprintln!("{message}");
    message
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn two_events_on_one_topic_name_both() {
    // `HTTPRequest` and `HttpRequest` both snake_case to `http_request`.
    let err = build_err(
        &[(
            "acme/events/v1/events.proto",
            r#"syntax = "proto3";
package acme.events.v1;
message HTTPRequest { string url = 1; }
message HttpRequest { string url = 1; }
"#,
        )],
        |b| b,
    );
    assert!(err.contains("acme.events.v1.HTTPRequest"), "{err}");
    assert!(err.contains("acme.events.v1.HttpRequest"), "{err}");
    assert!(err.contains("`acme.events.v1.http_request`"), "{err}");
    assert!(err.contains("(bus.topic)"), "says how to fix it: {err}");
}

#[test]
fn an_override_that_collides_across_packages_names_both() {
    let err = build_err(
        &[
            (
                "acme/events/v1/events.proto",
                r#"syntax = "proto3";
package acme.events.v1;
import "bus/options.proto";
import "acme/billing/v1/billing.proto";
message InvoicePaid {
  option (bus.topic) = "acme.billing.v1.invoice_sent";
  string id = 1;
}
"#,
            ),
            (
                "acme/billing/v1/billing.proto",
                r#"syntax = "proto3";
package acme.billing.v1;
message InvoiceSent { string id = 1; }
"#,
            ),
        ],
        |b| b.event_packages(["acme.events.v1", "acme.billing.v1"]),
    );
    assert!(err.contains("acme.events.v1.InvoicePaid"), "{err}");
    assert!(err.contains("acme.billing.v1.InvoiceSent"), "{err}");
    assert!(err.contains("acme.billing.v1.invoice_sent"), "{err}");
}

#[test]
fn an_invalid_topic_override_is_rejected() {
    for (topic, reason) in [
        ("acme.events.*", "wildcards"),
        ("acme..events", "empty token"),
        ("acme events", "whitespace"),
    ] {
        let source = format!(
            r#"syntax = "proto3";
package acme.events.v1;
import "bus/options.proto";
message Pinged {{
  option (bus.topic) = "{topic}";
}}
"#
        );
        let err = build_err(&[("acme/events/v1/events.proto", &source)], |b| b);
        assert!(err.contains("acme.events.v1.Pinged"), "{err}");
        assert!(err.contains(&format!("`{topic}`")), "{err}");
        assert!(err.contains("(bus.topic)"), "names the option: {err}");
        assert!(err.contains(reason), "{err}");
    }
}

#[test]
fn an_invalid_prefix_is_rejected() {
    let err = build_err(
        &[(
            "acme/events/v1/events.proto",
            "syntax = \"proto3\";\npackage acme.events.v1;\nmessage Pinged {}\n",
        )],
        |b| b.topic_prefix("acme.>"),
    );
    assert!(
        err.contains("acme.>.pinged") && err.contains("topic_prefix"),
        "{err}"
    );
}

#[test]
fn a_syntax_error_gives_file_line_and_reason() {
    let err = build_err(
        &[(
            "acme/events/v1/broken.proto",
            "syntax = \"proto3\";\npackage acme.events.v1;\n\nmessage Broken {\n  string id = 1\n}\n",
        )],
        |b| b,
    );
    // The missing `;` is reported where the parser notices it: the `}` on line 6.
    assert!(err.contains("broken.proto:6:1"), "{err}");
    assert!(err.contains("expected"), "{err}");
}

#[test]
fn a_missing_import_gives_file_line_and_reason() {
    let err = build_err(
        &[(
            "acme/events/v1/events.proto",
            "syntax = \"proto3\";\npackage acme.events.v1;\nimport \"acme/nope.proto\";\n",
        )],
        |b| b,
    );
    assert!(err.contains("events.proto:3:1"), "{err}");
    assert!(
        err.contains("acme/nope.proto") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn an_unknown_type_gives_file_line_and_reason() {
    let err = build_err(
        &[(
            "acme/events/v1/events.proto",
            "syntax = \"proto3\";\npackage acme.events.v1;\nmessage Pinged {\n  Missing m = 1;\n}\n",
        )],
        |b| b,
    );
    assert!(err.contains("events.proto:4:3"), "{err}");
    assert!(err.contains("Missing"), "{err}");
}

#[test]
fn a_name_that_clashes_with_generated_items_is_rejected() {
    let err = build_err(
        &[(
            "acme/events/v1/events.proto",
            "syntax = \"proto3\";\npackage acme.events.v1;\nmessage AnyEvent { string id = 1; }\n",
        )],
        |b| b,
    );
    assert!(
        err.contains("acme.events.v1.AnyEvent") && err.contains("rename it"),
        "{err}"
    );
}

/// `s` as the contents of a `.proto` string literal: quotes, backslashes and ASCII control
/// characters escaped, everything else (UTF-8 included) as is.
fn proto_string(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() => write!(out, "\\x{:02x}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out
}

#[test]
fn a_topic_option_follows_the_shared_subject_rules() {
    for &(subject, valid_topic, _) in bus_names::cases::SUBJECTS {
        let source = format!(
            r#"syntax = "proto3";
package acme.events.v1;
import "bus/options.proto";
message Pinged {{
  option (bus.topic) = "{}";
}}
"#,
            proto_string(subject)
        );
        let (dir, result) = build(&[("acme/events/v1/events.proto", &source)], |b| b);
        match (valid_topic, result) {
            (true, Ok(())) => {
                let code =
                    std::fs::read_to_string(dir.path().join("out/acme.events.v1.rs")).unwrap();
                let doc = format!("`{subject}`: the topic of [`acme.events.v1.Pinged`]");
                assert!(code.contains(&doc), "{subject:?} is the topic:\n{code}");
            }
            (true, Err(err)) => panic!("{subject:?} is a valid topic, but the build failed: {err}"),
            (false, Ok(())) => panic!("{subject:?} is not a valid topic, but the build passed"),
            (false, Err(err)) => {
                let reason = bus_names::check_topic(subject).unwrap_err().reason();
                let expected = format!(
                    "event `acme.events.v1.Pinged` has an invalid topic `{subject}` \
                     (from its `(bus.topic)` option): {reason}"
                );
                assert!(err.to_string().contains(&expected), "{subject:?}: {err}");
            }
        }
    }
}
