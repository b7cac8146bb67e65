//! Sizes and names as operators type them, checked once for the CLI and the console alike.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum InputError {
    #[error("bad size {input:?}: {why} (examples: 512M, 10G, 1T; a bare number is GiB)")]
    Size { input: String, why: String },
    #[error("bad name {input:?}: {why}")]
    Name { input: String, why: &'static str },
}

/// Largest size accepted: 1 PiB, far beyond any volume and far below overflow.
const MAX_SIZE: u64 = 1 << 50;

/// Parses `512M`, `10G`, `1.5T`, `4096B`; units are binary (M = MiB). A bare number is GiB,
/// as in Cinder, where sizes are whole gibibytes.
pub fn parse_size(input: &str) -> Result<u64, InputError> {
    let s = input.trim();
    let err = |why: &str| InputError::Size {
        input: input.to_string(),
        why: why.to_string(),
    };
    if s.is_empty() {
        return Err(err("empty"));
    }
    let bytes = if s.chars().all(|c| c.is_ascii_digit()) {
        s.parse::<u64>()
            .map_err(|_| err("too large"))?
            .checked_mul(1 << 30)
            .ok_or_else(|| err("too large"))?
    } else {
        parse_size::Config::new()
            .with_binary()
            .parse_size(s)
            .map_err(|e| err(&e.to_string()))?
    };
    if bytes == 0 {
        return Err(err("must be more than 0"));
    }
    if bytes > MAX_SIZE {
        return Err(err("larger than 1 PiB"));
    }
    Ok(bytes)
}

/// An id as screens and messages show it: its first 8 characters. Cut on a character
/// boundary, never a byte offset: ids of adopted images may carry any name, and a byte cut
/// inside a character panicked (issue 23).
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// A rate in bytes per second, as Cinder's `volume_copy_bps_limit` writes it: a bare number is
/// bytes (0: no limit), or a size with a unit per second (`100M`).
pub fn parse_rate(input: &str) -> Result<u64, InputError> {
    let s = input.trim().trim_end_matches("/s");
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse::<u64>().map_err(|_| InputError::Size {
            input: input.to_string(),
            why: "too large".into(),
        });
    }
    parse_size(s)
}

/// Volume and snapshot names: free text as in Cinder, but one printable line.
pub fn check_name(input: &str) -> Result<&str, InputError> {
    let err = |why| InputError::Name {
        input: input.to_string(),
        why,
    };
    if input.trim().is_empty() {
        return Err(err("empty"));
    }
    if input.len() > 255 {
        return Err(err("longer than 255 bytes"));
    }
    if input.chars().any(char::is_control) {
        return Err(err("contains control characters"));
    }
    Ok(input)
}

// Display helpers shared by the command line and the console.

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Bytes in binary units, as `rbd` and `df -h` print them.
pub fn human_bytes(b: i64) -> String {
    if b < 0 {
        return format!("{b} B");
    }
    crate::driver::human_size(b.unsigned_abs())
}

pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.0}h", s / 3600.0)
    } else {
        format!("{:.0}d", s / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_cut_on_a_character_boundary() {
        assert_eq!(short_id("4a627666-f993-4700"), "4a627666");
        assert_eq!(short_id("abc"), "abc");
        // A multi-byte character across byte 8 panicked with `&id[..8]`.
        assert_eq!(short_id("volume-é-data"), "volume-é");
        assert_eq!(short_id("日本語のイメージ名です"), "日本語のイメージ");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10"), Ok(10 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("db-data 2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
    }
}
