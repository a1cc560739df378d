//! Names of generated items: constants and Rust identifiers, computed the way prost does. The
//! topic rules themselves (`snake_case`, what a topic may be) are `bus-names`', shared with the
//! runtime and the macro.

use heck::ToUpperCamelCase;

pub use bus_names::snake_case;

/// Why `subject` is not a valid topic (a NATS subject without wildcards), if it is not.
pub(crate) fn topic_error(subject: &str) -> Option<&'static str> {
    bus_names::check_topic(subject).err().map(|e| e.reason())
}

/// The Rust type name prost gives a message (`HTTPRequestFailed` -> `HttpRequestFailed`).
pub(crate) fn rust_type_name(message: &str) -> String {
    sanitize(message.to_upper_camel_case())
}

/// The name of an event's topic constant: `ASSET_CREATED`.
pub(crate) fn const_name(message: &str) -> String {
    snake_case(message).to_uppercase()
}

/// Raw identifiers for keywords, as prost-build does.
fn sanitize(ident: String) -> String {
    match ident.as_str() {
        "Self" => format!("{ident}_"),
        s if s.starts_with(|c: char| c.is_numeric()) => format!("_{ident}"),
        _ => ident,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(rust_type_name("HTTPRequestFailed"), "HttpRequestFailed");
        assert_eq!(const_name("HTTPRequestFailed"), "HTTP_REQUEST_FAILED");
    }
}
