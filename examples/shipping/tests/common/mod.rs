//! What both tests do: subscribe the handler, publish one of each event, wait for the handler.

use std::time::Duration;

use bus::prost_types::Timestamp;
use bus::{EventBus, handlers};
use shipping::events::v1::{Address, GpsPingV2Received, ParcelShipped, ParcelSize, parcel_shipped};
use shipping::{Shipped, record_shipment};

/// A parcel with every kind of field set.
pub fn parcel(id: &str) -> ParcelShipped {
    ParcelShipped {
        event_id: format!("evt-{id}"),
        shipped_at: Some(Timestamp {
            seconds: 1_800_000_000,
            nanos: 7,
        }),
        parcel_id: id.into(),
        destination: Some(Address {
            street: "1 Dock Road".into(),
            city: "Rotterdam".into(),
            country_code: "NL".into(),
        }),
        items: vec!["sku-1".into(), "sku-2".into()],
        labels: [("fragile".to_owned(), "yes".to_owned())].into(),
        note: Some("leave at the door".into()),
        size: ParcelSize::Large as i32,
        dimensions: Some(parcel_shipped::Dimensions {
            length_mm: 300,
            width_mm: 200,
            height_mm: 100,
        }),
        carrier: Some(parcel_shipped::Carrier::LockerId(42)),
    }
}

/// Runs the handler on `bus`, publishes two parcels and a GPS ping, and checks what arrived.
pub async fn ships_parcels(bus: EventBus) {
    let shipped = Shipped::default();
    bus.subscribe_all(handlers![record_shipment.with_state(shipped.clone())])
        .await
        .expect("the handler subscribes");
    bus.publish(&parcel("p-1")).await.expect("published");
    bus.publish(&GpsPingV2Received {
        event_id: "g-1".into(),
        van_id: "van-7".into(),
        ..Default::default()
    })
    .await
    .expect("a GPS ping has a topic too");
    bus.publish(&parcel("p-2")).await.expect("published");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while shipped.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "parcels not delivered: {:?}",
            shipped.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*shipped.lock().unwrap(), ["p-1", "p-2"]);
    bus.close().await.expect("closes cleanly");
}
