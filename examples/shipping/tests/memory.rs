//! On the memory backend with the default configuration: nothing to set.

mod common;

use bus::{Event, EventBus, EventBusConfig};
use shipping::events::v1::{GpsPingV2Received, ParcelShipped, REGISTRY, topics};

#[tokio::test]
async fn handler_runs_on_memory_with_the_default_configuration() {
    let bus = EventBus::connect(EventBusConfig::default())
        .await
        .expect("memory bus");
    common::ships_parcels(bus).await;
}

#[test]
fn names_and_topics() {
    assert_eq!(
        ParcelShipped::TOPIC.as_str(),
        "acme.shipping.events.v1.parcel_shipped"
    );
    assert_eq!(GpsPingV2Received::TOPIC, topics::GPS_PING_V2_RECEIVED);
    assert_eq!(
        GpsPingV2Received::TOPIC.as_str(),
        "acme.shipping.events.v1.gps_ping_v2_received"
    );
    assert_eq!(
        GpsPingV2Received::FULL_NAME,
        "acme.shipping.events.v1.GPSPingV2Received"
    );
    // `Address` is only a field of events: a message, not an event.
    let events: Vec<&str> = REGISTRY.iter().map(|e| e.full_name()).collect();
    assert_eq!(
        events,
        [
            "acme.shipping.events.v1.GPSPingV2Received",
            "acme.shipping.events.v1.ParcelShipped"
        ]
    );
}

#[test]
fn every_field_survives_the_wire() {
    use bus::prost::Message;
    let parcel = common::parcel("p-9");
    let back = ParcelShipped::decode(parcel.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(back, parcel);
    assert_eq!(parcel.event_id(), Some("evt-p-9"));
}
