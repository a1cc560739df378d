//! An [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0) document
//! from the `.proto` files: what flows on which NATS subject, with payload schemas.
//!
//! - one channel per event topic (its address is the topic), with the event's message;
//! - one message per event: its payload schema is the JSON form of the protobuf message (the
//!   protobuf JSON mapping: `lowerCamelCase` names, 64-bit integers as strings, enums by name,
//!   `Timestamp` as RFC 3339 ...), derived from the descriptor, with the `.proto` comments as
//!   descriptions; the wire format stays protobuf (`contentType: application/x-protobuf`);
//! - the headers the bus writes (`Nats-Msg-Id`, `Bus-Event-Type`, `traceparent`);
//! - one dead-letter channel per topic (`{prefix}.{topic}`) with the `Bus-Dlq-*` headers;
//! - the servers, with NATS bindings;
//! - operations, when the document is told what the service sends and receives
//!   ([`AsyncApi::sends`], [`AsyncApi::receives`]): a receiving service also sends dead letters.
//!
//! Write one at build time with [`Builder::asyncapi`](crate::Builder::asyncapi), or from a
//! [`Schema`] with [`Schema::asyncapi`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, OneofDescriptor,
};
use serde_json::{Map, Value, json};

/// The AsyncAPI version written.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The content type of event payloads: protobuf, as the bus sends them.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// The events of one or more protobuf packages and their topics: what [`Schema::asyncapi`]
/// describes, and what a tool needs to turn events into JSON and back.
///
/// Made by [`Builder::schema`](crate::Builder::schema) from `.proto` files, or by
/// [`Schema::new`] from a descriptor pool (for example one decoded from a generated
/// `REGISTRY.file_descriptor_set()`) and the registry's topics.
#[derive(Clone, Debug)]
pub struct Schema {
    pool: DescriptorPool,
    /// Topic -> message, sorted by topic.
    events: BTreeMap<String, MessageDescriptor>,
}

impl Schema {
    /// The events `(topic, full message name)` of `pool`.
    ///
    /// # Errors
    ///
    /// A message that is not in the pool, or a topic given twice, naming it.
    pub fn new<T, N>(
        pool: DescriptorPool,
        events: impl IntoIterator<Item = (T, N)>,
    ) -> io::Result<Schema>
    where
        T: Into<String>,
        N: AsRef<str>,
    {
        let mut by_topic = BTreeMap::new();
        for (topic, name) in events {
            let (topic, name) = (topic.into(), name.as_ref());
            let message = pool.get_message_by_name(name).ok_or_else(|| {
                invalid(format!(
                    "event `{name}` (topic `{topic}`) is not a message of the descriptor pool"
                ))
            })?;
            if let Some(other) = by_topic.insert(topic.clone(), message) {
                return Err(invalid(format!(
                    "topic `{topic}` is given twice: for `{}` and `{name}`",
                    other.full_name()
                )));
            }
        }
        Ok(Schema {
            pool,
            events: by_topic,
        })
    }

    /// The descriptor pool: every message and enum of the schema and what it imports.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The events, `(topic, message)`, sorted by topic.
    pub fn events(&self) -> impl Iterator<Item = (&str, &MessageDescriptor)> {
        self.events.iter().map(|(t, m)| (t.as_str(), m))
    }

    /// The event published on `topic`.
    pub fn event(&self, topic: &str) -> Option<&MessageDescriptor> {
        self.events.get(topic)
    }

    /// The topic of the event whose full protobuf name is `full_name`.
    pub fn topic_of(&self, full_name: &str) -> Option<&str> {
        self.events
            .iter()
            .find(|(_, m)| m.full_name() == full_name)
            .map(|(t, _)| t.as_str())
    }

    /// The AsyncAPI 3.0 document of the schema's events, as JSON.
    ///
    /// # Errors
    ///
    /// An event named in [`AsyncApi::sends`] or [`AsyncApi::receives`] that the schema does not
    /// have, or a server URL that does not parse.
    pub fn asyncapi(&self, settings: &AsyncApi) -> io::Result<Value> {
        Document::new(self, settings).build()
    }
}

/// What an AsyncAPI document says besides the schema: title, version, servers, dead-letter
/// prefix, and what the service sends and receives.
///
/// ```
/// let settings = bus_build::AsyncApi::new()
///     .title("Risk service")
///     .version("1.4.0")
///     .server("production", "nats://nats.internal:4222")
///     .receives("risk", ["cqc.events.v1.PriceUpdated"])
///     .sends(["cqc.events.v1.PositionChanged"]);
/// # let _ = settings;
/// ```
#[derive(Clone, Debug)]
pub struct AsyncApi {
    title: Option<String>,
    version: Option<String>,
    description: Option<String>,
    servers: Vec<(String, String)>,
    dead_letter_prefix: String,
    sends: Vec<String>,
    receives: Vec<(String, String)>,
}

impl Default for AsyncApi {
    fn default() -> Self {
        AsyncApi {
            title: None,
            version: None,
            description: None,
            servers: Vec::new(),
            dead_letter_prefix: "dlq".into(),
            sends: Vec::new(),
            receives: Vec::new(),
        }
    }
}

impl AsyncApi {
    /// The defaults: title from the packages, version from `CARGO_PKG_VERSION` (the crate being
    /// built) or `0.0.0`, server `nats://127.0.0.1:4222`, dead-letter prefix `dlq`, no
    /// operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// The document's title (default: `Events of {packages}`).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// The version of the API described (default: `CARGO_PKG_VERSION`, else `0.0.0`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// A description of the application (CommonMark).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Adds a server, `nats://host:port` (or `tls://`, `ws://`, `wss://`); with none, the
    /// document has `nats://127.0.0.1:4222`, the bus's default.
    pub fn server(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.servers.push((name.into(), url.into()));
        self
    }

    /// The first token(s) of dead-letter subjects (the bus's `dead_letter.subject_prefix`,
    /// default `dlq`).
    pub fn dead_letter_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.dead_letter_prefix = prefix.into().trim_end_matches('.').to_owned();
        self
    }

    /// Events the service publishes, by full name (`cqc.events.v1.AssetCreated`) or topic: each
    /// gets a `send` operation.
    pub fn sends<I, S>(mut self, events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sends.extend(events.into_iter().map(Into::into));
        self
    }

    /// Events the service receives in subscription group `group`, by full name or topic: each
    /// gets a `receive` operation (with the group as its NATS queue) and a `send` operation on
    /// its dead-letter channel.
    pub fn receives<I, S>(mut self, group: impl Into<String>, events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let group = group.into();
        self.receives
            .extend(events.into_iter().map(|e| (group.clone(), e.into())));
        self
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The description of the headers every event may carry.
const MSG_ID_DOC: &str = "The event's id (its `event_id`, or one the publisher generated); \
     JetStream stores one event per id within the stream's duplicate window.";
const TRACEPARENT_DOC: &str = "W3C trace context, when the publisher has trace context on.";
const REPLAY_OF_DOC: &str = "Set on an event republished from a dead letter (`bus dlq replay`): \
     the dead letter's own `Nats-Msg-Id`, `dlq:{group}:{stream sequence}`.";

/// The classes of `Bus-Dlq-Error-Class`, as the bus writes them.
const ERROR_CLASSES: [&str; 6] = [
    "retryable",
    "timeout",
    "permanent",
    "decode",
    "panic",
    "max_deliveries",
];

/// The document under construction.
struct Document<'a> {
    schema: &'a Schema,
    settings: &'a AsyncApi,
    /// `components.schemas`: full name -> schema, for every message and enum referenced.
    schemas: BTreeMap<String, Value>,
    /// Messages and enums referenced but not described yet.
    pending: BTreeSet<String>,
}

impl<'a> Document<'a> {
    fn new(schema: &'a Schema, settings: &'a AsyncApi) -> Self {
        Document {
            schema,
            settings,
            schemas: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }

    fn build(mut self) -> io::Result<Value> {
        let mut channels = Map::new();
        let mut messages = Map::new();
        for (topic, message) in self.schema.events() {
            let id = message.full_name();
            let name = message.name();
            let doc = comments(message.parent_file_descriptor_proto(), message.path());
            let mut channel = json!({
                "address": topic,
                "title": name,
                "messages": { name: { "$ref": format!("#/components/messages/{id}") } },
                "bindings": { "nats": {} },
            });
            if let Some(doc) = &doc {
                channel["description"] = json!(doc);
            }
            channels.insert(topic.to_owned(), channel);

            let mut event = json!({
                "name": name,
                "title": id,
                "contentType": PROTOBUF_CONTENT_TYPE,
                "headers": event_headers(id),
                "payload": { "$ref": format!("#/components/schemas/{id}") },
            });
            if let Some(doc) = &doc {
                event["summary"] = json!(first_line(doc));
                event["description"] = json!(doc);
            }
            messages.insert(id.to_owned(), event);
            self.pending.insert(id.to_owned());

            let dlq = self.dead_letter_subject(topic);
            let dlq_name = format!("{name}DeadLetter");
            let dlq_id = format!("{id}.dead_letter");
            channels.insert(
                dlq.clone(),
                json!({
                    "address": dlq,
                    "title": format!("{name} dead letters"),
                    "description": format!(
                        "Dead letters of `{topic}`: events a subscription group gave up on, \
                         with their original bytes and headers, plus `Bus-Dlq-*` headers saying \
                         where they came from and why they failed. The original `Nats-Msg-Id` \
                         moves to `Bus-Dlq-Msg-Id`."
                    ),
                    "messages": { dlq_name: { "$ref": format!("#/components/messages/{dlq_id}") } },
                    "bindings": { "nats": {} },
                }),
            );
            messages.insert(
                dlq_id,
                json!({
                    "name": format!("{name}DeadLetter"),
                    "title": format!("{id} (dead letter)"),
                    "summary": format!("A `{id}` that a subscription group dead-lettered."),
                    "contentType": PROTOBUF_CONTENT_TYPE,
                    "headers": dead_letter_headers(id, topic),
                    "payload": { "$ref": format!("#/components/schemas/{id}") },
                }),
            );
        }
        while let Some(name) = self.pending.pop_first() {
            if self.schemas.contains_key(&name) {
                continue;
            }
            let described = if let Some(m) = self.schema.pool.get_message_by_name(&name) {
                self.message_schema(&m)
            } else if let Some(e) = self.schema.pool.get_enum_by_name(&name) {
                enum_schema(&e)
            } else {
                continue;
            };
            self.schemas.insert(name, described);
        }

        let mut doc = json!({
            "asyncapi": ASYNCAPI_VERSION,
            "info": self.info(),
            "defaultContentType": PROTOBUF_CONTENT_TYPE,
            "servers": self.servers()?,
            "channels": channels,
            "components": {
                "messages": messages,
                "schemas": std::mem::take(&mut self.schemas),
            },
        });
        let operations = self.operations()?;
        if !operations.is_empty() {
            doc["operations"] = Value::Object(operations);
        }
        Ok(doc)
    }

    fn dead_letter_subject(&self, topic: &str) -> String {
        format!("{}.{topic}", self.settings.dead_letter_prefix)
    }

    fn info(&self) -> Value {
        let packages: BTreeSet<&str> = self
            .schema
            .events()
            .map(|(_, m)| m.package_name())
            .collect();
        let packages: Vec<&str> = packages.into_iter().collect();
        let title = self
            .settings
            .title
            .clone()
            .unwrap_or_else(|| format!("Events of {}", packages.join(", ")));
        let version = self
            .settings
            .version
            .clone()
            .or_else(|| std::env::var("CARGO_PKG_VERSION").ok())
            .unwrap_or_else(|| "0.0.0".into());
        let description = self.settings.description.clone().unwrap_or_else(|| {
            format!(
                "The events of {} on NATS JetStream, generated from the `.proto` files by \
                 bus-build. Payloads are protobuf (`{PROTOBUF_CONTENT_TYPE}`); their schemas \
                 describe the JSON form of each message (the protobuf JSON mapping). Dead \
                 letters are on `{}.{{topic}}`.",
                packages
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.settings.dead_letter_prefix,
            )
        });
        json!({ "title": title, "version": version, "description": description })
    }

    fn servers(&self) -> io::Result<Value> {
        let default = [("default".to_owned(), "nats://127.0.0.1:4222".to_owned())];
        let servers = if self.settings.servers.is_empty() {
            &default[..]
        } else {
            &self.settings.servers[..]
        };
        let mut out = Map::new();
        for (name, url) in servers {
            let (scheme, host) = url.split_once("://").unwrap_or(("nats", url.as_str()));
            let host = host.trim_end_matches('/');
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if host.is_empty() || !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                return Err(invalid(format!(
                    "server `{name}`: `{url}` is not a NATS URL: write e.g. `nats://host:4222`"
                )));
            }
            let mut server = json!({
                "host": host,
                "protocol": "nats",
                "bindings": { "nats": {} },
            });
            if scheme != "nats" {
                server["description"] = json!(format!("NATS over `{scheme}://`."));
            }
            out.insert(name.clone(), server);
        }
        Ok(Value::Object(out))
    }

    /// The topic of an event named by full name or topic.
    fn resolve(&self, event: &str, what: &str) -> io::Result<(String, MessageDescriptor)> {
        if let Some(m) = self.schema.event(event) {
            return Ok((event.to_owned(), m.clone()));
        }
        match self.schema.topic_of(event) {
            Some(topic) => Ok((topic.to_owned(), self.schema.events[topic].clone())),
            None => Err(invalid(format!(
                "AsyncAPI `{what}`: `{event}` is neither the full name nor the topic of an event \
                 of the schema"
            ))),
        }
    }

    fn operations(&self) -> io::Result<Map<String, Value>> {
        let mut ops = Map::new();
        for event in &self.settings.sends {
            let (topic, m) = self.resolve(event, "sends")?;
            ops.insert(
                format!("send.{topic}"),
                operation(
                    "send",
                    &topic,
                    m.name(),
                    &format!("Publishes `{}`.", m.full_name()),
                ),
            );
        }
        for (group, event) in &self.settings.receives {
            let (topic, m) = self.resolve(event, "receives")?;
            let mut receive = operation(
                "receive",
                &topic,
                m.name(),
                &format!(
                    "Receives `{}` in subscription group `{group}` (a durable JetStream \
                     consumer, whose members share the events); acknowledges it when handled.",
                    m.full_name()
                ),
            );
            receive["bindings"] = json!({ "nats": { "queue": group, "bindingVersion": "0.1.0" } });
            ops.insert(format!("receive.{group}.{topic}"), receive);
            let dlq = self.dead_letter_subject(&topic);
            ops.insert(
                format!("dead_letter.{group}.{topic}"),
                operation(
                    "send",
                    &dlq,
                    &format!("{}DeadLetter", m.name()),
                    &format!(
                        "Dead-letters a `{}` that group `{group}` gives up on.",
                        m.full_name()
                    ),
                ),
            );
        }
        Ok(ops)
    }

    /// The JSON schema of a message, per the protobuf JSON mapping; referenced types are queued.
    fn message_schema(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            let mut schema = self.field_schema(&field);
            if let Some(doc) = comments(message.parent_file_descriptor_proto(), field.path()) {
                schema = with_description(schema, &doc);
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({
            "type": "object",
            "title": message.full_name(),
            "properties": properties,
        });
        if let Some(doc) = comments(message.parent_file_descriptor_proto(), message.path()) {
            schema["description"] = json!(doc);
        }
        let oneofs: Vec<Value> = message
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .map(|o| at_most_one_of(&o))
            .collect();
        if !oneofs.is_empty() {
            schema["allOf"] = Value::Array(oneofs);
        }
        schema
    }

    fn field_schema(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry message")
            };
            let value = entry.map_entry_value_field();
            return json!({
                "type": "object",
                "additionalProperties": self.kind_schema(&value.kind()),
            });
        }
        let item = self.kind_schema(&field.kind());
        if field.is_list() {
            json!({ "type": "array", "items": item })
        } else {
            item
        }
    }

    fn kind_schema(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({
                "oneOf": [
                    { "type": "number" },
                    { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] },
                ],
            }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "format": "uint32", "minimum": 0 })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({
                "type": ["string", "integer"],
                "format": "int64",
                "description": "A 64-bit integer: a decimal string in JSON (a number is accepted).",
            }),
            Kind::Uint64 | Kind::Fixed64 => json!({
                "type": ["string", "integer"],
                "format": "uint64",
                "description": "A 64-bit unsigned integer: a decimal string in JSON (a number is accepted).",
            }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Message(m) => well_known(m.full_name()).unwrap_or_else(|| {
                self.pending.insert(m.full_name().to_owned());
                json!({ "$ref": format!("#/components/schemas/{}", m.full_name()) })
            }),
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => {
                json!({ "type": "null" })
            }
            Kind::Enum(e) => {
                self.pending.insert(e.full_name().to_owned());
                json!({ "$ref": format!("#/components/schemas/{}", e.full_name()) })
            }
        }
    }
}

/// An operation on `channel` with its message `message`.
fn operation(action: &str, channel: &str, message: &str, description: &str) -> Value {
    json!({
        "action": action,
        "channel": { "$ref": format!("#/channels/{channel}") },
        "messages": [{ "$ref": format!("#/channels/{channel}/messages/{message}") }],
        "description": description,
    })
}

/// "At most one of the oneof's fields is set", in JSON Schema.
fn at_most_one_of(oneof: &OneofDescriptor) -> Value {
    let each: Vec<Value> = oneof
        .fields()
        .map(|f| json!({ "required": [f.json_name()] }))
        .collect();
    let mut alternatives = each.clone();
    alternatives.push(json!({ "not": { "anyOf": each } }));
    json!({
        "description": format!(
            "oneof `{}`: at most one of {} is set.",
            oneof.name(),
            oneof
                .fields()
                .map(|f| format!("`{}`", f.json_name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "oneOf": alternatives,
    })
}

/// The JSON schema of an enum: its value names, with their comments.
fn enum_schema(e: &EnumDescriptor) -> Value {
    let file = e.parent_file_descriptor_proto();
    let mut doc = comments(file, e.path()).unwrap_or_default();
    let mut values = Vec::new();
    for v in e.values() {
        values.push(json!(v.name()));
        if let Some(c) = comments(file, v.path()) {
            if !doc.is_empty() {
                doc.push('\n');
            }
            doc.push_str(&format!("\n- `{}`: {c}", v.name()));
        }
    }
    let mut schema = json!({
        "type": "string",
        "title": e.full_name(),
        "enum": values,
    });
    if !doc.is_empty() {
        schema["description"] = json!(doc);
    }
    schema
}

/// The JSON schema of a well-known type, which the JSON mapping writes in its own form.
fn well_known(full_name: &str) -> Option<Value> {
    let int64 = || json!({ "type": ["string", "integer"], "format": "int64" });
    let schema = match full_name.strip_prefix("google.protobuf.")? {
        "Timestamp" => json!({
            "type": "string",
            "format": "date-time",
            "description": "google.protobuf.Timestamp: RFC 3339, e.g. `2024-05-01T12:00:00Z`.",
        }),
        "Duration" => json!({
            "type": "string",
            "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
            "description": "google.protobuf.Duration: seconds with an `s` suffix, e.g. `1.5s`.",
        }),
        "FieldMask" => json!({
            "type": "string",
            "description": "google.protobuf.FieldMask: comma-separated lowerCamelCase paths.",
        }),
        "Struct" => json!({ "type": "object" }),
        "Value" => json!({ "description": "google.protobuf.Value: any JSON value." }),
        "ListValue" => json!({ "type": "array" }),
        "Empty" => json!({ "type": "object", "maxProperties": 0 }),
        "Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
            "description": "google.protobuf.Any: the message's JSON with its type URL in `@type`.",
        }),
        "DoubleValue" | "FloatValue" => json!({
            "oneOf": [
                { "type": "number" },
                { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] },
            ],
        }),
        "Int64Value" | "UInt64Value" => int64(),
        "Int32Value" => json!({ "type": "integer", "format": "int32" }),
        "UInt32Value" => json!({ "type": "integer", "format": "uint32", "minimum": 0 }),
        "BoolValue" => json!({ "type": "boolean" }),
        "StringValue" => json!({ "type": "string" }),
        "BytesValue" => json!({ "type": "string", "contentEncoding": "base64" }),
        _ => return None,
    };
    Some(schema)
}

/// The headers of an event of type `full_name`.
fn event_headers(full_name: &str) -> Value {
    json!({
        "type": "object",
        "properties": {
            "Nats-Msg-Id": { "type": "string", "description": MSG_ID_DOC },
            "Bus-Event-Type": {
                "type": "string",
                "const": full_name,
                "description": "The full protobuf name of the payload's type.",
            },
            "traceparent": { "type": "string", "description": TRACEPARENT_DOC },
            "Bus-Replay-Of": { "type": "string", "description": REPLAY_OF_DOC },
        },
    })
}

/// The headers of a dead letter of an event of type `full_name` published on `topic`.
fn dead_letter_headers(full_name: &str, topic: &str) -> Value {
    json!({
        "type": "object",
        "required": [
            "Nats-Msg-Id", "Bus-Dlq-Topic", "Bus-Dlq-Stream-Seq", "Bus-Dlq-Deliveries",
            "Bus-Dlq-Group", "Bus-Dlq-Error-Class", "Bus-Dlq-Error",
        ],
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "pattern": "^dlq:",
                "description": "The dead letter's own id, `dlq:{group}:{stream sequence}`: a \
                                retried dead-letter publish is stored once.",
            },
            "Bus-Dlq-Topic": {
                "type": "string",
                "const": topic,
                "description": "The topic the event was published on.",
            },
            "Bus-Dlq-Stream-Seq": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "The event's sequence number in its stream.",
            },
            "Bus-Dlq-Deliveries": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "How many times the event was delivered.",
            },
            "Bus-Dlq-Group": {
                "type": "string",
                "description": "The subscription group that gave up on the event.",
            },
            "Bus-Dlq-Error-Class": {
                "type": "string",
                "enum": ERROR_CLASSES,
                "description": "Why: `retryable` or `timeout` (after the last attempt), \
                                `permanent`, `decode` (undecodable payload), `panic`, or \
                                `max_deliveries` (no outcome within the deliveries allowed).",
            },
            "Bus-Dlq-Error": { "type": "string", "description": "The last error's message." },
            "Bus-Dlq-Msg-Id": {
                "type": "string",
                "description": "The original event's `Nats-Msg-Id`.",
            },
            "Bus-Event-Type": { "type": "string", "const": full_name },
            "traceparent": { "type": "string", "description": TRACEPARENT_DOC },
            "Bus-Replay-Of": {
                "type": "string",
                "description": "Present when the dead-lettered event was itself a replay: \
                                `bus dlq replay` skips such dead letters unless forced, so a \
                                replay does not loop.",
            },
        },
    })
}

/// `schema` with `doc` as its description (before what it said, for an inline type).
fn with_description(mut schema: Value, doc: &str) -> Value {
    if schema.get("$ref").is_some() {
        // A `$ref` with siblings is ignored in draft 7: wrap it.
        return json!({ "description": doc, "allOf": [schema] });
    }
    let text = match schema.get("description").and_then(Value::as_str) {
        Some(own) => format!("{doc}\n\n{own}"),
        None => doc.to_owned(),
    };
    schema["description"] = json!(text);
    schema
}

/// The comments of the element at `path` of `file`, leading then trailing, one space of
/// indentation removed, or `None` when it has none.
fn comments(file: &prost_types::FileDescriptorProto, path: &[i32]) -> Option<String> {
    let location = file
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)?;
    let text: Vec<String> = [&location.leading_comments, &location.trailing_comments]
        .into_iter()
        .flatten()
        .map(|c| {
            c.lines()
                .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        })
        .filter(|c| !c.is_empty())
        .collect();
    (!text.is_empty()).then(|| text.join("\n\n"))
}

fn first_line(doc: &str) -> &str {
    doc.split("\n\n")
        .next()
        .unwrap_or(doc)
        .lines()
        .next()
        .unwrap_or(doc)
}

/// The AsyncAPI document as written: JSON, two-space indented, ending with a newline.
pub(crate) fn to_text(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("a JSON value serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(source: &str) -> Schema {
        let mut resolver = protox::file::ChainFileResolver::new();
        resolver.add(SourceResolver(source.to_owned()));
        resolver.add(protox::file::GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_source_info(true).include_imports(true);
        compiler.open_file("t.proto").unwrap();
        Schema::new(
            compiler.descriptor_pool(),
            [("t.v1.thing_done", "t.v1.ThingDone")],
        )
        .unwrap()
    }

    struct SourceResolver(String);

    impl protox::file::FileResolver for SourceResolver {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            if name == "t.proto" {
                protox::file::File::from_source(name, &self.0)
            } else {
                Err(protox::Error::file_not_found(name))
            }
        }
    }

    const PROTO: &str = r#"
        syntax = "proto3";
        package t.v1;
        import "google/protobuf/timestamp.proto";
        import "google/protobuf/wrappers.proto";

        // Something was done.
        message ThingDone {
          string event_id = 1; // The id.
          int64 count = 2;
          repeated Part parts = 3;
          map<string, double> weights = 4;
          Color color = 5;
          google.protobuf.Timestamp at = 6;
          google.protobuf.StringValue note = 7;
          oneof target {
            string user_id = 8;
            string group_id = 9;
          }
          bytes blob = 10;
          optional uint32 retries = 11;
        }
        message Part { Part child = 1; }
        enum Color {
          COLOR_UNSPECIFIED = 0;
          // Red, as in stop.
          COLOR_RED = 1;
        }
    "#;

    #[test]
    fn payload_schema_follows_the_json_mapping() {
        let doc = schema(PROTO)
            .asyncapi(&AsyncApi::new().version("1.0.0"))
            .unwrap();
        let s = &doc["components"]["schemas"];
        let thing = &s["t.v1.ThingDone"];
        assert_eq!(thing["description"], "Something was done.");
        let p = &thing["properties"];
        assert_eq!(p["eventId"]["description"], "The id.");
        assert_eq!(p["count"]["type"], json!(["string", "integer"]));
        assert_eq!(
            p["parts"]["items"]["$ref"],
            "#/components/schemas/t.v1.Part"
        );
        assert!(p["weights"]["additionalProperties"]["oneOf"].is_array());
        assert_eq!(p["color"]["$ref"], "#/components/schemas/t.v1.Color");
        assert_eq!(p["at"]["format"], "date-time");
        assert_eq!(p["note"]["type"], "string");
        assert_eq!(p["blob"]["contentEncoding"], "base64");
        assert_eq!(p["retries"]["minimum"], 0);
        assert_eq!(thing["allOf"][0]["oneOf"].as_array().unwrap().len(), 3);
        // Recursive and referenced types are described once.
        assert_eq!(
            s["t.v1.Part"]["properties"]["child"]["$ref"],
            "#/components/schemas/t.v1.Part"
        );
        assert_eq!(
            s["t.v1.Color"]["enum"],
            json!(["COLOR_UNSPECIFIED", "COLOR_RED"])
        );
        assert!(
            s["t.v1.Color"]["description"]
                .as_str()
                .unwrap()
                .contains("`COLOR_RED`: Red, as in stop."),
            "{}",
            s["t.v1.Color"]
        );
        assert!(s.get("google.protobuf.Timestamp").is_none());
    }

    #[test]
    fn channels_messages_and_dead_letters() {
        let doc = schema(PROTO)
            .asyncapi(&AsyncApi::new().dead_letter_prefix("dead."))
            .unwrap();
        let channel = &doc["channels"]["t.v1.thing_done"];
        assert_eq!(channel["address"], "t.v1.thing_done");
        assert_eq!(
            channel["messages"]["ThingDone"]["$ref"],
            "#/components/messages/t.v1.ThingDone"
        );
        let dlq = &doc["channels"]["dead.t.v1.thing_done"];
        assert_eq!(dlq["address"], "dead.t.v1.thing_done");
        let dead = &doc["components"]["messages"]["t.v1.ThingDone.dead_letter"];
        assert_eq!(
            dead["headers"]["properties"]["Bus-Dlq-Topic"]["const"],
            "t.v1.thing_done"
        );
        assert_eq!(doc["servers"]["default"]["host"], "127.0.0.1:4222");
        assert!(
            doc.get("operations").is_none(),
            "nothing known, no operations"
        );
    }

    #[test]
    fn operations_when_told() {
        let doc = schema(PROTO)
            .asyncapi(
                &AsyncApi::new()
                    .sends(["t.v1.ThingDone"])
                    .receives("audit", ["t.v1.thing_done"]),
            )
            .unwrap();
        let ops = doc["operations"].as_object().unwrap();
        assert_eq!(ops["send.t.v1.thing_done"]["action"], "send");
        let receive = &ops["receive.audit.t.v1.thing_done"];
        assert_eq!(receive["action"], "receive");
        assert_eq!(receive["bindings"]["nats"]["queue"], "audit");
        assert_eq!(
            ops["dead_letter.audit.t.v1.thing_done"]["channel"]["$ref"],
            "#/channels/dlq.t.v1.thing_done"
        );
        let e = schema(PROTO)
            .asyncapi(&AsyncApi::new().sends(["t.v1.Nope"]))
            .unwrap_err();
        assert!(e.to_string().contains("`t.v1.Nope`"), "{e}");
        let e = schema(PROTO)
            .asyncapi(&AsyncApi::new().server("prod", "http://x"))
            .unwrap_err();
        assert!(e.to_string().contains("nats://host:4222"), "{e}");
    }
}
