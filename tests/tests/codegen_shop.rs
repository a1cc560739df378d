//! A second, test-only schema (`shop.*`, built by `tests/build.rs` with the topic prefix
//! `shop.v1`) works end to end on the memory bus: typed handlers, a raw handler decoding through
//! the registry, and an `AnyEvent` handler on a wildcard filter.

use std::time::Duration;

use bus::registry::DecodeError;
use bus::{
    ErrorClass, Event, EventBus, EventBusConfig, HandlerError, Headers, MemoryBus, RawMessage,
    Subscription, Topic, headers,
};
use tokio::sync::mpsc;

#[allow(missing_docs, unreachable_pub)]
mod shop {
    pub mod catalog {
        pub mod v1 {
            bus::include_events!("shop.catalog.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            bus::include_events!("shop.events.v1");
        }
    }
}

use shop::catalog::v1::{Currency, Item};
use shop::events::v1::{
    AnyEvent, CartAbandoned, HttpRequestFailed, OrderPlaced, OrderShipped, REGISTRY, topics,
};

fn shop_bus() -> EventBus {
    let mut config = EventBusConfig::memory();
    config.stream.subjects = vec!["shop.>".into()];
    EventBus::from(MemoryBus::new(config).expect("valid config"))
}

fn order() -> OrderPlaced {
    OrderPlaced {
        event_id: "evt-1".into(),
        at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        order_id: "o-1".into(),
        items: vec![Item {
            sku: "sku-9".into(),
            quantity: 2,
            unit_price_cents: 1250,
            currency: Currency::Eur as i32,
        }],
        total_cents: 2500,
    }
}

async fn recv<T>(rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("delivered within 5s")
        .expect("channel open")
}

#[test]
fn topics_follow_prefix_option_and_snake_case() {
    assert_eq!(topics::ORDER_PLACED.as_str(), "shop.v1.order_placed");
    assert_eq!(OrderPlaced::TOPIC, topics::ORDER_PLACED);
    assert_eq!(OrderShipped::TOPIC.as_str(), "shop.v1.shipping.shipped");
    assert_eq!(
        HttpRequestFailed::TOPIC.as_str(),
        "shop.v1.http_request_failed"
    );
    assert_eq!(HttpRequestFailed::EVENT_TYPE, "http_request_failed");
    assert_eq!(
        HttpRequestFailed::FULL_NAME,
        "shop.events.v1.HTTPRequestFailed"
    );
    assert_eq!(CartAbandoned::TOPIC.as_str(), "shop.v1.cart_abandoned");
    // The build-time copy of snake_case agrees with the runtime on every fixture event.
    for event in &REGISTRY {
        let name = event.full_name().rsplit('.').next().unwrap();
        assert_eq!(bus::topic::snake_case(name), bus_build::snake_case(name));
        assert_eq!(event.event_type(), bus::topic::snake_case(name));
    }
}

#[test]
fn event_ids() {
    assert_eq!(order().event_id(), Some("evt-1"));
    assert_eq!(OrderPlaced::default().event_id(), None, "empty id is no id");
    let failed = HttpRequestFailed {
        event_id: Some("h-1".into()),
        ..Default::default()
    };
    // prost gives `optional` fields an inherent accessor of the same name (`event_id() -> &str`),
    // which shadows the trait method: call it through the trait.
    assert_eq!(Event::event_id(&failed), Some("h-1"));
    assert_eq!(Event::event_id(&HttpRequestFailed::default()), None);
    assert_eq!(CartAbandoned::default().event_id(), None);
    assert_eq!(AnyEvent::from(order()).event_id(), Some("evt-1"));
}

#[test]
fn registry_lookups() {
    assert!(std::ptr::eq(AnyEvent::registry(), &REGISTRY));
    assert_eq!(REGISTRY.package(), "shop.events.v1");
    assert_eq!(REGISTRY.len(), 4);
    let topics: Vec<_> = REGISTRY.iter().map(|e| e.topic()).collect();
    assert_eq!(
        topics,
        [
            "shop.v1.cart_abandoned",
            "shop.v1.http_request_failed",
            "shop.v1.order_placed",
            "shop.v1.shipping.shipped"
        ]
    );
    let e = REGISTRY.by_topic("shop.v1.order_placed").unwrap();
    assert_eq!(e.full_name(), OrderPlaced::FULL_NAME);
    assert_eq!(
        REGISTRY
            .by_full_name("shop.events.v1.OrderShipped")
            .unwrap()
            .topic(),
        "shop.v1.shipping.shipped"
    );
    assert!(REGISTRY.by_topic("shop.v1.nope").is_none());
    // `*` is one token: the shipping topic has one more.
    let one_level: Vec<_> = REGISTRY
        .matching("shop.v1.*")
        .map(|e| e.full_name())
        .collect();
    assert_eq!(one_level.len(), 3);
    assert!(!one_level.contains(&OrderShipped::FULL_NAME));
    assert_eq!(REGISTRY.matching("shop.v1.>").count(), 4);
    assert_eq!(REGISTRY.matching("shop.*.shipping.*").count(), 1);
    assert_eq!(REGISTRY.matching("cqc.>").count(), 0);
}

#[test]
fn any_event_round_trip_and_errors() {
    let any = AnyEvent::from(order());
    assert_eq!(any.topic(), "shop.v1.order_placed");
    assert_eq!(any.full_name(), "shop.events.v1.OrderPlaced");
    assert_eq!(any.event_type(), "order_placed");
    let bytes = any.encode_to_vec();
    assert_eq!(bytes, prost::Message::encode_to_vec(&order()));
    assert_eq!(any.encoded_len(), bytes.len());
    let mut buf = Vec::new();
    any.encode(&mut buf).unwrap();
    assert_eq!(buf, bytes);
    assert_eq!(AnyEvent::decode(any.topic(), bytes.clone()).unwrap(), any);
    assert_eq!(
        AnyEvent::decode_by_name(any.full_name(), bytes.clone()).unwrap(),
        any
    );

    match AnyEvent::decode("shop.v1.refunded", bytes.clone()) {
        Err(DecodeError::UnknownTopic { package, topic }) => {
            assert_eq!(package, "shop.events.v1");
            assert_eq!(&*topic, "shop.v1.refunded");
        }
        other => panic!("want UnknownTopic, got {other:?}"),
    }
    match AnyEvent::decode(topics::ORDER_PLACED.as_str(), &b"\x0a\xff"[..]) {
        Err(e @ DecodeError::Payload { .. }) => {
            assert!(e.to_string().contains("shop.events.v1.OrderPlaced"), "{e}");
        }
        other => panic!("want Payload error, got {other:?}"),
    }
    assert!(matches!(
        AnyEvent::decode_by_name("shop.events.v1.Nope", bytes),
        Err(DecodeError::UnknownType { .. })
    ));
}

#[tokio::test]
async fn end_to_end_on_the_memory_bus() -> Result<(), bus::Error> {
    let bus = shop_bus();

    // A typed handler on the event's generated topic.
    let (typed_tx, mut typed_rx) = mpsc::channel(8);
    bus.subscribe(
        Subscription::new("ship_notify", topics::ORDER_SHIPPED).handler(move |e: OrderShipped| {
            let tx = typed_tx.clone();
            async move { tx.send(e).await.map_err(HandlerError::permanent) }
        }),
    )
    .await?;

    // A raw handler that decodes whatever arrives with the registry.
    let (raw_tx, mut raw_rx) = mpsc::channel(8);
    bus.subscribe(
        Subscription::raw("audit", "shop.v1.>")?.handler(move |m: RawMessage| {
            let tx = raw_tx.clone();
            async move {
                let event = AnyEvent::decode(m.topic(), m.payload.clone())
                    .map_err(DecodeError::into_handler_error)?;
                tx.send((m.topic().to_owned(), event))
                    .await
                    .map_err(HandlerError::permanent)
            }
        }),
    )
    .await?;

    // A handler that takes `AnyEvent` directly (it implements `FromMessage`).
    let (any_tx, mut any_rx) = mpsc::channel(8);
    bus.subscribe(
        Subscription::with_filter::<AnyEvent>("analytics", "shop.>")?
            .group("analytics")
            .handler(move |e: AnyEvent| {
                let tx = any_tx.clone();
                async move { tx.send(e).await.map_err(HandlerError::permanent) }
            }),
    )
    .await?;

    let shipped = OrderShipped {
        event_id: "evt-2".into(),
        order_id: "o-1".into(),
        tracking_number: "TRACK-1".into(),
    };
    bus.publish(&order()).await?;
    bus.publish(&shipped).await?;

    assert_eq!(recv(&mut typed_rx).await, shipped);

    let mut raw = vec![recv(&mut raw_rx).await, recv(&mut raw_rx).await];
    raw.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        raw,
        [
            ("shop.v1.order_placed".to_owned(), AnyEvent::from(order())),
            (
                "shop.v1.shipping.shipped".to_owned(),
                AnyEvent::from(shipped.clone())
            ),
        ]
    );

    let mut any = vec![recv(&mut any_rx).await, recv(&mut any_rx).await];
    any.sort_by_key(|e| e.topic());
    assert_eq!(
        any,
        [AnyEvent::from(order()), AnyEvent::OrderShipped(shipped)]
    );

    // An event published on a topic of its own (not its type's default) is decoded through the
    // full type name the bus puts in the headers.
    const EU_ORDERS: Topic<OrderPlaced> = Topic::new("shop.eu.order_placed");
    bus.publish_to(EU_ORDERS, &order()).await?;
    assert_eq!(recv(&mut any_rx).await, AnyEvent::from(order()));

    // Bytes on a topic no shop event uses: the `AnyEvent` handler dead-letters them at once as
    // undecodable, instead of retrying.
    bus.publish_raw("shop.v1.refunded", &b"\x08\x01"[..], Headers::new())
        .await?;
    let dead = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let letters = bus.as_memory().unwrap().dead_letters();
            if let Some(letter) = letters
                .into_iter()
                .find(|d| d.headers.get(headers::DLQ_GROUP) == Some("analytics"))
            {
                return letter;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("dead-lettered within 5s");
    assert_eq!(&dead.payload[..], b"\x08\x01");
    assert_eq!(
        dead.headers.get(headers::DLQ_ERROR_CLASS),
        Some(ErrorClass::Decode.as_str())
    );
    assert_eq!(dead.headers.get(headers::DLQ_DELIVERIES), Some("1"));

    bus.close().await
}
