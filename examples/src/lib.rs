//! Shared code of the examples: the benchmark suites behind `cargo run --release -p examples
//! --bin bench`.

#[cfg(feature = "charts")]
pub mod bench_chart;
pub mod bench_common;
pub mod bench_curves;
pub mod bench_dedup;
pub mod bench_jetstream;
pub mod bench_memory;
pub mod bench_ordering;
#[cfg(feature = "compare-ruststream")]
pub mod bench_ruststream;
pub mod report;
