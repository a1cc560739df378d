//! NATS subject rules, checked at expansion time so a bad topic literal or group is an error on
//! its span. The same rules as `bus::topic`; the expansion also re-checks topic literals with the
//! runtime's own `const fn`, so the two cannot drift apart silently.

/// Why `filter` is not a valid subscription filter, if it is not. Wildcards `*` (one token) and
/// `>` (last token, one or more tokens) are allowed.
pub(crate) fn filter_error(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("it is empty");
    }
    let tokens: Vec<&str> = filter.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Some(
                "it has an empty token (a leading, trailing or doubled `.`); write tokens separated by single dots",
            );
        }
        if token.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Some("it contains whitespace or a control character; remove it");
        }
        if token.contains(['*', '>']) {
            if token.len() > 1 {
                return Some(
                    "`*` and `>` must be whole tokens (`a.*.c`, `a.>`), not part of a token",
                );
            }
            if *token == ">" && i + 1 != tokens.len() {
                return Some("`>` may only be the last token of a filter");
            }
        }
    }
    None
}

/// Why `group` cannot name a durable consumer, if it cannot.
pub(crate) fn group_error(group: &str) -> Option<&'static str> {
    if group.is_empty() {
        return Some("it is empty");
    }
    if group
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Some(
            "a group names a durable consumer, which cannot contain `.`, `*`, `>`, `/`, `\\` or whitespace; use letters, digits, `-` and `_`",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for ok in [
            "a",
            "a.b",
            "cqc.events.v1.x",
            "*",
            ">",
            "a.*",
            "a.>",
            "*.b.>",
            "a.*.c",
        ] {
            assert_eq!(filter_error(ok), None, "{ok}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a b", "a\tb", "a.>.b", "a*", "a.b*", "a.>x",
        ] {
            assert!(filter_error(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn groups() {
        assert_eq!(group_error("risk-service_1"), None);
        for bad in ["", "a.b", "a*", "a>", "a b", "a/b"] {
            assert!(group_error(bad).is_some(), "{bad:?}");
        }
    }
}
