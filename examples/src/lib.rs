//! Shared code of the examples: the benchmark suites behind `cargo run --release -p examples
//! --bin bench`.

pub mod bench_jetstream;
pub mod bench_memory;
pub mod report;
