//! The one duration grammar of swarmgate, shared by the config file and every label dialect.
//!
//! Grammar: Go-style durations as Caddy and Traefik write them (`250ms`, `10s`, `1m30s`,
//! `1.5h`), with `d` for days, or a bare number of seconds (`10`, `0.5`). Units: `ns`, `us`/`µs`,
//! `ms`, `s`, `m`, `h`, `d`. No sign, no spaces inside, at most [`MAX`].
//!
//! Why by hand: `humantime` rejects Go's fractional components (`1.5h`) and bare numbers, and
//! `go-parse-duration` returns a signed nanosecond count that overflows into panics elsewhere.
//! The arithmetic here is integer and checked, so no input, however large, can panic (the
//! previous float conversion through `Duration::from_secs_f64` aborted the process on
//! `99999999999999999999999s`).

use std::time::Duration;

/// The longest duration any setting accepts: ten years. Long enough for every real interval,
/// short enough that `Instant::now() + d` can never overflow.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Why a duration was refused. The message quotes the input so the caller only has to add
/// the key or label it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?} (examples: 500ms, 10s, 1m30s)")]
    Syntax(String),
    #[error("duration {0:?} is longer than the maximum of 10 years")]
    TooLong(String),
}

/// Parses a duration; see the module documentation for the grammar.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    let syntax = || DurationError::Syntax(input.to_string());
    if s.is_empty() {
        return Err(syntax());
    }
    let max_ns = MAX.as_nanos();
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let (number, after) = split_number(rest).ok_or_else(syntax)?;
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let unit_ns = match &after[..unit_end] {
            // A bare number is seconds, but only as the whole input: `1m30` is a typo.
            "" if total == 0 && unit_end == after.len() => 1_000_000_000,
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(syntax()),
        };
        let part = number.nanos(unit_ns).ok_or_else(|| DurationError::TooLong(input.to_string()))?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= max_ns)
            .ok_or_else(|| DurationError::TooLong(input.to_string()))?;
        rest = &after[unit_end..];
    }
    // `total <= MAX` was checked, so both conversions are lossless.
    Ok(Duration::new((total / 1_000_000_000) as u64, (total % 1_000_000_000) as u32))
}

/// A decimal number as written: integer digits and fraction digits.
struct Number<'a> {
    int: &'a str,
    frac: &'a str,
}

impl Number<'_> {
    /// The number times `unit_ns`, in nanoseconds; `None` when it is far too large. Fraction
    /// digits beyond the 18th cannot change a nanosecond count and are dropped.
    fn nanos(&self, unit_ns: u128) -> Option<u128> {
        let int = if self.int.is_empty() { 0 } else { self.int.parse::<u128>().ok()? };
        let frac_digits = &self.frac[..self.frac.len().min(18)];
        let frac = if frac_digits.is_empty() { 0 } else { frac_digits.parse::<u128>().ok()? };
        let scale = 10u128.pow(frac_digits.len() as u32);
        int.checked_mul(unit_ns)?.checked_add(frac * unit_ns / scale)
    }
}

/// Splits a leading `digits[.digits]` (at least one digit) off `s`.
fn split_number(s: &str) -> Option<(Number<'_>, &str)> {
    let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, after) = s.split_at(int_end);
    let (frac, after) = match after.strip_prefix('.') {
        Some(f) => {
            let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            f.split_at(end)
        }
        None => ("", after),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    Some((Number { int, frac }, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_caddy_traefik_and_the_config_write() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1500us").unwrap(), Duration::from_micros(1500));
        assert_eq!(parse(" 3s ").unwrap(), Duration::from_secs(3));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("0.1234567891234s").unwrap(), Duration::from_nanos(123_456_789));
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in ["", "s", "10 parsecs", "5 parsecs", "-1s", "1m30", "1..5s", ".s", "1e3s", "+5s", "5S", "1 s"] {
            assert!(matches!(parse(bad), Err(DurationError::Syntax(_))), "{bad:?} was accepted");
        }
    }

    #[test]
    fn huge_numbers_are_an_error_not_a_panic() {
        for big in [
            "99999999999999999999999s",
            "99999999999999999999999999999999999999999999999999s",
            "18446744073709551616",
            "3651d",
            "5000000h",
            "99999999999999999999999999999999999999.9ms",
        ] {
            assert!(matches!(parse(big), Err(DurationError::TooLong(_))), "{big:?}");
        }
        assert_eq!(parse("3650d").unwrap(), MAX);
        assert!(parse("3650d1ns").is_err());
    }
}
