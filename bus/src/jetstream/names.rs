//! Durable consumer names derived from (group, filter).

use crate::Error;

/// Longest readable part of a durable name; the hash follows it.
const READABLE_MAX: usize = 64;

/// Longest group accepted.
const GROUP_MAX: usize = 200;

/// The durable consumer name of subscription group `group` on `filter`.
///
/// NATS consumer names may not contain `.`, `*`, `>`, whitespace or path separators. The name is
/// the group with every character outside `[A-Za-z0-9_-]` replaced by `_` (at most 64 of them),
/// then `_` and 16 hex digits of a stable hash (FNV-1a, 64 bits) of the exact group and filter.
/// So the name is the same in every process and release, two groups that sanitize alike still
/// get different consumers, and the same group on two filters gets two consumers, as the
/// delivery contract asks (a subscription is a (filter, group) pair).
///
/// An empty group, one with control characters, or one longer than 200 bytes is an error that
/// says how to fix it.
///
/// ```
/// let name = bus::jetstream::durable_name("billing-on_order", "cqc.events.v1.order_placed").unwrap();
/// assert!(name.starts_with("billing-on_order_"));
/// assert!(!name.contains(['.', '*', '>', ' ']));
/// assert_ne!(name, bus::jetstream::durable_name("billing.on_order", "cqc.events.v1.order_placed").unwrap());
/// assert!(bus::jetstream::durable_name("", "cqc.events.v1.>").is_err());
/// ```
pub fn durable_name(group: &str, filter: &str) -> Result<String, Error> {
    if group.trim().is_empty() {
        return Err(Error::Config(
            "the subscription group is empty, so it cannot name a durable consumer: give the \
             handler a name, set `consumer_name`, or call `.group(\"...\")`"
                .into(),
        ));
    }
    if group.chars().any(char::is_control) {
        return Err(Error::Config(format!(
            "the subscription group {group:?} contains control characters, so it cannot name a \
             durable consumer: use letters, digits, `-` and `_`"
        )));
    }
    if group.len() > GROUP_MAX {
        return Err(Error::Config(format!(
            "the subscription group `{group}` is {} bytes long, over the {GROUP_MAX} allowed: \
             use a shorter handler name, `consumer_name` or `.group(...)`",
            group.len()
        )));
    }
    let readable: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(READABLE_MAX)
        .collect();
    let mut hash = Fnv::new();
    hash.write(group.as_bytes());
    hash.write(&[0]);
    hash.write(filter.as_bytes());
    Ok(format!("{readable}_{:016x}", hash.0))
}

/// FNV-1a, 64 bits: tiny and stable across Rust releases (unlike `DefaultHasher`).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_stable_and_distinct() {
        let a = durable_name("svc-handler", "cqc.events.v1.>").unwrap();
        // Pinned: a change here renames every durable consumer in production.
        assert_eq!(a, "svc-handler_a23914fd091b4757");
        assert_eq!(a.len(), "svc-handler".len() + 17);
        let b = durable_name("svc-handler", "cqc.events.v1.*").unwrap();
        assert_ne!(a, b, "same group, other filter: another consumer");
        let c = durable_name("svc.handler", "cqc.events.v1.>").unwrap();
        assert_ne!(a, c, "groups that sanitize alike stay apart");
        for name in [&a, &b, &c] {
            assert!(
                name.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'),
                "{name}"
            );
        }
        let long = durable_name(&"x".repeat(150), "a").unwrap();
        assert_eq!(long.len(), 64 + 17);
        let odd = durable_name("prix €/*> x", "a").unwrap();
        assert!(odd.starts_with("prix______x_"), "{odd}");
    }

    #[test]
    fn bad_groups_are_errors() {
        for bad in ["", "  ", "a\nb"] {
            let e = durable_name(bad, "a.b").unwrap_err().to_string();
            assert!(e.contains("group"), "{e}");
        }
        assert!(durable_name(&"x".repeat(201), "a").is_err());
    }

    #[test]
    fn fnv_known_value() {
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }
}
