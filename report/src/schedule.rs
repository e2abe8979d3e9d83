//! Cron-like schedules for `[[reports]]` in serve: five fields `minute hour day-of-month month
//! day-of-week` (UTC) with `*`, `*/n`, `a-b`, `a-b/n` and lists, or `@hourly`, `@daily`,
//! `@weekly`, `@monthly`. As in cron, when both day fields are restricted a day matching either
//! one fires.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    days_restricted: bool,
    weekdays_restricted: bool,
}

fn field(text: &str, what: &str, min: u32, max: u32) -> Result<(Vec<bool>, bool), String> {
    let mut set = vec![false; max as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: bad step {s:?}"))?,
            ),
            None => (part, 1),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{what}: {s:?} is not a number in {min}-{max}"))
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else if part.contains('/') {
            (num(range)?, max)
        } else {
            let n = num(range)?;
            (n, n)
        };
        if lo > hi {
            return Err(format!("{what}: range {lo}-{hi} is empty"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            set[v as usize] = true;
        }
    }
    Ok((set, text != "*"))
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields[..] else {
            return Err(format!(
                "schedule {text:?}: expected 5 fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly"
            ));
        };
        let ctx = |e: String| format!("schedule {text:?}: {e}");
        let (minutes, _) = field(m, "minute", 0, 59).map_err(ctx)?;
        let (hours, _) = field(h, "hour", 0, 23).map_err(ctx)?;
        let (days, days_restricted) = field(dom, "day of month", 1, 31).map_err(ctx)?;
        let (months, _) = field(mon, "month", 1, 12).map_err(ctx)?;
        // 0 and 7 are both Sunday.
        let (mut weekdays, weekdays_restricted) = field(dow, "day of week", 0, 7).map_err(ctx)?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Schedule {
            text: text.to_owned(),
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    fn day_matches(&self, t: DateTime<Utc>) -> bool {
        let dom = self.days[t.day() as usize];
        let dow = self.weekdays[t.weekday().num_days_from_sunday() as usize];
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first whole minute strictly after `t` that the schedule names (None if it names
    /// none within 5 years, e.g. `0 0 31 2 *`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut c = t.with_second(0)?.with_nanosecond(0)? + TimeDelta::minutes(1);
        let end = t + TimeDelta::days(5 * 366);
        while c < end {
            if !self.months[c.month() as usize] || !self.day_matches(c) {
                c = c.with_hour(0)?.with_minute(0)? + TimeDelta::days(1);
                continue;
            }
            if !self.hours[c.hour() as usize] {
                c = c.with_minute(0)? + TimeDelta::hours(1);
                continue;
            }
            if self.minutes[c.minute() as usize] {
                return Some(c);
            }
            c += TimeDelta::minutes(1);
        }
        None
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
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
        // Strictly after: at the fire time itself, the next one.
        assert_eq!(
            daily.next_after(at(2026, 12, 1, 0, 0)),
            Some(at(2026, 12, 2, 0, 0))
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
        assert_eq!(
            Schedule::parse("0 0 31 2 *")
                .unwrap()
                .next_after(at(2026, 1, 1, 0, 0)),
            None
        );
    }

    #[test]
    fn bad_schedules_say_which_field() {
        for (text, want) in [
            ("0 0 * *", "expected 5 fields"),
            ("61 * * * *", "minute: \"61\""),
            ("0 */0 * * *", "hour: bad step"),
            ("0 0 * 13 *", "month"),
            ("0 5-2 * * *", "range 5-2 is empty"),
        ] {
            let err = Schedule::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
