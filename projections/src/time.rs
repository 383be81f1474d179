//! Formatting of event timestamps (milliseconds since the Unix epoch) as RFC 3339 UTC, and
//! parsing them back, without a clock or a time crate: the civil-date arithmetic is pure.

/// Formats `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339_ms(&mut out, ms);
    out
}

/// Appends what [`format_rfc3339_ms`] returns to `out`, digit by digit (every event's JSON
/// has one).
pub fn push_rfc3339_ms(out: &mut String, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let mut digits = |value: i64, width: u32, after: char| {
        if !(0..10_i64.pow(width)).contains(&value) {
            // Outside the years 0 to 9999: as wide as it takes, like `{year:04}`.
            use std::fmt::Write as _;
            let _ = write!(out, "{value:0width$}", width = width as usize);
        } else {
            for place in (0..width).rev() {
                let digit = (value / 10_i64.pow(place) % 10) as u8;
                out.push(char::from(b'0' + digit));
            }
        }
        out.push(after);
    };
    digits(year, 4, '-');
    digits(month, 2, '-');
    digits(day, 2, 'T');
    digits(ms_of_day / 3_600_000, 2, ':');
    digits(ms_of_day / 60_000 % 60, 2, ':');
    digits(ms_of_day / 1000 % 60, 2, '.');
    digits(ms_of_day % 1000, 3, 'Z');
}

/// Parses what [`format_rfc3339_ms`] writes (and `Z`-suffixed RFC 3339 with 0–9 fraction
/// digits) back into milliseconds since the Unix epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || *bytes.last()? != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hours, minutes, seconds) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hours > 23
        || minutes > 59
        || seconds > 60
    {
        return None;
    }
    let millis = match &text[19..text.len() - 1] {
        "" => 0,
        fraction if fraction.starts_with('.') && fraction.len() >= 2 && fraction.len() <= 10 => {
            let digits = &fraction[1..];
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{digits:0<3}");
            padded[..3].parse::<i64>().ok()?
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400_000 + hours * 3_600_000 + minutes * 60_000 + seconds * 1000 + millis)
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_795_341_600_123),
            "2026-11-22T10:00:00.123Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn writes_what_format_writes_for_any_year() {
        let formatted = |ms: i64| {
            let days = ms.div_euclid(86_400_000);
            let ms_of_day = ms.rem_euclid(86_400_000);
            let (year, month, day) = civil_from_days(days);
            format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
                ms_of_day / 3_600_000,
                ms_of_day / 60_000 % 60,
                ms_of_day / 1000 % 60,
                ms_of_day % 1000
            )
        };
        let mut ms: i64 = -70_000_000_000_000;
        while ms < 400_000_000_000_000 {
            assert_eq!(format_rfc3339_ms(ms), formatted(ms), "{ms}");
            ms += 9_876_543_210_123;
        }
        for ms in [
            i64::MIN / 2,
            -1,
            0,
            1,
            253_402_300_799_999,
            253_402_300_800_000,
        ] {
            assert_eq!(format_rfc3339_ms(ms), formatted(ms), "{ms}");
        }
    }

    #[test]
    fn parse_inverts_format() {
        for ms in [
            0,
            1,
            999,
            86_399_999,
            951_782_400_000,
            1_795_341_600_123,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:00:00Z"),
            Some(1_795_341_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:00:00.5Z"),
            Some(1_795_341_600_500)
        );
        assert_eq!(parse_rfc3339_ms("2026-13-22T10:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
