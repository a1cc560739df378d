//! Registry lookups and `AnyEvent::decode` dispatch allocate nothing beyond the decoded message,
//! counted with a counting global allocator. One test in this binary, so that nothing else
//! allocates while it counts.

use std::alloc::System;

use bus::Event;
use bytes::Bytes;
use cqc::assets::v1::Asset;
use cqc::events::v1::{AnyEvent, AssetCreated, REGISTRY, RiskAlert};
use prost::Message;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations made by `f`, the fewest of a few tries (the test harness may allocate
/// concurrently, never less).
fn allocations(mut f: impl FnMut()) -> (usize, usize) {
    (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            f();
            let stats = region.change();
            (
                stats.allocations + stats.reallocations,
                stats.bytes_allocated,
            )
        })
        .min()
        .unwrap()
}

#[test]
fn lookups_and_dispatch_allocate_nothing_extra() {
    let topics: Vec<&str> = REGISTRY.iter().map(|e| e.topic()).collect();
    let names: Vec<&str> = REGISTRY.iter().map(|e| e.full_name()).collect();

    let (count, _) = allocations(|| {
        for _ in 0..100 {
            for topic in &topics {
                assert!(REGISTRY.by_topic(std::hint::black_box(topic)).is_some());
            }
            for name in &names {
                assert!(REGISTRY.by_full_name(std::hint::black_box(name)).is_some());
            }
            assert!(REGISTRY.by_topic("cqc.events.v1.nope").is_none());
            assert_eq!(REGISTRY.matching("cqc.events.v1.*").count(), 14);
        }
    });
    assert_eq!(count, 0, "registry lookups allocate");

    // A message with owned data (strings, a nested message): decoding it allocates; dispatching
    // through AnyEvent must allocate exactly as much as decoding the concrete type directly.
    let event = AssetCreated {
        event_id: "evt-1".into(),
        actor_id: "user-1".into(),
        asset: Some(Asset {
            asset_id: "asset-1".into(),
            symbol: "ETH".into(),
            ..Default::default()
        }),
        source: "test".into(),
        ..Default::default()
    };
    let payload = Bytes::from_static(event.encode_to_vec().leak());
    let (direct, direct_bytes) = allocations(|| {
        for _ in 0..100 {
            let e = AssetCreated::decode(payload.clone()).unwrap();
            std::hint::black_box(e);
        }
    });
    let (dispatched, dispatched_bytes) = allocations(|| {
        for _ in 0..100 {
            let e = AnyEvent::decode(AssetCreated::TOPIC.as_str(), payload.clone()).unwrap();
            std::hint::black_box(e);
        }
    });
    assert!(direct > 0, "the message itself allocates (its strings)");
    assert_eq!(
        (dispatched, dispatched_bytes),
        (direct, direct_bytes),
        "AnyEvent::decode allocates beyond the decoded message"
    );

    // A message without owned data decodes and dispatches with no allocation at all.
    let alert = RiskAlert {
        risk_score: 50.0,
        requires_immediate_action: true,
        ..Default::default()
    };
    let payload = Bytes::from_static(alert.encode_to_vec().leak());
    let (count, _) = allocations(|| {
        for _ in 0..100 {
            let e = AnyEvent::decode(RiskAlert::TOPIC.as_str(), payload.clone()).unwrap();
            assert_eq!(e.topic(), RiskAlert::TOPIC.as_str());
            std::hint::black_box(e);
        }
    });
    assert_eq!(
        count, 0,
        "decoding a string-free event through AnyEvent allocates"
    );
}
