//! Generates the CQC types, their `Event` impls, topics and registry from `proto/`.

fn main() -> std::io::Result<()> {
    bus_build::configure().compile_protos(
        &[
            "proto/cqc/assets/v1/assets.proto",
            "proto/cqc/markets/v1/markets.proto",
            "proto/cqc/portfolio/v1/portfolio.proto",
            "proto/cqc/venues/v1/venues.proto",
            "proto/cqc/events/v1/events.proto",
        ],
        &["proto"],
    )
}
