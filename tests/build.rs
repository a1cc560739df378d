//! Builds the test-only `shop.*` schema in `fixtures/shop` with `bus-build`, under its own topic
//! prefix, for the codegen tests.

fn main() -> std::io::Result<()> {
    bus_build::configure()
        .topic_prefix("shop.v1")
        .compile_protos(
            &["fixtures/shop/shop/events/v1/events.proto"],
            &["fixtures/shop"],
        )
}
