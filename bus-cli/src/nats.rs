//! The connection: the bus's own (servers, auth, TLS), and the JetStream requests the commands
//! share, with errors that say what to check.

use std::time::Duration;

use async_nats::jetstream::{self, stream::Stream};
use bus::EventBusConfig;

use crate::error::{Error, bail};

/// A connection to NATS with the configuration it came from.
pub(crate) struct Nats {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) config: EventBusConfig,
}

impl Nats {
    /// Connects as the bus does; creates nothing.
    pub(crate) async fn connect(config: EventBusConfig) -> Result<Nats, Error> {
        let client = bus::jetstream::connect_client(&config).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.publish_timeout.max(Duration::from_secs(5)))
            .build(client.clone());
        Ok(Nats { client, js, config })
    }

    /// Flushes and closes the connection, without waiting long on a server that went away.
    pub(crate) async fn close(&self) {
        let wait = Duration::from_secs(5);
        let _ = tokio::time::timeout(wait, self.client.flush()).await;
        let _ = tokio::time::timeout(wait, self.client.drain()).await;
    }

    /// The stream `name`; `setting` names where the name comes from, for the error.
    pub(crate) async fn stream(&self, name: &str, setting: &str) -> Result<Stream, Error> {
        use async_nats::jetstream::context::GetStreamErrorKind;
        match self.js.get_stream(name).await {
            Ok(stream) => Ok(stream),
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(_)) => bail!(
                "stream `{name}` does not exist on the server ({e}): check {setting}, or start a \
                 service of the bus once, which creates it"
            ),
            Err(e) => {
                bail!("cannot read stream `{name}`: {e}; is JetStream enabled (`nats-server -js`)?")
            }
        }
    }

    /// The events stream.
    pub(crate) async fn events_stream(&self) -> Result<Stream, Error> {
        self.stream(&self.config.stream_name, "`stream_name` (BUS_STREAM_NAME)")
            .await
    }

    /// The dead-letter stream.
    pub(crate) async fn dead_letter_stream(&self) -> Result<Stream, Error> {
        self.stream(
            &self.config.dead_letter.stream_name,
            "`dead_letter.stream_name` (BUS_DLQ_STREAM_NAME)",
        )
        .await
    }

    /// The name of the stream that captures `subject` (a filter may have wildcards), or why
    /// none does.
    pub(crate) async fn stream_capturing(&self, subject: &str) -> Result<String, String> {
        match self.js.stream_by_subject(subject).await {
            Ok(name) => Ok(name),
            Err(e) => Err(format!(
                "no stream captures `{subject}` ({e}): the stream that held it is gone or no \
                 longer lists the subject; check `stream.subjects` (BUS_STREAM_SUBJECTS)"
            )),
        }
    }
}
