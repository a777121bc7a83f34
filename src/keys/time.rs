//! LiteLLM's duration strings (`30s`, `5m`, `24h`, `30d`, `1w`, `1mo`) and RFC 3339 timestamps,
//! as Unix seconds. Months count 30 days: budgets reset lazily by window length, not calendar.

/// Parses `<n><unit>`; `None` for anything else (zero and negative durations included).
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok().filter(|n| *n > 0)?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "mo" => 30 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (also a bare date, meaning midnight UTC).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> {
        let part = s.get(a..b)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if s.get(4..5) != Some("-")
        || s.get(7..8) != Some("-")
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if civil_from_days(days) != (y, mo, d) {
        return None; // e.g. February 30th
    }
    let mut secs = days * 86_400;
    if s.len() > 10 {
        if !matches!(s.get(10..11), Some("T") | Some("t") | Some(" "))
            || s.get(13..14) != Some(":")
            || s.get(16..17) != Some(":")
        {
            return None;
        }
        let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        if h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + se;
        let mut rest = s.get(19..)?;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            rest = frac.get(digits..)?;
        }
        match rest {
            "Z" | "z" => {}
            tz if tz.len() == 6
                && (tz.starts_with('+') || tz.starts_with('-'))
                && tz.get(3..4) == Some(":") =>
            {
                let oh: i64 = tz.get(1..3)?.parse().ok()?;
                let om: i64 = tz.get(4..6)?.parse().ok()?;
                let offset = oh * 3600 + om * 60;
                secs -= if tz.starts_with('+') { offset } else { -offset };
            }
            _ => return None,
        }
    }
    u64::try_from(secs).ok()
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(secs: u64) -> String {
    let mut out = String::with_capacity(20);
    write_rfc3339(&mut out, secs, None);
    out
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: u64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339(&mut out, ms / 1000, Some(ms % 1000));
    out
}

/// Writes the digits by hand: every request's spend record has two of these, and `format!`
/// with padding costs ten times as much (more again in the `.wasm`).
fn write_rfc3339(out: &mut String, secs: u64, millis: Option<u64>) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    match u64::try_from(y).ok().filter(|y| *y <= 9999) {
        Some(year) => {
            let fields = [
                (year, 4, '-'),
                (m.unsigned_abs(), 2, '-'),
                (d.unsigned_abs(), 2, 'T'),
                (rem / 3600, 2, ':'),
                (rem % 3600 / 60, 2, ':'),
            ];
            for (value, width, sep) in fields {
                push_digits(out, value, width);
                out.push(sep);
            }
            push_digits(out, rem % 60, 2);
        }
        // Past year 9999: as many digits as it takes.
        None => {
            use std::fmt::Write;
            let _ = write!(
                out,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
        }
    }
    if let Some(ms) = millis {
        out.push('.');
        push_digits(out, ms, 3);
    }
    out.push('Z');
}

/// The last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u64, width: u32) {
    let mut div = 10u64.pow(width.saturating_sub(1));
    while div > 0 {
        let digit = u8::try_from(value / div % 10).unwrap_or(0);
        out.push(char::from(b'0' + digit));
        div /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_format_would() {
        let reference = |secs: u64, ms: Option<u64>| {
            let days = i64::try_from(secs / 86_400).unwrap();
            let rem = secs % 86_400;
            let (y, m, d) = civil_from_days(days);
            let base = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            match ms {
                Some(ms) => format!("{base}.{ms:03}Z"),
                None => format!("{base}Z"),
            }
        };
        let mut secs = 0u64;
        for step in [1, 59, 3_599, 86_399, 2_629_743, 31_556_952, 977_777_777] {
            for _ in 0..40 {
                secs = secs.wrapping_add(step) % 400_000_000_000;
                assert_eq!(format_rfc3339(secs), reference(secs, None), "{secs}");
                let ms = secs.wrapping_mul(1000) + step % 1000;
                assert_eq!(
                    format_rfc3339_ms(ms),
                    reference(ms / 1000, Some(ms % 1000)),
                    "{ms}"
                );
            }
        }
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339_ms(1_790_000_000_123),
            "2026-09-21T14:13:20.123Z"
        );
        assert_eq!(format_rfc3339(253_402_300_800), "10000-01-01T00:00:00Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("30d"), Some(2_592_000));
        assert_eq!(parse_duration("1w"), Some(604_800));
        assert_eq!(parse_duration("1mo"), Some(2_592_000));
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1y",
            "1.5h",
            "1 d",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2027-01-01T00:00:00Z"), Some(1_798_761_600));
        assert_eq!(parse_rfc3339("2027-01-01"), Some(1_798_761_600));
        assert_eq!(
            parse_rfc3339("2027-01-01T01:00:00+01:00"),
            Some(1_798_761_600)
        );
        assert_eq!(
            parse_rfc3339("2026-12-31T19:00:00.123-05:00"),
            Some(1_798_761_600)
        );
        for bad in [
            "2027-02-30T00:00:00Z",
            "2027-13-01",
            "2027-01-01T25:00:00Z",
            "tomorrow",
            "2027-01-01T00:00:00",
            "2027/01/01",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(format_rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339(&format_rfc3339(1_700_000_123)),
            Some(1_700_000_123)
        );
    }
}
