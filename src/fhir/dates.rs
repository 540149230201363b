//! FHIR date, dateTime and instant values as the instant ranges their precision covers.
//! Values without a zone (dates, and searched dateTimes without one) are read in the
//! clinic's zone; values with an offset keep it.

use chrono::{
    DateTime, Datelike, FixedOffset, Months, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

/// The FHIR date (`2026-03-02`) of an instant in `zone`.
pub fn local_date(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d").to_string()
}

/// The range `[start, end)` a date/dateTime/instant text stands for, or `None` if it is not
/// one. `2026` is the whole year in `zone`; `2026-11-22T10:00:00+01:00` one second.
pub fn date_range_in(text: &str, zone: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let local_midnight = |date: NaiveDate| -> Option<DateTime<Utc>> {
        let midnight = date.and_hms_opt(0, 0, 0)?;
        Some(
            zone.from_local_datetime(&midnight)
                .earliest()?
                .with_timezone(&Utc),
        )
    };
    match text.len() {
        4 => {
            let year: i32 = text.parse().ok()?;
            let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
            Some((
                local_midnight(start)?,
                local_midnight(start.with_year(year + 1)?)?,
            ))
        }
        7 => {
            let start = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
            Some((
                local_midnight(start)?,
                local_midnight(start.checked_add_months(Months::new(1))?)?,
            ))
        }
        10 => {
            let start = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some((local_midnight(start)?, local_midnight(start.succ_opt()?)?))
        }
        _ => date_time_range(text, zone),
    }
}

/// `hh:mm`, `hh:mm:ss` or `hh:mm:ss.fff` precision, with or without a zone.
fn date_time_range(text: &str, zone: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if text.len() < 16 || text.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let (local, offset) = split_offset(text);
    let has_seconds = local.len() >= 19;
    let precision = match local.split_once('.') {
        Some((_, fraction))
            if fraction.chars().all(|c| c.is_ascii_digit()) && !fraction.is_empty() =>
        {
            TimeDelta::nanoseconds(10i64.pow(9u32.saturating_sub(fraction.len().min(9) as u32)))
        }
        Some(_) => return None,
        None if has_seconds => TimeDelta::seconds(1),
        None => TimeDelta::minutes(1),
    };
    let format = if has_seconds {
        "%Y-%m-%dT%H:%M:%S%.f"
    } else {
        "%Y-%m-%dT%H:%M"
    };
    let naive = NaiveDateTime::parse_from_str(local, format).ok()?;
    let start = match offset {
        Some("Z") => Utc.from_utc_datetime(&naive),
        Some(offset) => {
            let fixed: FixedOffset = offset.parse().ok()?;
            fixed
                .from_local_datetime(&naive)
                .single()?
                .with_timezone(&Utc)
        }
        None => zone
            .from_local_datetime(&naive)
            .earliest()?
            .with_timezone(&Utc),
    };
    Some((start, start + precision))
}

/// Splits `2026-11-22T10:00:00+01:00` into the local part and `+01:00` (or `Z`).
fn split_offset(text: &str) -> (&str, Option<&str>) {
    if let Some(local) = text.strip_suffix('Z') {
        return (local, Some("Z"));
    }
    let time_part_start = 11;
    match text[time_part_start..].rfind(['+', '-']) {
        Some(index) => {
            let at = time_part_start + index;
            (&text[..at], Some(&text[at..]))
        }
        None => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, UTC};

    fn range(text: &str, zone: Tz) -> (String, String) {
        let (start, end) = date_range_in(text, zone).unwrap();
        (start.to_rfc3339(), end.to_rfc3339())
    }

    #[test]
    fn precision_sets_the_width() {
        assert_eq!(
            range("2026", UTC),
            (
                "2026-01-01T00:00:00+00:00".into(),
                "2027-01-01T00:00:00+00:00".into()
            )
        );
        assert_eq!(
            range("2026-02", UTC),
            (
                "2026-02-01T00:00:00+00:00".into(),
                "2026-03-01T00:00:00+00:00".into()
            )
        );
        assert_eq!(
            range("2026-11-22T10:00", UTC).1,
            "2026-11-22T10:01:00+00:00"
        );
        let (start, end) = date_range_in("2026-11-22T10:00:00.25Z", UTC).unwrap();
        assert_eq!(end - start, TimeDelta::milliseconds(10));
    }

    #[test]
    fn dates_are_local_days_and_offsets_are_honoured() {
        assert_eq!(
            range("2026-07-04", New_York),
            (
                "2026-07-04T04:00:00+00:00".into(),
                "2026-07-05T04:00:00+00:00".into()
            )
        );
        assert_eq!(range("2026-01-04", New_York).0, "2026-01-04T05:00:00+00:00");
        assert_eq!(
            range("2026-11-22T10:00:00+01:00", New_York).0,
            "2026-11-22T09:00:00+00:00"
        );
        assert_eq!(
            range("2026-11-22T10:00:00-05:00", UTC).0,
            "2026-11-22T15:00:00+00:00"
        );
        assert_eq!(
            range("2026-11-22T10:00:00", New_York).0,
            "2026-11-22T15:00:00+00:00"
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "2026-13",
            "2026-02-30",
            "yesterday",
            "2026-11-22T25:00:00Z",
            "2026-11-22T10:00:00+1",
            "20261",
        ] {
            assert!(date_range_in(bad, UTC).is_none(), "{bad}");
        }
    }
}
