//! The naming rules at the runtime's entry points, against the one table every entry point is
//! tested with (`bus_names::cases`; the macro and the build check the same table): a topic is
//! refused by `publish_raw` exactly when the table says it is not a topic, a filter by
//! `Subscription::with_filter` exactly when it is not a filter, a group by `subscribe` exactly
//! when it is not a group.

use bus::{Error, Event, EventBus, Headers, RawMessage, Subscription};
use bus_names::cases::{GROUPS, SUBJECTS};
use tests::events::Ping;

#[tokio::test]
async fn topics_and_filters_follow_the_table() {
    let bus = EventBus::memory();
    for &(subject, valid_topic, valid_filter) in SUBJECTS {
        assert_eq!(
            bus::topic::is_valid_topic(subject),
            valid_topic,
            "{subject:?}"
        );
        assert_eq!(
            bus::topic::is_valid_filter(subject),
            valid_filter,
            "{subject:?}"
        );
        let published = bus.publish_raw(subject, &b""[..], Headers::new()).await;
        assert_eq!(
            !matches!(published, Err(Error::InvalidTopic { .. })),
            valid_topic,
            "publish_raw({subject:?}): {published:?}"
        );
        let filter = Subscription::with_filter::<RawMessage>("h", subject);
        assert_eq!(filter.is_ok(), valid_filter, "with_filter({subject:?})");
    }
    bus.close().await.unwrap();
}

#[tokio::test]
async fn groups_follow_the_table() {
    let bus = EventBus::memory();
    for &(group, valid) in GROUPS {
        let subscribed = bus
            .subscribe(
                Subscription::new("h", Ping::TOPIC)
                    .group(group)
                    .handler(|_: Ping| async { Ok::<_, bus::HandlerError>(()) }),
            )
            .await;
        match subscribed {
            Ok(()) => assert!(valid, "group {group:?} was accepted"),
            Err(Error::InvalidGroup { .. }) => assert!(!valid, "group {group:?} was refused"),
            Err(e) => panic!("group {group:?}: unexpected {e}"),
        }
    }
    bus.close().await.unwrap();
}

#[test]
fn the_default_group_follows_the_rule_too() {
    let mut config = bus::EventBusConfig::default();
    config.consumer_name = "risk.service".into();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("consumer_name") && err.contains("letters, digits"),
        "{err}"
    );
}
