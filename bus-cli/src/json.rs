//! Messages as JSON: headers, times, and the payload decoded with the schema (or as base64 when
//! it cannot be).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::catalog::{self, Catalog};

/// Headers as a JSON object: a name with one value maps to a string, one with several to an
/// array.
pub(crate) fn headers(map: Option<&async_nats::HeaderMap>) -> Value {
    let mut out = Map::new();
    if let Some(map) = map {
        for (name, values) in map.iter() {
            let values: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
            let value = match values.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            out.insert(name.to_string(), value);
        }
    }
    Value::Object(out)
}

/// The value of header `name`.
pub(crate) fn header<'a>(map: Option<&'a async_nats::HeaderMap>, name: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(name)).map(|v| v.as_str())
}

/// Adds the decoded payload to `out`: `type` and `event`, or `payload_base64` and
/// `decode_error` when the type is unknown or the bytes do not decode.
pub(crate) fn add_payload(
    out: &mut Map<String, Value>,
    catalog: &Catalog,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) {
    let error = match catalog.message_for(subject, headers) {
        Some(message) => {
            out.insert("type".into(), json!(message.full_name()));
            match catalog::decode(&message, payload) {
                Ok(event) => {
                    out.insert("event".into(), event);
                    return;
                }
                Err(e) => e,
            }
        }
        None => format!(
            "no known event type for `{subject}` (no `Bus-Event-Type` this program knows): \
             pass its schema with `--proto DIR`"
        ),
    };
    out.insert(
        "payload_base64".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(payload)),
    );
    out.insert("decode_error".into(), json!(error));
}
