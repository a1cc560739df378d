//! The generated CQC crate: wire compatibility, topics, registry and `AnyEvent`.
//!
//! The CQC schema is the one the other CQC services already put on the wire, written down in this
//! repository as `proto/proto/cqc/**/*.proto` (the `cqc` crate's `proto/cqc/`), whose names,
//! field numbers, types and labels must not change. The wire tests build their expected bytes by
//! hand from those field numbers and types rather than with prost, so a field renumbered or
//! retyped in the `.proto` files fails here instead of changing what goes on the wire.

use bus::Event;
use cqc::assets::v1::{Asset, AssetType, FlagSeverity, FlagType};
use cqc::events::v1::{
    AnyEvent, AssetCreated, OrderPlaced, PositionChangeType, PositionChanged, PriceUpdated,
    QualityFlagRaised, REGISTRY, RiskAlert, RiskAlertSeverity, RiskAlertType, topics,
};
use cqc::markets::v1::Price;
use cqc::portfolio::v1::Position;
use cqc::venues::v1::{OrderSide, OrderType};
use prost::Message;
use prost_types::Timestamp;

/// Protobuf wire encoding, by hand: just enough to write the CQC schema's field types.
#[derive(Default)]
struct Wire(Vec<u8>);

impl Wire {
    fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return self;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn key(&mut self, field: u32, wire_type: u8) -> &mut Self {
        self.varint(u64::from(field) << 3 | u64::from(wire_type))
    }
    /// `int32`, `int64`, enum, `bool` (wire type 0).
    fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0).varint(v as u64)
    }
    /// `double` (wire type 1).
    fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `string`, `bytes`, embedded message (wire type 2).
    fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, 2).varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }
    fn message(&mut self, field: u32, m: &Wire) -> &mut Self {
        self.bytes(field, &m.0)
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

fn timestamp_wire(seconds: i64, nanos: i32) -> Wire {
    let mut w = Wire::default();
    w.int(1, seconds);
    if nanos != 0 {
        w.int(2, i64::from(nanos));
    }
    w
}

/// Decodes `bytes` as `M`, checks it equals `want`, and that encoding gives the same bytes back
/// (fields are written in field-number order, as every protobuf encoder does).
fn check<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8], want: &M) {
    let got = M::decode(bytes).expect("hand-built bytes decode");
    assert_eq!(&got, want);
    assert_eq!(
        want.encode_to_vec(),
        bytes,
        "re-encoding gives the same bytes"
    );
}

#[test]
fn asset_created_wire() {
    let mut asset = Wire::default();
    asset
        .string(1, "asset-eth")
        .string(2, "ETH")
        .string(3, "Ether")
        .int(4, 1) // AssetType.ASSET_TYPE_NATIVE
        .string(5, "layer1")
        .message(9, &timestamp_wire(1_700_000_000, 0));
    let bytes = Wire::default()
        .string(1, "evt-1")
        .message(2, &timestamp_wire(1_700_000_001, 500))
        .string(3, "user-7")
        .message(4, &asset)
        .string(5, "coingecko")
        .done();
    let want = AssetCreated {
        event_id: "evt-1".into(),
        timestamp: Some(Timestamp {
            seconds: 1_700_000_001,
            nanos: 500,
        }),
        actor_id: "user-7".into(),
        asset: Some(Asset {
            asset_id: "asset-eth".into(),
            symbol: "ETH".into(),
            name: "Ether".into(),
            asset_type: AssetType::Native as i32,
            category: "layer1".into(),
            created_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }),
        source: "coingecko".into(),
    };
    check(&bytes, &want);
    assert_eq!(want.asset.as_ref().unwrap().asset_type(), AssetType::Native);
    assert_eq!(want.event_id(), Some("evt-1"));
}

#[test]
fn order_placed_wire() {
    let bytes = Wire::default()
        .string(1, "evt-2")
        .string(5, "pf-1")
        .string(6, "binance")
        .string(7, "asset-btc")
        .int(8, 2) // OrderSide.ORDER_SIDE_SELL
        .int(9, 2) // OrderType.ORDER_TYPE_LIMIT
        .double(10, 0.5)
        .double(11, 64_000.25)
        .double(12, 32_000.125)
        .string(13, "cli-9")
        .done();
    let want = OrderPlaced {
        event_id: "evt-2".into(),
        portfolio_id: "pf-1".into(),
        venue_id: "binance".into(),
        asset_id: "asset-btc".into(),
        side: OrderSide::Sell as i32,
        order_type: OrderType::Limit as i32,
        quantity: 0.5,
        price: 64_000.25,
        estimated_value: 32_000.125,
        client_order_id: "cli-9".into(),
        ..Default::default()
    };
    check(&bytes, &want);
}

#[test]
fn position_changed_wire_with_high_field_numbers() {
    let mut position = Wire::default();
    position
        .string(1, "pos-1")
        .double(5, -2.0)
        .int(19, 0) // a default bool is not written...
        .double(20, 3.0)
        .string(23, "dep-1");
    // ...so build the expected bytes without it.
    let mut position_bytes = Wire::default();
    position_bytes
        .string(1, "pos-1")
        .double(5, -2.0)
        .double(20, 3.0)
        .string(23, "dep-1");
    let bytes = Wire::default()
        .string(1, "evt-3")
        .message(4, &position_bytes)
        .int(6, 4) // POSITION_CHANGE_TYPE_CLOSED
        .double(13, 12.5)
        .string(15, "tx-1")
        .int(16, 1)
        .string(17, "take profit")
        .done();
    let want = PositionChanged {
        event_id: "evt-3".into(),
        current_position: Some(Position {
            position_id: "pos-1".into(),
            quantity: -2.0,
            leverage: 3.0,
            deployment_id: "dep-1".into(),
            ..Default::default()
        }),
        change_type: PositionChangeType::Closed as i32,
        realized_pnl: 12.5,
        transaction_id: "tx-1".into(),
        is_closed: true,
        reason: "take profit".into(),
        ..Default::default()
    };
    check(&bytes, &want);
    // An explicitly written default is accepted on decode (a Go encoder never writes one).
    let explicit = Wire::default()
        .string(1, "evt-3")
        .message(4, &position)
        .done();
    let got = PositionChanged::decode(&explicit[..]).unwrap();
    assert!(!got.current_position.unwrap().is_long);
}

#[test]
fn risk_alert_and_quality_flag_wire() {
    let bytes = Wire::default()
        .int(4, 11) // RISK_ALERT_TYPE_VAR_BREACH
        .int(5, 5) // RISK_ALERT_SEVERITY_CRITICAL
        .string(6, "VaR over limit")
        .double(14, 97.5)
        .int(15, 1)
        .message(16, &timestamp_wire(1_800_000_000, 0))
        .string(17, "{\"var\":1}")
        .done();
    let want = RiskAlert {
        alert_type: RiskAlertType::VarBreach as i32,
        severity: RiskAlertSeverity::Critical as i32,
        message: "VaR over limit".into(),
        risk_score: 97.5,
        requires_immediate_action: true,
        expires_at: Some(Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        context: "{\"var\":1}".into(),
        ..Default::default()
    };
    check(&bytes, &want);
    assert_eq!(want.event_id(), None, "no id: the bus generates one");

    let bytes = Wire::default()
        .string(5, "asset-x")
        .int(6, 8) // FLAG_TYPE_HONEYPOT
        .int(7, 4) // FLAG_SEVERITY_HIGH
        .int(9, 1)
        .int(10, 1)
        .string(11, "honeypot")
        .done();
    let want = QualityFlagRaised {
        asset_id: "asset-x".into(),
        flag_type: FlagType::Honeypot as i32,
        severity: FlagSeverity::High as i32,
        suspend_trading: true,
        force_close_positions: true,
        alert_message: "honeypot".into(),
        ..Default::default()
    };
    check(&bytes, &want);
}

#[test]
fn price_updated_wire_and_any_event() {
    let mut price = Wire::default();
    price
        .string(1, "mkt-1")
        .double(2, 3_000.5)
        .double(8, 3_000.0)
        .double(9, 3_001.0);
    let bytes = Wire::default()
        .string(1, "evt-4")
        .message(4, &price)
        .double(5, 2_900.0)
        .double(6, 3.4655)
        .int(9, 1)
        .double(10, 2.5)
        .done();
    let want = PriceUpdated {
        event_id: "evt-4".into(),
        price: Some(Price {
            market_id: "mkt-1".into(),
            value: 3_000.5,
            bid: 3_000.0,
            ask: 3_001.0,
            ..Default::default()
        }),
        previous_value: 2_900.0,
        change_percent: 3.4655,
        is_significant: true,
        trigger_threshold: 2.5,
        ..Default::default()
    };
    check(&bytes, &want);
    let any = AnyEvent::decode("cqc.events.v1.price_updated", bytes.clone()).unwrap();
    assert_eq!(any, AnyEvent::PriceUpdated(want));
    assert_eq!(any.encode_to_vec(), bytes);
}

#[test]
fn the_fourteen_events_and_their_topics() {
    let want = [
        ("cqc.events.v1.asset_created", "cqc.events.v1.AssetCreated"),
        (
            "cqc.events.v1.asset_deployment_created",
            "cqc.events.v1.AssetDeploymentCreated",
        ),
        (
            "cqc.events.v1.instrument_created",
            "cqc.events.v1.InstrumentCreated",
        ),
        (
            "cqc.events.v1.market_created",
            "cqc.events.v1.MarketCreated",
        ),
        ("cqc.events.v1.order_placed", "cqc.events.v1.OrderPlaced"),
        (
            "cqc.events.v1.position_changed",
            "cqc.events.v1.PositionChanged",
        ),
        ("cqc.events.v1.price_updated", "cqc.events.v1.PriceUpdated"),
        (
            "cqc.events.v1.quality_flag_raised",
            "cqc.events.v1.QualityFlagRaised",
        ),
        (
            "cqc.events.v1.relationship_established",
            "cqc.events.v1.RelationshipEstablished",
        ),
        ("cqc.events.v1.risk_alert", "cqc.events.v1.RiskAlert"),
        (
            "cqc.events.v1.venue_asset_delisted",
            "cqc.events.v1.VenueAssetDelisted",
        ),
        (
            "cqc.events.v1.venue_asset_listed",
            "cqc.events.v1.VenueAssetListed",
        ),
        (
            "cqc.events.v1.venue_market_delisted",
            "cqc.events.v1.VenueMarketDelisted",
        ),
        (
            "cqc.events.v1.venue_market_listed",
            "cqc.events.v1.VenueMarketListed",
        ),
    ];
    let got: Vec<_> = REGISTRY
        .iter()
        .map(|e| (e.topic(), e.full_name()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(REGISTRY.matching("cqc.events.v1.*").count(), 14);
    assert_eq!(REGISTRY.matching("cqc.events.v1.order_*").count(), 0);
    for event in &REGISTRY {
        let name = event.full_name().rsplit('.').next().unwrap();
        assert_eq!(
            event.topic(),
            bus::topic::topic_name(&bus::topic::snake_case(name))
        );
        assert_eq!(bus_build::snake_case(name), bus::topic::snake_case(name));
        // Every event decodes from empty bytes (all fields unset) and round-trips.
        let any = AnyEvent::decode(event.topic(), Vec::new()).unwrap();
        assert_eq!(any.topic(), event.topic());
        assert_eq!(any.full_name(), event.full_name());
        assert_eq!(any.event_type(), event.event_type());
        assert_eq!(any.event_id(), None);
        assert!(any.encode_to_vec().is_empty());
        assert_eq!(
            REGISTRY.by_full_name(event.full_name()).unwrap().topic(),
            event.topic()
        );
    }
    assert_eq!(
        topics::ASSET_CREATED.as_str(),
        "cqc.events.v1.asset_created"
    );
    assert_eq!(AssetCreated::TOPIC, topics::ASSET_CREATED);
    assert_eq!(RiskAlert::EVENT_TYPE, "risk_alert");
    assert_eq!(PriceUpdated::FULL_NAME, "cqc.events.v1.PriceUpdated");
}

#[test]
fn the_schema_is_embedded_with_its_imports_and_comments() {
    let bytes = REGISTRY.file_descriptor_set();
    assert_eq!(bytes, cqc::events::v1::FILE_DESCRIPTOR_SET);
    let set = prost_types::FileDescriptorSet::decode(bytes).unwrap();
    let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
    // Self-contained: every import is in the set, before the file that imports it.
    for (i, file) in set.file.iter().enumerate() {
        for dep in &file.dependency {
            let at = names.iter().position(|n| n == dep);
            assert!(
                at.is_some_and(|at| at < i),
                "{dep} before {}: {names:?}",
                file.name()
            );
        }
    }
    assert_eq!(names.last(), Some(&"cqc/events/v1/events.proto"));
    assert!(
        names.contains(&"google/protobuf/timestamp.proto"),
        "{names:?}"
    );
    let events = set.file.last().unwrap();
    let messages: Vec<&str> = events.message_type.iter().map(|m| m.name()).collect();
    for event in &REGISTRY {
        let name = event.full_name().rsplit('.').next().unwrap();
        assert!(messages.contains(&name), "{name} in {messages:?}");
    }
    // Comments are kept (for descriptions); source spans without comments are not.
    let locations = &events.source_code_info.as_ref().unwrap().location;
    assert!(
        locations
            .iter()
            .any(|l| l.leading_comments() == " A new asset was recorded.\n"),
        "the comment of AssetCreated"
    );
    assert!(
        locations
            .iter()
            .all(|l| l.leading_comments.is_some() || l.trailing_comments.is_some())
    );
}
