//! Which stream captures which subjects: what a publish needs (is the topic stored anywhere?)
//! and what a subscription needs (does one stream hold everything its filter matches?).

use std::fmt;

/// The streams of a bus and the subjects each captures.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Capture {
    streams: Vec<(String, Vec<String>)>,
}

impl Capture {
    /// `(stream name, subjects)` pairs.
    pub(crate) fn new(streams: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        Capture {
            streams: streams.into_iter().collect(),
        }
    }

    /// The streams as configured: the dead-letter stream and the events stream. Events
    /// `stream.subjects` left empty (the default, allowed on memory only) capture every topic
    /// outside the dead-letter subjects.
    pub(crate) fn configured(config: &crate::EventBusConfig) -> Self {
        let subjects = if config.stream.subjects.is_empty() {
            vec![">".to_owned()]
        } else {
            config.stream.subjects.clone()
        };
        Capture::new([
            (
                config.dead_letter.stream_name.clone(),
                vec![config.dead_letter.filter()],
            ),
            (config.stream_name.clone(), subjects),
        ])
    }

    /// The stream with a subject covering all of `filter`, as JetStream requires of a
    /// consumer's filter. A topic is a filter without wildcards, so this also answers where a
    /// publish on a topic is stored.
    pub(crate) fn stream_of(&self, filter: &str) -> Option<&str> {
        self.streams
            .iter()
            .find(|(_, subjects)| subjects.iter().any(|s| bus_names::filter_covers(s, filter)))
            .map(|(name, _)| name.as_str())
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.streams.iter().map(|(n, s)| (n, s)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_filters() {
        let c = Capture::configured(&crate::EventBusConfig::cqc());
        assert_eq!(
            c.stream_of("cqc.events.v1.asset_created"),
            Some("CQC_EVENTS")
        );
        assert_eq!(c.stream_of("cqc.events.v1.*"), Some("CQC_EVENTS"));
        assert_eq!(c.stream_of("dlq.cqc.events.v1.x"), Some("CQC_EVENTS_DLQ"));
        assert_eq!(c.stream_of("cqc.>"), None, "wider than any stream");
        assert_eq!(c.stream_of("other.topic"), None);
    }

    #[test]
    fn default_subjects_capture_every_topic_but_dead_letters() {
        let c = Capture::configured(&crate::EventBusConfig::default());
        assert_eq!(
            c.stream_of("acme.shipping.events.v1.parcel_shipped"),
            Some("EVENTS")
        );
        assert_eq!(c.stream_of("acme.>"), Some("EVENTS"));
        assert_eq!(c.stream_of("dlq.acme.x"), Some("EVENTS_DLQ"));
    }
}
