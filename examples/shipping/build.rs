//! Generates the shipping events from `proto/`.

fn main() -> std::io::Result<()> {
    bus_build::configure()
        .compile_protos(&["proto/acme/shipping/events/v1/events.proto"], &["proto"])
}
