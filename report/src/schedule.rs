//! Cron schedules for `[[reports]]` in serve, parsed and evaluated by `croner`: five fields
//! `minute hour day-of-month month day-of-week` with `*`, `*/n`, `a-b`, `a-b/n`, lists, names
//! (`MON-FRI`, `JAN`), `L` (last day of the month; `5L` the last Friday), `#` (`1#2`, the second
//! Monday), `W` (`15W`, the weekday nearest the 15th), or `@hourly`, `@daily`, `@weekly`,
//! `@monthly`, `@yearly`. As in cron, when both day fields are restricted a day matching either
//! one fires. Fire times are wall-clock times of the schedule's time zone (UTC unless one is
//! named), so `0 8 * * MON-FRI` in `Europe/Paris` is 08:00 in Paris in winter and summer alike.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// What is wrong with a schedule or its time zone (the caller names the config key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{text:?}: expected 5 fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly, found {found}"
    )]
    Fields { text: String, found: usize },
    #[error("{text:?}: {field} field {value:?}: {reason} (expected {expected})")]
    Field {
        text: String,
        field: &'static str,
        value: String,
        reason: String,
        expected: &'static str,
    },
    #[error("{text:?}: unknown shortcut; use @hourly, @daily, @weekly, @monthly or @yearly")]
    Shortcut { text: String },
    #[error("{text:?}: {reason}")]
    Pattern { text: String, reason: String },
    #[error("{text:?} never fires (no such date)")]
    NeverFires { text: String },
    #[error("{name:?} is not a time zone of the IANA database (like UTC or Europe/Paris)")]
    TimeZone { name: String },
}

#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
    tz: Tz,
}

/// Each field's name and what it takes, for errors.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L or nW"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, n#k or nL"),
];

/// Minute granularity, five fields: a sixth field is an error here, not seconds or a year.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

impl Schedule {
    /// A schedule in UTC.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse_in(text, None)
    }

    /// A schedule in the IANA time zone `timezone` (UTC when `None`).
    pub fn parse_in(text: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name.trim()).map_err(|_| ScheduleError::TimeZone {
                name: name.to_owned(),
            })?,
        };
        let trimmed = text.trim();
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        if trimmed.starts_with('@') {
            let known = [
                "@hourly",
                "@daily",
                "@midnight",
                "@weekly",
                "@monthly",
                "@yearly",
                "@annually",
            ];
            if !known.iter().any(|k| k.eq_ignore_ascii_case(trimmed)) {
                return Err(ScheduleError::Shortcut {
                    text: text.to_owned(),
                });
            }
        } else if fields.len() != 5 {
            return Err(ScheduleError::Fields {
                text: text.to_owned(),
                found: fields.len(),
            });
        }
        // Vixie cron's `@midnight` (accepted before croner, which lacks it) is `@daily`.
        let pattern = if trimmed.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            trimmed
        };
        let cron = parser()
            .parse(pattern)
            .map_err(|e| blame(text, &fields, e))?;
        let schedule = Schedule {
            text: text.to_owned(),
            cron,
            tz,
        };
        // `0 0 30 2 *` parses but names no date; say so now rather than never run. February
        // 29th is the rarest real date: any schedule that fires at all does within 8 years.
        let probe = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("2026-01-01");
        match schedule
            .cron
            .find_next_occurrence(&probe.with_timezone(&tz), false)
        {
            Ok(t) if t.with_timezone(&Utc) - probe <= chrono::TimeDelta::days(8 * 366) => {
                Ok(schedule)
            }
            _ => Err(ScheduleError::NeverFires {
                text: text.to_owned(),
            }),
        }
    }

    /// The first whole minute strictly after `t` that the schedule names (None if it names none
    /// before the year 5000).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The time zone its fields are read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }
}

/// croner's message does not say which field is wrong: parse each field alone (the others `*`)
/// to find the first one that fails, and name it.
fn blame(text: &str, fields: &[&str], e: croner::errors::CronError) -> ScheduleError {
    if fields.len() == 5 {
        for (i, value) in fields.iter().enumerate() {
            let mut alone = ["*"; 5];
            alone[i] = value;
            if let Err(e) = parser().parse(&alone.join(" ")) {
                let (field, expected) = FIELDS[i];
                return ScheduleError::Field {
                    text: text.to_owned(),
                    field,
                    value: (*value).to_owned(),
                    reason: reason(e),
                    expected,
                };
            }
        }
    }
    ScheduleError::Pattern {
        text: text.to_owned(),
        reason: reason(e),
    }
}

/// croner's message without its "Invalid pattern:" style prefix or final period.
fn reason(e: croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    let m = match e {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m,
        other => other.to_string(),
    };
    m.trim_end_matches('.').to_owned()
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        if self.tz != Tz::UTC {
            write!(f, " ({})", self.tz.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn next_fire_times() {
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(
            daily.next_after(at(2026, 11, 30, 9, 41)),
            Some(at(2026, 12, 1, 0, 0))
        );
        // Strictly after: at the fire time itself, the next one; a second past it too.
        assert_eq!(
            daily.next_after(at(2026, 12, 1, 0, 0)),
            Some(at(2026, 12, 2, 0, 0))
        );
        assert_eq!(
            Schedule::parse("* * * * *")
                .unwrap()
                .next_after(at(2026, 12, 1, 0, 0) + chrono::TimeDelta::seconds(30)),
            Some(at(2026, 12, 1, 0, 1))
        );
        assert_eq!(
            Schedule::parse("@midnight")
                .unwrap()
                .next_after(at(2026, 11, 30, 9, 41)),
            Some(at(2026, 12, 1, 0, 0))
        );
        let every_6h = Schedule::parse("15 */6 * * *").unwrap();
        assert_eq!(
            every_6h.next_after(at(2026, 11, 30, 6, 15)),
            Some(at(2026, 11, 30, 12, 15))
        );
        // Mondays 07:30 (2026-11-30 is a Monday).
        let weekly = Schedule::parse("30 7 * * 1").unwrap();
        assert_eq!(
            weekly.next_after(at(2026, 11, 30, 8, 0)),
            Some(at(2026, 12, 7, 7, 30))
        );
        let monthly = Schedule::parse("@monthly").unwrap();
        assert_eq!(
            monthly.next_after(at(2026, 12, 15, 0, 0)),
            Some(at(2027, 1, 1, 0, 0))
        );
        // Either day field matches when both are restricted: the 1st, or any Sunday.
        let either = Schedule::parse("0 0 1 * 0").unwrap();
        assert_eq!(
            either.next_after(at(2026, 12, 1, 0, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        // 7 is Sunday too.
        assert_eq!(
            Schedule::parse("0 0 * * 7")
                .unwrap()
                .next_after(at(2026, 12, 1, 0, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        // February 29th: rare, but real.
        assert_eq!(
            Schedule::parse("0 0 29 2 *")
                .unwrap()
                .next_after(at(2026, 1, 1, 0, 0)),
            Some(at(2028, 2, 29, 0, 0))
        );
    }

    #[test]
    fn names_last_and_nth() {
        // Weekdays by name: Friday 2026-12-04 17:00 → Monday 12-07.
        let weekdays = Schedule::parse("0 9 * * MON-FRI").unwrap();
        assert_eq!(
            weekdays.next_after(at(2026, 12, 4, 17, 0)),
            Some(at(2026, 12, 7, 9, 0))
        );
        assert_eq!(
            Schedule::parse("0 0 1 jan,jul *")
                .unwrap()
                .next_after(at(2026, 2, 1, 0, 0)),
            Some(at(2026, 7, 1, 0, 0))
        );
        // The last day of the month (February 2027 has 28).
        assert_eq!(
            Schedule::parse("0 23 L * *")
                .unwrap()
                .next_after(at(2027, 2, 1, 0, 0)),
            Some(at(2027, 2, 28, 23, 0))
        );
        // The second Tuesday (Patch Tuesday): 2026-12-08.
        assert_eq!(
            Schedule::parse("0 18 * * TUE#2")
                .unwrap()
                .next_after(at(2026, 12, 1, 0, 0)),
            Some(at(2026, 12, 8, 18, 0))
        );
        // The last Friday of December 2026: the 25th.
        assert_eq!(
            Schedule::parse("0 12 * * 5L")
                .unwrap()
                .next_after(at(2026, 12, 1, 0, 0)),
            Some(at(2026, 12, 25, 12, 0))
        );
    }

    #[test]
    fn time_zones_follow_the_wall_clock() {
        let paris = Schedule::parse_in("0 8 * * MON-FRI", Some("Europe/Paris")).unwrap();
        assert_eq!(paris.timezone(), Tz::Europe__Paris);
        // 08:00 in Paris is 07:00 UTC in winter (CET)…
        assert_eq!(
            paris.next_after(at(2026, 12, 1, 7, 30)),
            Some(at(2026, 12, 2, 7, 0))
        );
        // …and 06:00 UTC in summer (CEST).
        assert_eq!(
            paris.next_after(at(2026, 7, 1, 7, 30)),
            Some(at(2026, 7, 2, 6, 0))
        );
        // Across the spring change (2026-03-29, 02:00 → 03:00): daily at 08:00 local either side.
        let daily = Schedule::parse_in("0 8 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            daily.next_after(at(2026, 3, 28, 7, 0)),
            Some(at(2026, 3, 29, 6, 0))
        );
        // A half-hour zone: hourly at :00 in Kolkata is :30 UTC.
        let kolkata = Schedule::parse_in("@hourly", Some("Asia/Kolkata")).unwrap();
        assert_eq!(
            kolkata.next_after(at(2026, 12, 1, 9, 0)),
            Some(at(2026, 12, 1, 9, 30))
        );
        assert_eq!(kolkata.to_string(), "@hourly (Asia/Kolkata)");
        assert_eq!(
            Schedule::parse_in("@daily", Some("UTC"))
                .unwrap()
                .to_string(),
            "@daily"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, want) in [
            ("0 0 * *", "expected 5 fields"),
            ("0 0 * * * 2027", "found 6"),
            (
                "61 * * * *",
                "minute field \"61\": Number out of bounds (expected 0-59)",
            ),
            ("0 */0 * * *", "hour field \"*/0\""),
            ("0 0 * 13 *", "month field \"13\""),
            ("0 0 * * FUNDAY", "day-of-week field \"FUNDAY\""),
            ("0 0 32 * *", "day-of-month field \"32\""),
            ("0 0 30 2 *", "never fires"),
            ("@fortnightly", "\"@fortnightly\": unknown shortcut"),
        ] {
            let err = Schedule::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = Schedule::parse_in("@daily", Some("Europe/Pariss"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"Europe/Pariss\" is not a time zone"),
            "{err}"
        );
    }
}
