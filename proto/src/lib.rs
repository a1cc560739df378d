//! The CQC event schema as typed bus events, generated from the `.proto` files in `proto/` by
//! `bus-build` (no `protoc` needed).
//!
//! - [`events::v1`]: the 14 events, each an [`bus::Event`] with its topic in
//!   [`events::v1::topics`], plus [`events::v1::AnyEvent`] and [`events::v1::REGISTRY`] for
//!   handlers that receive any of them.
//! - [`assets::v1`], [`markets::v1`], [`portfolio::v1`], [`venues::v1`]: the types they carry.
//!
//! ```
//! use bus::Event;
//! use cqc::events::v1::{AnyEvent, AssetCreated, topics};
//!
//! assert_eq!(topics::ASSET_CREATED.as_str(), "cqc.events.v1.asset_created");
//! assert_eq!(AssetCreated::FULL_NAME, "cqc.events.v1.AssetCreated");
//!
//! let event = AssetCreated { event_id: "e-1".into(), ..Default::default() };
//! let any = AnyEvent::decode(AssetCreated::TOPIC.as_str(), bus::prost::Message::encode_to_vec(&event))?;
//! assert_eq!(any, AnyEvent::AssetCreated(event));
//! # Ok::<(), bus::registry::DecodeError>(())
//! ```
//!
//! Field types follow proto3: singular scalars are plain values (empty when unset), message
//! fields are `Option`s, enum fields are `i32` with typed accessors, timestamps are
//! [`bus::prost_types::Timestamp`]. The crate depends on `bus` alone: the generated code reaches
//! `prost` and the well-known types through it.

/// Generated code: documented by the `.proto` comments, which do not cover every field or value.
macro_rules! package {
    ($(#[$doc:meta])* $name:ident, $package:literal) => {
        $(#[$doc])*
        pub mod $name {
            #![allow(missing_docs, clippy::doc_lazy_continuation, clippy::doc_overindented_list_items)]
            bus::include_events!($package);
        }
    };
}

/// Events: package `cqc.events.v1`.
pub mod events {
    package!(
        /// The CQC events, their topics, `AnyEvent` and `REGISTRY`.
        v1,
        "cqc.events.v1"
    );
}

/// Assets: package `cqc.assets.v1`.
pub mod assets {
    package!(
        /// Assets, deployments, quality flags and relationships.
        v1,
        "cqc.assets.v1"
    );
}

/// Markets: package `cqc.markets.v1`.
pub mod markets {
    package!(
        /// Instruments, markets and prices.
        v1,
        "cqc.markets.v1"
    );
}

/// Portfolio: package `cqc.portfolio.v1`.
pub mod portfolio {
    package!(
        /// Positions.
        v1,
        "cqc.portfolio.v1"
    );
}

/// Venues: package `cqc.venues.v1`.
pub mod venues {
    package!(
        /// Orders and venue listings.
        v1,
        "cqc.venues.v1"
    );
}
