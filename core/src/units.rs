//! The one grammar of durations and sizes on every command line (DESIGN.md §4.7).
//!
//! Durations: a bare number is seconds (`3`, `0.5`), as `sleep` and `timeout` read it, or a
//! number with units as `humantime` reads them (`30s`, `1500ms`, `15m`, `1h30m`). Sizes: a bare
//! number is bytes, or a number with a unit: `KiB`/`MiB`/`GiB` (and `K`/`M`/`G`, as `dd` and
//! `ls -h` mean them) are powers of 1024, `kB`/`KB`/`MB`/`GB` powers of 1000. Sizes are parsed
//! here rather than with a crate because every size crate found disagrees with one of these
//! readings (`K` as 1000, or no bare numbers).

use std::time::Duration;

/// A value that is not in the grammar; its message gives the grammar, so it suits a clap
/// value parser as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a duration.
    #[error(
        "{value:?} is not a duration: give seconds (90, 0.5) or a number with a unit (30s, \
         1500ms, 15m, 2h, 1h30m)"
    )]
    BadDuration {
        /// What was given.
        value: String,
    },
    /// Not a size.
    #[error(
        "{value:?} is not a size: give bytes (65536) or a number with a unit (64KiB, 10MiB, \
         1GiB; kB/MB/GB are powers of 1000)"
    )]
    BadSize {
        /// What was given.
        value: String,
    },
}

/// Parses a duration; the error says the grammar.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let bad = || UnitError::BadDuration {
        value: s.to_string(),
    };
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| bad())?;
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    humantime::parse_duration(t).map_err(|_| bad())
}

/// Parses a size in bytes; the error says the grammar.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let bad = || UnitError::BadSize {
        value: s.to_string(),
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(bad());
    }
    let multiplier: u64 = match unit {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" | "Ki" => 1 << 10,
        "M" | "MiB" | "Mi" => 1 << 20,
        "G" | "GiB" | "Gi" => 1 << 30,
        "T" | "TiB" | "Ti" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier).ok_or_else(bad);
    }
    let n: f64 = number.parse().map_err(|_| bad())?;
    let bytes = n * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// A size for a person: `512 B`, `64 KiB`, `1.5 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_seconds_and_units_are_humantime() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "-3", "3x", "s", "1..2", "1e400"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_are_bytes_or_binary_or_decimal_units() {
        assert_eq!(parse_size("65536"), Ok(65_536));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("64K"), Ok(65_536));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1kB"), Ok(1000));
        for bad in [
            "",
            "MiB",
            "10 mb",
            "1.2.3K",
            "-1",
            "99999999999999999999TiB",
        ] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("is not a size"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(65_536), "64 KiB");
        assert_eq!(format_size(3 << 19), "1.5 MiB");
        assert_eq!(format_size(256 << 20), "256 MiB");
    }
}
