//! The command line's arguments.

use std::path::{Path, PathBuf};

use bus::EventBusConfig;
use clap::{Args, Parser, Subcommand};

use crate::error::{Error, bail};
use crate::time::Time;

/// The `bus` command line: tail events, publish from JSON, inspect and replay dead letters,
/// show the state of streams and consumer groups, and write the AsyncAPI document.
#[derive(Debug, Parser)]
#[command(name = "bus", version, about, long_about = None)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file, TOML or JSON (the fields of the library's `EventBusConfig`);
    /// `BUS_*` environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS server URL, overriding `servers` and `BUS_SERVERS` (repeat for several).
    #[arg(long = "server", short = 's', global = true, value_name = "URL")]
    pub servers: Vec<String>,
    /// A directory of `.proto` files to compile at run time, for events this program was not
    /// built with (repeatable). Its files are imported relative to it.
    #[arg(long, global = true, value_name = "DIR")]
    pub proto: Vec<PathBuf>,
    /// Where imports of the `--proto` files are looked up besides the `--proto` directories
    /// (repeatable).
    #[arg(long, global = true, value_name = "DIR")]
    pub include: Vec<PathBuf>,
}

impl Global {
    /// The configuration: the file's (or the CQC preset, `EventBusConfig::cqc()`), then the `BUS_*` environment, then
    /// `--server`.
    pub(crate) fn config(&self) -> Result<EventBusConfig, Error> {
        let base = match &self.config {
            Some(path) => read_config(path)?,
            None => EventBusConfig::cqc(),
        };
        let mut config = base.with_env()?;
        if !self.servers.is_empty() {
            config.servers.clone_from(&self.servers);
        }
        config.backend = bus::BackendKind::JetStream;
        config.validate()?;
        Ok(config)
    }
}

/// Reads a TOML or JSON configuration file, by its extension.
fn read_config(path: &Path) -> Result<EventBusConfig, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("cannot read `--config {}`: {e}", path.display())))?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let parsed = match extension.to_ascii_lowercase().as_str() {
        "toml" => toml::from_str(&text).map_err(|e| e.to_string()),
        "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
        _ => bail!(
            "`--config {}`: name the file `*.toml` or `*.json`, so that its format is known",
            path.display()
        ),
    };
    parsed.map_err(|e| Error::new(format!("`--config {}` is not valid: {e}", path.display())))
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print live events as JSON lines (topic, stream sequence, headers, decoded event), from an
    /// ephemeral consumer that no group notices.
    Tail(TailArgs),
    /// Encode JSON into the topic's event type and publish it, waiting for the stream's
    /// acknowledgement.
    Publish(PublishArgs),
    /// Dead letters: list, show, replay.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Streams, consumer groups and dead letters per topic.
    Status(StatusArgs),
    /// The events this command knows, with their topics.
    Topics,
    /// Write the AsyncAPI 3.0 document of the events (JSON).
    Docs(DocsArgs),
}

/// `bus tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic filter, with `*` and `>` wildcards (default: everything the events stream
    /// captures).
    pub filter: Option<String>,
    /// Start with the oldest event the stream keeps instead of now.
    #[arg(long, conflicts_with = "since")]
    pub from_start: bool,
    /// Start at a time: RFC 3339 (`2024-05-01T12:00:00Z`) or a duration ago (`10m`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<Time>,
    /// Stop after this many events.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// The stream to read (default: the one that captures the filter).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
}

/// `bus publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event's topic (`bus topics` lists them).
    pub topic: String,
    /// The event as JSON (the protobuf JSON mapping: `lowerCamelCase` or proto field names);
    /// `-` reads it from standard input.
    pub json: String,
    /// `Nats-Msg-Id` (default: the event's `event_id`, else a generated id). The stream stores
    /// one event per id within its duplicate window.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// `bus dlq`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their `Bus-Dlq-*` headers, oldest first.
    List(DlqListArgs),
    /// Show one dead letter, its event decoded.
    Show(DlqShowArgs),
    /// Republish dead letters to their topic with their original bytes and a `Bus-Replay-Of`
    /// header, and remove each once its republish is acknowledged.
    Replay(DlqReplayArgs),
}

/// Which dead letters.
#[derive(Debug, Clone, Default, Args)]
pub struct DlqFilter {
    /// Only dead letters of topics matching this filter (`*`, `>` allowed).
    #[arg(long, value_name = "FILTER")]
    pub topic: Option<String>,
    /// Only those of this subscription group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Only those of this error class.
    #[arg(long, value_name = "CLASS", value_parser = [
        "retryable", "timeout", "permanent", "decode", "panic", "max_deliveries",
    ])]
    pub error_class: Option<String>,
    /// Only those dead-lettered at or after this time (RFC 3339 or a duration ago).
    #[arg(long, value_name = "TIME")]
    pub since: Option<Time>,
    /// Only those dead-lettered at or before this time (RFC 3339 or a duration ago).
    #[arg(long, value_name = "TIME")]
    pub until: Option<Time>,
}

impl DlqFilter {
    /// Whether the filter selects anything narrower than every dead letter.
    pub(crate) fn is_set(&self) -> bool {
        self.topic.is_some()
            || self.group.is_some()
            || self.error_class.is_some()
            || self.since.is_some()
            || self.until.is_some()
    }
}

/// `bus dlq list`.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Which dead letters.
    #[command(flatten)]
    pub filter: DlqFilter,
    /// List at most this many.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `bus dlq show`.
#[derive(Debug, Args)]
pub struct DlqShowArgs {
    /// The dead letter's sequence number in the dead-letter stream (`bus dlq list` shows it).
    pub seq: u64,
}

/// `bus dlq replay`.
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// Dead letters by sequence number; else those the filter selects.
    pub seqs: Vec<u64>,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: DlqFilter,
    /// Replay every dead letter (required when neither sequence numbers nor a filter are
    /// given).
    #[arg(long, conflicts_with = "seqs")]
    pub all: bool,
    /// Also replay dead letters of events that were themselves replays (they carry
    /// `Bus-Replay-Of`); by default they are skipped, so a replay never loops.
    #[arg(long)]
    pub force: bool,
    /// Say what would be replayed, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `bus status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `bus docs`.
#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Write the document to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The document's title (default: `Events of {packages}`).
    #[arg(long)]
    pub title: Option<String>,
    /// The version of the API described (default: this program's version).
    #[arg(long, value_name = "VERSION")]
    pub api_version: Option<String>,
    /// An event the service publishes, by full name or topic: a `send` operation (repeatable).
    #[arg(long, value_name = "EVENT")]
    pub sends: Vec<String>,
    /// An event the service receives, as `GROUP=EVENT`: a `receive` operation, and a `send` on
    /// its dead-letter channel (repeatable).
    #[arg(long, value_name = "GROUP=EVENT", value_parser = group_event)]
    pub receives: Vec<(String, String)>,
}

fn group_event(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((group, event)) if !group.is_empty() && !event.is_empty() => {
            Ok((group.to_owned(), event.to_owned()))
        }
        _ => Err(format!(
            "`{s}`: write `GROUP=EVENT`, e.g. `risk=cqc.events.v1.PriceUpdated`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn config_files_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("bus.toml");
        std::fs::write(
            &toml,
            "stream_name = \"ORDERS\"\n[dead_letter]\nsubject_prefix = \"dead\"\n",
        )
        .unwrap();
        let c = read_config(&toml).unwrap();
        assert_eq!(
            (
                c.stream_name.as_str(),
                c.dead_letter.subject_prefix.as_str()
            ),
            ("ORDERS", "dead")
        );
        let json = dir.path().join("bus.json");
        std::fs::write(&json, r#"{ "stream_nmae": "X" }"#).unwrap();
        let e = read_config(&json).unwrap_err().to_string();
        assert!(e.contains("stream_nmae") && e.contains("bus.json"), "{e}");
        let yaml = dir.path().join("bus.yaml");
        std::fs::write(&yaml, "").unwrap();
        let e = read_config(&yaml).unwrap_err().to_string();
        assert!(e.contains("*.toml") && e.contains("*.json"), "{e}");
    }
}
