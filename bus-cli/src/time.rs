//! Times on the command line (`--since 10m`, `--until 2024-05-01T12:00:00Z`) and in output
//! (RFC 3339, UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::DeliverPolicy;

use crate::error::{Error, bail};

/// A point in time given as RFC 3339 (`2024-05-01T12:00:00Z`) or as a duration ago (`10m`,
/// `2h`, `1d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(pub(crate) SystemTime);

impl std::str::FromStr for Time {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(t) = humantime::parse_rfc3339_weak(s) {
            return Ok(Time(t));
        }
        match humantime::parse_duration(s) {
            Ok(ago) => SystemTime::now()
                .checked_sub(ago)
                .map(Time)
                .ok_or_else(|| format!("`{s}` ago is before the clock's start")),
            Err(_) => Err(format!(
                "`{s}` is neither a time (RFC 3339, e.g. `2024-05-01T12:00:00Z`) nor a duration \
                 ago (e.g. `10m`, `2h`)"
            )),
        }
    }
}

impl Time {
    /// As the NATS client's time type.
    pub(crate) fn to_nats(self) -> Result<async_nats::datetime::DateTime, Error> {
        let nanos = match self.0.duration_since(UNIX_EPOCH) {
            Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
            Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
        };
        async_nats::datetime::from_nanos(nanos)
            .map_err(|e| Error::new(format!("time out of range: {e}")))
    }

    /// Where a consumer starting at this time starts.
    pub(crate) fn deliver_policy(self) -> Result<DeliverPolicy, Error> {
        Ok(DeliverPolicy::ByStartTime {
            start_time: self.to_nats()?,
        })
    }
}

/// A NATS time as a `SystemTime`.
pub(crate) fn system_time(t: async_nats::datetime::DateTime) -> SystemTime {
    let nanos = t.unix_timestamp_nanos();
    let magnitude = Duration::from_nanos(u64::try_from(nanos.unsigned_abs()).unwrap_or(u64::MAX));
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A NATS time in RFC 3339, UTC, with milliseconds.
pub(crate) fn format(t: async_nats::datetime::DateTime) -> String {
    humantime::format_rfc3339_millis(system_time(t)).to_string()
}

/// Refuses a window that ends before it starts.
pub(crate) fn check_window(since: Option<Time>, until: Option<Time>) -> Result<(), Error> {
    if let (Some(since), Some(until)) = (since, until)
        && until.0 < since.0
    {
        bail!("`--until` is before `--since`: nothing can match");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_a_duration_ago() {
        let t: Time = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(format(t.to_nats().unwrap()), "2024-05-01T12:00:00.000Z");
        let ago: Time = "10m".parse().unwrap();
        let age = SystemTime::now().duration_since(ago.0).unwrap();
        assert!(age >= Duration::from_secs(600) && age < Duration::from_secs(660));
        let e = "yesterday".parse::<Time>().unwrap_err();
        assert!(e.contains("RFC 3339") && e.contains("10m"), "{e}");
        assert!(check_window(Some(t), Some(ago)).is_ok());
        assert!(check_window(Some(ago), Some(t)).is_err());
    }
}
