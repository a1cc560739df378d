//! Property tests, with a bounded number of cases so CI stays fast (set `PROPTEST_CASES` to run
//! more): the naming rules against a reference written another way, header checks, loading a
//! configuration from arbitrary environment values, and decoding arbitrary bytes as events.

use std::collections::HashMap;

use bus::{EventBusConfig, Headers};
use bytes::Bytes;
use proptest::prelude::*;

/// The subject rule written as the NATS documentation states it, token by token.
fn reference_filter(s: &str, wildcards: bool) -> bool {
    if s.is_empty() || s.len() > bus_names::MAX_SUBJECT_LEN {
        return false;
    }
    let tokens: Vec<&str> = s.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        let plain = !t.is_empty()
            && t.bytes()
                .all(|b| b > b' ' && b != 0x7f && b != b'*' && b != b'>');
        let wildcard = wildcards && (*t == "*" || (*t == ">" && i == tokens.len() - 1));
        plain || wildcard
    })
}

fn subject() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ab.*> \té]{0,12}").unwrap()
}

fn topic() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ab]{1,2}(\\.[ab]{1,2}){0,3}").unwrap()
}

fn filter() -> impl Strategy<Value = String> {
    proptest::string::string_regex("([ab]|\\*)(\\.([ab]|\\*)){0,3}(\\.>)?").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn subject_rules_match_the_reference(s in subject()) {
        prop_assert_eq!(bus_names::check_topic(&s).is_ok(), reference_filter(&s, false));
        prop_assert_eq!(bus_names::check_filter(&s).is_ok(), reference_filter(&s, true));
        prop_assert_eq!(bus::topic::is_valid_topic(&s), reference_filter(&s, false));
    }

    #[test]
    fn matching_covering_and_overlapping_agree(f in filter(), g in filter(), t in topic()) {
        // A topic is a filter without wildcards.
        prop_assert_eq!(bus_names::filter_covers(&f, &t), bus_names::filter_matches(&f, &t));
        prop_assert_eq!(bus_names::filters_overlap(&f, &t), bus_names::filter_matches(&f, &t));
        prop_assert_eq!(bus_names::filters_overlap(&f, &g), bus_names::filters_overlap(&g, &f));
        if bus_names::filter_covers(&f, &g) && bus_names::filter_matches(&g, &t) {
            prop_assert!(bus_names::filter_matches(&f, &t));
        }
        if bus_names::filter_matches(&f, &t) && bus_names::filter_matches(&g, &t) {
            prop_assert!(bus_names::filters_overlap(&f, &g));
        }
    }

    #[test]
    fn header_checks(name in "[ -~é:\r\n]{0,8}", value in "[ -~é\r\n\t]{0,8}") {
        let mut h = Headers::new();
        h.insert(name.clone(), value.clone());
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        let value_ok = !value.contains(['\r', '\n']);
        prop_assert_eq!(h.validate().is_ok(), name_ok && value_ok);
        let mut id = Headers::new();
        id.insert(bus::headers::MSG_ID, value.clone());
        prop_assert_eq!(id.validate().is_ok(), value_ok && value.trim() == value);
    }

    #[test]
    fn configuration_from_any_environment_never_panics(
        values in proptest::collection::vec(
            proptest::string::string_regex("[a-z0-9.,>*: _-]{0,12}|[0-9]{1,25}(ms|s|m|h|d)?").unwrap(),
            VARIABLES.len(),
        )
    ) {
        let env: HashMap<&str, String> = VARIABLES.iter().copied().zip(values).collect();
        if let Ok(config) = EventBusConfig::from_lookup(|k| env.get(k).cloned())
            && config.validate().is_ok()
        {
            let json = serde_json::to_string(&config).unwrap();
            let back: EventBusConfig = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, config);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        which in 0usize..64,
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let registry = &cqc::events::v1::REGISTRY;
        let topics: Vec<&str> = registry.iter().map(|e| e.topic()).collect();
        let topic = topics[which % topics.len()];
        let _ = cqc::events::v1::AnyEvent::decode(topic, Bytes::from(payload));
    }
}

/// The variables `EventBusConfig::from_env` reads that take a value the generator can vary.
const VARIABLES: &[&str] = &[
    "BUS_BACKEND",
    "BUS_SERVERS",
    "BUS_STREAM_NAME",
    "BUS_CONSUMER_NAME",
    "BUS_MAX_DELIVER",
    "BUS_ACK_WAIT",
    "BUS_MAX_ACK_PENDING",
    "BUS_STREAM_SUBJECTS",
    "BUS_STREAM_STORAGE",
    "BUS_STREAM_REPLICAS",
    "BUS_STREAM_MAX_AGE",
    "BUS_STREAM_DUPLICATE_WINDOW",
    "BUS_BACKOFF",
    "BUS_CONCURRENCY",
    "BUS_HANDLER_TIMEOUT",
    "BUS_DLQ_STREAM_NAME",
    "BUS_DLQ_SUBJECT_PREFIX",
    "BUS_PUBLISH_TIMEOUT",
    "BUS_DRAIN_TIMEOUT",
    "BUS_MEMORY_QUEUE_CAPACITY",
    "BUS_TRACE_CONTEXT",
];
