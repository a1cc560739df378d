//! Compile-fail (UI) tests of `#[event_handler]`: every wrong use is a compile error on the
//! offending tokens, with the message pinned in `tests/ui/*.stderr`.
//!
//! The messages are rustc's, so they are pinned for the toolchain this project builds with
//! (stable 1.95). After an intended change of a message, regenerate with
//! `TRYBUILD=overwrite cargo test -p tests --test ui` and review the diff.

#[test]
fn event_handler_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
