//! Micro-benchmark of the generated registry: `cargo run --release -p examples --bin codegen_bench`.
//!
//! Prints time and allocations per operation for registry lookups and `AnyEvent::decode`
//! dispatch, beside decoding the concrete type directly (the floor) in the same run. Lookups must
//! allocate nothing; dispatch must allocate exactly what the direct decode does.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::alloc::System;
use std::hint::black_box;
use std::time::Instant;

use bus::Event;
use bytes::Bytes;
use cqc::assets::v1::Asset;
use cqc::events::v1::{AnyEvent, AssetCreated, REGISTRY, RiskAlert};
use prost::Message;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

struct Figure {
    ns_per_op: f64,
    allocs_per_op: f64,
}

fn measure(iterations: u64, mut f: impl FnMut(u64)) -> Figure {
    for i in 0..iterations / 10 {
        f(i); // warm up
    }
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    let elapsed = start.elapsed();
    let stats = region.change();
    Figure {
        ns_per_op: elapsed.as_nanos() as f64 / iterations as f64,
        allocs_per_op: (stats.allocations + stats.reallocations) as f64 / iterations as f64,
    }
}

fn row(name: &str, f: &Figure, baseline: Option<&Figure>) {
    let ratio = baseline.map_or(String::new(), |b| {
        format!("{:>6.2}x", f.ns_per_op / b.ns_per_op)
    });
    println!(
        "{name:<44} {:>9.1} ns/op {:>7.2} allocs/op {ratio}",
        f.ns_per_op, f.allocs_per_op
    );
}

fn main() {
    let iterations: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("iterations: a number"))
        .unwrap_or(2_000_000);
    let topics: Vec<&str> = REGISTRY.iter().map(|e| e.topic()).collect();
    let names: Vec<&str> = REGISTRY.iter().map(|e| e.full_name()).collect();
    let pick = |i: u64, v: &[&'static str]| v[i as usize % v.len()];

    println!("codegen micro-benchmark, {iterations} iterations per row");
    println!(
        "size_of: AnyEvent {} bytes, PositionChanged {} bytes, RiskAlert {} bytes",
        std::mem::size_of::<AnyEvent>(),
        std::mem::size_of::<cqc::events::v1::PositionChanged>(),
        std::mem::size_of::<RiskAlert>()
    );
    let by_topic = measure(iterations, |i| {
        black_box(REGISTRY.by_topic(black_box(pick(i, &topics))));
    });
    row("REGISTRY.by_topic (14 topics, cycled)", &by_topic, None);
    let by_name = measure(iterations, |i| {
        black_box(REGISTRY.by_full_name(black_box(pick(i, &names))));
    });
    row("REGISTRY.by_full_name", &by_name, None);
    let miss = measure(iterations, |_| {
        black_box(REGISTRY.by_topic(black_box("cqc.events.v1.unknown")));
    });
    row("REGISTRY.by_topic (unknown topic)", &miss, None);
    let matching = measure(iterations / 10, |_| {
        black_box(REGISTRY.matching(black_box("cqc.events.v1.*")).count());
    });
    row("REGISTRY.matching(\"cqc.events.v1.*\")", &matching, None);

    let asset_created = AssetCreated {
        event_id: "evt-1".into(),
        actor_id: "user-1".into(),
        asset: Some(Asset {
            asset_id: "asset-1".into(),
            symbol: "ETH".into(),
            ..Default::default()
        }),
        source: "bench".into(),
        ..Default::default()
    };
    let payload = Bytes::from_static(asset_created.encode_to_vec().leak());
    let direct = measure(iterations, |_| {
        black_box(AssetCreated::decode(black_box(payload.clone())).unwrap());
    });
    row("AssetCreated::decode (direct, baseline)", &direct, None);
    let dispatched = measure(iterations, |_| {
        black_box(
            AnyEvent::decode(black_box(AssetCreated::TOPIC.as_str()), payload.clone()).unwrap(),
        );
    });
    row(
        "AnyEvent::decode(topic, AssetCreated)",
        &dispatched,
        Some(&direct),
    );

    let alert = RiskAlert {
        risk_score: 50.0,
        requires_immediate_action: true,
        ..Default::default()
    };
    let payload = Bytes::from_static(alert.encode_to_vec().leak());
    let direct = measure(iterations, |_| {
        black_box(RiskAlert::decode(black_box(payload.clone())).unwrap());
    });
    row("RiskAlert::decode (direct, no strings)", &direct, None);
    let dispatched = measure(iterations, |_| {
        black_box(AnyEvent::decode(black_box(RiskAlert::TOPIC.as_str()), payload.clone()).unwrap());
    });
    row(
        "AnyEvent::decode(topic, RiskAlert)",
        &dispatched,
        Some(&direct),
    );
}
