//! The `traces` example on the memory backend: it prints one trace from the upstream caller
//! through both handlers, a producer span and its consumer child per hop, and the ledger
//! handler received the caller's baggage.

use std::process::Command;

#[test]
fn prints_one_trace_through_both_handlers() {
    let out = Command::new(env!("CARGO_BIN_EXE_traces"))
        .env_remove("BUS_BACKEND")
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ledger received baggage Some(\"tenant=acme\")"),
        "{stdout}"
    );
    let tree: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("trace "))
        .collect();
    assert_eq!(
        tree.first().copied(),
        Some("trace 4bf92f3577b34da6a3ce929d0e0e4736"),
        "the upstream caller's trace: {stdout}"
    );
    // Each span one level below the one before it.
    let expected = [
        "handle HTTP POST /orders [Internal]",
        "publish cqc.events.v1.order_placed [Producer]",
        "process cqc.events.v1.order_placed [Consumer]",
        "publish cqc.events.v1.position_changed [Producer]",
        "process cqc.events.v1.position_changed [Consumer]",
    ];
    assert_eq!(tree.len(), 1 + expected.len(), "{stdout}");
    for (depth, (line, span)) in tree[1..].iter().zip(expected).enumerate() {
        let indent = 2 * (depth + 1);
        assert!(
            line.starts_with(&format!("{:indent$}{span}", "")),
            "line {depth} should be `{span}` at depth {}: {stdout}",
            depth + 1
        );
    }
    assert!(tree[3].contains("messaging.consumer.group.name=traces-example-risk"));
    assert!(tree[5].contains("messaging.nats.message.delivery_attempt=1"));
}
