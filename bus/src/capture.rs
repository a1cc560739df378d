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

    /// The streams as configured: the events stream and the dead-letter stream.
    pub(crate) fn configured(config: &crate::EventBusConfig) -> Self {
        Capture::new([
            (config.stream_name.clone(), config.stream.subjects.clone()),
            (
                config.dead_letter.stream_name.clone(),
                vec![config.dead_letter.filter()],
            ),
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
        let c = Capture::configured(&crate::EventBusConfig::default());
        assert_eq!(
            c.stream_of("cqc.events.v1.asset_created"),
            Some("CQC_EVENTS")
        );
        assert_eq!(c.stream_of("cqc.events.v1.*"), Some("CQC_EVENTS"));
        assert_eq!(c.stream_of("dlq.cqc.events.v1.x"), Some("CQC_EVENTS_DLQ"));
        assert_eq!(c.stream_of("cqc.>"), None, "wider than any stream");
        assert_eq!(c.stream_of("other.topic"), None);
    }
}
