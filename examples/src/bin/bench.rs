//! The benchmark: `cargo run --release -p examples --bin bench -- <memory|jetstream> [--json]`.
//!
//! - `memory [--events N] [--trace off|context|otel]`: publish -> typed handler with 1 and 16
//!   groups beside a raw tokio channel, and allocations per event; `--trace` turns
//!   `trace_context` on, alone (`context`) or under an OpenTelemetry layer (`otel`).
//! - `jetstream [--url nats://...]`: publish (awaited and pipelined), consume through a typed
//!   handler, paced latency, each beside raw `async-nats` against the same server; starts its own
//!   `nats-server` unless given a URL. Every phase can run again against the same server, and
//!   fails with what it waited for after a minute without progress. `--compare-ruststream`
//!   (feature `compare-ruststream`) runs RustStream-nats 0.7 on the same events in the same
//!   rounds and prints the bus against it.
//! - `ordering [--url ...]`: `ordered` against `ordered_by` 16 keys, and batch handlers against
//!   one-by-one handling, on the memory backend and JetStream.
//! - `dedup [--url ...]`: what `Nats-Msg-Id` deduplication costs the server (raw `async-nats`
//!   with and without the header).
//! - `curves [--url ...] [--only a,b] [--out DIR]`: how cost grows with payload size, groups,
//!   subjects, handler concurrency, processes in a group, and stream replicas on a 3-node
//!   cluster; a markdown table per curve, and with `--features charts`, `DIR/<curve>.png`.
//!
//! Every figure is printed beside the raw limit measured in the same run (a tokio channel for the
//! memory backend), with the ratio, because absolute numbers swing between runs on shared
//! machines. `--json` prints one JSON object per line: `name`, `value`, `unit`, and where there is
//! a baseline, `baseline` and `ratio`.

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const USAGE: &str = "usage: bench memory [--json] [--events N] [--trace off|context|otel]
       bench jetstream [--json] [--url nats://host:port] [--compare-ruststream]
       bench ordering [--json] [--url nats://host:port]
       bench dedup [--json] [--url nats://host:port]
       bench curves [--json] [--url nats://host:port] [--only payload,groups,topics,concurrency,processes,cluster] [--out DIR]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("--events {v}: not a number")))
        })
        .unwrap_or(1_000_000);
    let url = args.iter().position(|a| a == "--url").map(|i| {
        args.get(i + 1)
            .cloned()
            .unwrap_or_else(|| fail("--url needs a value"))
    });
    let value = |flag: &str| {
        args.iter().position(|a| a == flag).map(|i| {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        })
    };
    let only: Vec<String> = value("--only")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(unknown) = only
        .iter()
        .find(|o| !examples::bench_curves::CURVES.contains(&o.as_str()))
    {
        fail(&format!(
            "--only {unknown}: no such curve; give some of {}",
            examples::bench_curves::CURVES.join(",")
        ));
    }
    let out = value("--out").map(std::path::PathBuf::from);
    let suite = args.first().filter(|a| !a.starts_with("--"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let region = Region::new(GLOBAL);
    match suite.map(String::as_str) {
        Some("memory") => {
            let trace = value("--trace")
                .map(|t| t.parse().unwrap_or_else(|e: String| fail(&e)))
                .unwrap_or(examples::bench_memory::Trace::Off);
            runtime.block_on(examples::bench_memory::run(json, events, trace, || {
                region.change().allocations as u64
            }));
        }
        Some("jetstream") => runtime.block_on(examples::bench_jetstream::run(
            json,
            url,
            args.iter().any(|a| a == "--compare-ruststream"),
        )),
        Some("ordering") => {
            runtime.block_on(examples::bench_ordering::run(json, url));
        }
        Some("dedup") => {
            runtime.block_on(examples::bench_dedup::run(json, url));
        }
        Some("curves") => {
            runtime.block_on(examples::bench_curves::run(json, url, &only, out));
        }
        // A consumer process of the `processes` curve, started by the bench itself.
        Some("group-member") => runtime.block_on(examples::bench_curves::member(
            url.unwrap_or_else(|| fail("group-member needs --url")),
            value("--group").unwrap_or_else(|| fail("group-member needs --group")),
        )),
        Some(other) => fail(&format!("unknown suite `{other}`\n{USAGE}")),
        None => fail(USAGE),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}
