//! The benchmark: `cargo run --release -p examples --bin bench -- <memory|jetstream> [--json]`.
//!
//! - `memory [--events N]`: publish -> typed handler with 1 and 16 groups beside a raw tokio
//!   channel, and allocations per event.
//! - `jetstream [--url nats://...]`: publish (awaited and pipelined), consume through a typed
//!   handler, paced latency, each beside raw `async-nats` against the same server; starts its own
//!   `nats-server` unless given a URL.
//!
//! Every figure is printed beside the raw limit measured in the same run (a tokio channel for the
//! memory backend), with the ratio, because absolute numbers swing between runs on shared
//! machines. `--json` prints one JSON object per line: `name`, `value`, `unit`, and where there is
//! a baseline, `baseline` and `ratio`.

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const USAGE: &str = "usage: bench memory [--json] [--events N]\n       bench jetstream [--json] [--url nats://host:port]";

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
    let suite = args.first().filter(|a| !a.starts_with("--"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let region = Region::new(GLOBAL);
    match suite.map(String::as_str) {
        Some("memory") => {
            runtime.block_on(examples::bench_memory::run(json, events, || {
                region.change().allocations as u64
            }));
        }
        Some("jetstream") => runtime.block_on(examples::bench_jetstream::run(json, url)),
        Some(other) => fail(&format!("unknown suite `{other}`\n{USAGE}")),
        None => fail(USAGE),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}
