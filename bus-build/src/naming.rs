//! Names: topics, constants and Rust identifiers, computed the way the runtime and prost do.
//!
//! `snake_case` and `check_subject` are copies of `bus::topic::{snake_case, check_subject}`: a
//! build dependency should not pull the runtime in. The tests of the workspace check that both
//! agree on the fixture schema.

use heck::ToUpperCamelCase;

/// `snake_case` of a message name, as in `bus::topic::snake_case`: acronyms stay together
/// (`HTTPRequestFailed` -> `http_request_failed`), digits stick to the word before them.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(char::is_lowercase),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why `subject` is not a valid topic (a NATS subject without wildcards), if it is not.
pub(crate) fn topic_error(subject: &str) -> Option<&'static str> {
    if subject.is_empty() {
        return Some("it is empty");
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Some(
                "it has an empty token (a leading, trailing or doubled `.`); write tokens separated by single dots",
            );
        }
        if token.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Some("it contains whitespace or a control character; remove it");
        }
        if token.contains(['*', '>']) {
            return Some("a topic cannot contain the wildcards `*` or `>`; give a concrete topic");
        }
    }
    None
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
        for (input, want) in [
            ("PriceUpdated", "price_updated"),
            ("HTTPRequestFailed", "http_request_failed"),
            ("OrderV2Placed", "order_v2_placed"),
            ("getHTTP", "get_http"),
            ("Already_Snake", "already_snake"),
            ("ABC", "abc"),
        ] {
            assert_eq!(snake_case(input), want, "{input}");
        }
        assert_eq!(rust_type_name("HTTPRequestFailed"), "HttpRequestFailed");
        assert_eq!(const_name("HTTPRequestFailed"), "HTTP_REQUEST_FAILED");
    }

    #[test]
    fn topics() {
        assert_eq!(topic_error("shop.v1.order_placed"), None);
        for bad in ["", "a..b", "a.", "a b", "a.*", "a.>", "a*"] {
            assert!(topic_error(bad).is_some(), "{bad:?}");
        }
    }
}
