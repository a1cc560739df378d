//! The events the command line knows: those it was built with (from the descriptor sets
//! `bus-build` embeds in the generated crates) and those of `--proto` directories, compiled at
//! run time. JSON in and out follows the protobuf JSON mapping.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bus::registry::Registry;
use bus_build::Schema;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::Value;

use crate::error::{Error, bail};

/// A package: its encoded descriptor set, and `(topic, full name)` of each event.
type Package = (&'static [u8], Vec<(String, String)>);

/// The built-in packages.
fn built_in() -> Vec<Package> {
    vec![registry_events(&cqc::events::v1::REGISTRY)]
}

fn registry_events<A>(registry: &Registry<A>) -> Package {
    let events = registry
        .iter()
        .map(|e| (e.topic().to_owned(), e.full_name().to_owned()))
        .collect();
    (registry.file_descriptor_set(), events)
}

/// The events known, their descriptors, and JSON conversion.
#[derive(Debug)]
pub(crate) struct Catalog {
    schema: Schema,
}

impl Catalog {
    /// The built-in events plus those of the `.proto` files under `protos` (imports looked up
    /// in `protos` and `includes`). An event of `--proto` wins over a built-in one on the same
    /// topic, so a newer schema can be tried without rebuilding.
    pub(crate) fn load(protos: &[PathBuf], includes: &[PathBuf]) -> Result<Catalog, Error> {
        let mut pool = DescriptorPool::new();
        let mut events: Vec<(String, String)> = Vec::new();
        if !protos.is_empty() {
            let runtime = compile(protos, includes)?;
            pool = runtime.pool().clone();
            events.extend(
                runtime
                    .events()
                    .map(|(t, m)| (t.to_owned(), m.full_name().to_owned())),
            );
        }
        for (bytes, package_events) in built_in() {
            let set = prost_types::FileDescriptorSet::decode(bytes)
                .map_err(|e| Error::new(format!("the built-in schema does not decode: {e}")))?;
            let missing: Vec<_> = set
                .file
                .into_iter()
                .filter(|f| pool.get_file_by_name(f.name()).is_none())
                .collect();
            pool.add_file_descriptor_protos(missing).map_err(|e| {
                Error::new(format!(
                    "the `--proto` files clash with the built-in schema: {e}"
                ))
            })?;
            let known: BTreeSet<String> = events.iter().map(|(t, _)| t.clone()).collect();
            events.extend(
                package_events
                    .into_iter()
                    .filter(|(t, _)| !known.contains(t)),
            );
        }
        let schema = Schema::new(pool, events).map_err(|e| Error::new(e.to_string()))?;
        Ok(Catalog { schema })
    }

    /// The schema: pool and events.
    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The event type of the message on `subject` with these headers: by its topic; else by
    /// its `Bus-Event-Type`; else, for a dead letter, by its `Bus-Dlq-Topic`.
    pub(crate) fn message_for(
        &self,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
    ) -> Option<MessageDescriptor> {
        if let Some(m) = self.schema.event(subject) {
            return Some(m.clone());
        }
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        if let Some(m) = header(bus::headers::EVENT_TYPE)
            .and_then(|name| self.schema.pool().get_message_by_name(name))
        {
            return Some(m);
        }
        header(bus::headers::DLQ_TOPIC).and_then(|topic| self.schema.event(topic).cloned())
    }

    /// The event type published on `topic`, or an error listing what is known.
    pub(crate) fn event(&self, topic: &str) -> Result<MessageDescriptor, Error> {
        if let Some(m) = self.schema.event(topic) {
            return Ok(m.clone());
        }
        if let Some(m) = self.schema.pool().get_message_by_name(topic)
            && let Some(t) = self.schema.topic_of(m.full_name())
        {
            bail!("`{topic}` is an event type, not a topic: its topic is `{t}`");
        }
        let prefix = topic.rsplit_once('.').map_or("", |(p, _)| p);
        let near: Vec<&str> = self
            .schema
            .events()
            .map(|(t, _)| t)
            .filter(|t| !prefix.is_empty() && t.starts_with(prefix))
            .take(20)
            .collect();
        let hint = if near.is_empty() {
            "`bus topics` lists the known topics".to_owned()
        } else {
            format!("topics under `{prefix}`: {}", near.join(", "))
        };
        bail!(
            "no known event is published on topic `{topic}` ({hint}); for events this program \
             was not built with, pass their schema with `--proto DIR`"
        )
    }

    /// `json` as an event of type `message`, encoded; an error names the field that does not
    /// fit.
    pub(crate) fn encode(&self, message: &MessageDescriptor, json: &str) -> Result<Vec<u8>, Error> {
        let mut de = serde_json::Deserializer::from_str(json);
        let mut track = serde_path_to_error::Track::new();
        let parsed = DynamicMessage::deserialize(
            message.clone(),
            serde_path_to_error::Deserializer::new(&mut de, &mut track),
        )
        .and_then(|m| de.end().map(|()| m));
        match parsed {
            Ok(m) => Ok(m.encode_to_vec()),
            Err(e) => {
                let path = track.path().to_string();
                let at = if path.is_empty() || path == "." {
                    String::new()
                } else {
                    format!(" at `{path}`")
                };
                bail!(
                    "the JSON does not fit `{}`{at}: {e} (write the protobuf JSON form: \
                     lowerCamelCase or proto field names, 64-bit integers as strings, enums by \
                     name, timestamps in RFC 3339)",
                    message.full_name()
                )
            }
        }
    }
}

/// Decodes `payload` as a `message` into its JSON form (the protobuf JSON mapping).
pub(crate) fn decode(message: &MessageDescriptor, payload: &[u8]) -> Result<Value, String> {
    let decoded = DynamicMessage::decode(message.clone(), payload)
        .map_err(|e| format!("not a valid `{}`: {e}", message.full_name()))?;
    serde_json::to_value(&decoded).map_err(|e| format!("cannot write as JSON: {e}"))
}

/// The schema of the `.proto` files under `dirs`.
fn compile(dirs: &[PathBuf], includes: &[PathBuf]) -> Result<Schema, Error> {
    let mut files = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            bail!("`--proto {}` is not a directory", dir.display());
        }
        find_protos(dir, &mut files)
            .map_err(|e| Error::new(format!("reading `--proto {}`: {e}", dir.display())))?;
    }
    if files.is_empty() {
        bail!("no `.proto` file under the `--proto` directories");
    }
    files.sort();
    let search: Vec<&Path> = dirs.iter().chain(includes).map(PathBuf::as_path).collect();
    bus_build::configure()
        .emit_rerun_if_changed(false)
        .schema(&files, &search)
        .map_err(|e| Error::new(format!("compiling `--proto`: {e}")))
}

/// Every `.proto` file under `dir`, recursively.
fn find_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            find_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_events_round_trip_through_json() {
        let catalog = Catalog::load(&[], &[]).unwrap();
        let m = catalog.event("cqc.events.v1.asset_created").unwrap();
        let bytes = catalog
            .encode(&m, r#"{"eventId": "e-1", "asset": {"assetId": "a-1"}}"#)
            .unwrap();
        let typed = <cqc::events::v1::AssetCreated as prost::Message>::decode(&bytes[..]).unwrap();
        assert_eq!(typed.event_id, "e-1");
        assert_eq!(typed.asset.unwrap().asset_id, "a-1");
        let json = decode(&m, &bytes).unwrap();
        assert_eq!(json["eventId"], "e-1");
    }

    #[test]
    fn a_json_error_names_the_field() {
        let catalog = Catalog::load(&[], &[]).unwrap();
        let m = catalog.event("cqc.events.v1.asset_created").unwrap();
        let e = catalog
            .encode(&m, r#"{"eventId": "e-1", "asset": {"idd": "a-1"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at `asset`") && e.contains("idd") && e.contains("AssetCreated"),
            "{e}"
        );
        let e = catalog
            .encode(&m, r#"{"eventId": 7}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`eventId`"), "{e}");
    }

    #[test]
    fn unknown_topics_are_named_with_what_is_near() {
        let catalog = Catalog::load(&[], &[]).unwrap();
        let e = catalog
            .event("cqc.events.v1.asset_craeted")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cqc.events.v1.asset_created") && e.contains("--proto"),
            "{e}"
        );
        let e = catalog
            .event("cqc.events.v1.AssetCreated")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("its topic is `cqc.events.v1.asset_created`"),
            "{e}"
        );
    }
}
