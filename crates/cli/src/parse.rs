//! Value parsers for clap: a bad value is a usage error (exit 2) that
//! names the flag, e.g. `invalid value '3x' for '--older-than <DURATION>'`.

use std::time::{Duration, UNIX_EPOCH};

use stowage_core::validate::MAX_PAGE;
use stowage_core::{Digest, RunStatus, SessionState, Timestamp};

/// A duration such as `30d`, `12h`, `90s` or `1h 30m` (humantime).
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration such as 30d, 12h or 15m)"))
}

/// An RFC 3339 time such as `2026-11-01T00:00:00Z` (UTC, or with an
/// offset), not before 1970.
pub(crate) fn rfc3339(s: &str) -> Result<Timestamp, String> {
    let expected = "(expected an RFC 3339 time such as 2026-11-01T00:00:00Z)";
    let time = humantime::parse_rfc3339_weak(s)
        .or_else(|_| offset_time(s).ok_or(()))
        .map_err(|()| format!("not an RFC 3339 time {expected}"))?;
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("before 1970 {expected}"))?
        .as_millis();
    Ok(Timestamp::from_millis(
        u64::try_from(ms).map_err(|_| format!("too far ahead {expected}"))?,
    ))
}

/// `…+HH:MM` or `…-HH:MM`: humantime only takes `Z`, so shift the local
/// time to UTC by hand.
fn offset_time(s: &str) -> Option<std::time::SystemTime> {
    let (local, sign, offset) = match s.len().checked_sub(6) {
        Some(i) if s.is_char_boundary(i) => {
            let (local, offset) = s.split_at(i);
            let sign = match offset.as_bytes()[0] {
                b'+' => 1i64,
                b'-' => -1,
                _ => return None,
            };
            (local, sign, &offset[1..])
        }
        _ => return None,
    };
    let (h, m) = offset.split_once(':')?;
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let utc = humantime::parse_rfc3339_weak(&format!("{local}Z")).ok()?;
    let shift = Duration::from_secs(h * 3600 + m * 60);
    // Local = UTC + offset, so UTC = local - offset.
    if sign > 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    }
}

/// A run status, any case.
pub(crate) fn run_status(s: &str) -> Result<RunStatus, String> {
    match s.to_ascii_lowercase().as_str() {
        "running" => Ok(RunStatus::Running),
        "completed" => Ok(RunStatus::Completed),
        "failed" => Ok(RunStatus::Failed),
        "cancelled" | "canceled" => Ok(RunStatus::Cancelled),
        _ => Err("expected one of running, completed, failed, cancelled".into()),
    }
}

/// A session state, any case.
pub(crate) fn session_state(s: &str) -> Result<SessionState, String> {
    match s.to_ascii_lowercase().as_str() {
        "open" => Ok(SessionState::Open),
        "suspended" => Ok(SessionState::Suspended),
        "resolved" => Ok(SessionState::Resolved),
        "expired" => Ok(SessionState::Expired),
        "cancelled" | "canceled" => Ok(SessionState::Cancelled),
        _ => Err("expected one of open, suspended, resolved, expired, cancelled".into()),
    }
}

/// A blob digest: 64 hex characters.
pub(crate) fn digest(s: &str) -> Result<Digest, String> {
    s.parse::<Digest>().map_err(|e| e.message().to_owned())
}

/// A batch size from 1 to [`MAX_PAGE`].
pub(crate) fn batch(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {MAX_PAGE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(duration("3x").is_err());
        assert!(duration("-1d").is_err());
        let z = rfc3339("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(z.as_millis(), 1_700_000_000_000);
        assert_eq!(rfc3339("2023-11-14T23:13:20+01:00"), Ok(z));
        assert_eq!(rfc3339("2023-11-14T21:43:20-00:30"), Ok(z));
        assert_eq!(
            rfc3339("2023-11-14T22:13:20.5Z").unwrap().as_millis(),
            1_700_000_000_500
        );
        assert!(rfc3339("yesterday").is_err());
        assert!(rfc3339("2023-11-14T22:13:20+25:00").is_err());
        assert!(rfc3339("1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn names_parse_in_any_case() {
        assert_eq!(run_status("Failed"), Ok(RunStatus::Failed));
        assert!(run_status("done").is_err());
        assert_eq!(session_state("EXPIRED"), Ok(SessionState::Expired));
        assert!(session_state("closed").is_err());
        assert_eq!(batch("64"), Ok(64));
        assert!(batch("0").is_err());
        assert!(batch("10001").is_err());
        assert!(digest("abc").is_err());
    }
}
