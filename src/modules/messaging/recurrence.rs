//! When a scheduled message fires (SPEC §6.4): its first wall-clock time in an IANA time zone and, for a
//! recurring schedule, the rule that repeats it — `daily`, `weekly:mon,wed,fri`, `monthly:1,15` (a day
//! past the month's end fires on its last day) or `cron:<expression>` (the `cron` crate's syntax; the
//! usual five fields are accepted and given a seconds field).
//!
//! Every rule yields wall-clock times in the schedule's zone, which become instants by one rule: a wall
//! time that does not exist (the spring-forward gap) fires at the first instant after the gap; one that
//! exists twice (the autumn overlap) fires once, at its first occurrence. So 09:00 stays 09:00 across
//! a change of offset, and occurrences are strictly increasing instants.
//!
//! Nothing here reads a clock: callers pass the instant to search after, so tests control time.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How a recurring schedule repeats.
#[derive(Debug, Clone)]
pub enum Recurrence {
    Daily,
    Weekly(BTreeSet<u32>),
    Monthly(BTreeSet<u32>),
    Cron(Box<cron::Schedule>),
}

/// Longest a search for the next occurrence looks ahead (a rule that never matches, such as
/// `cron:0 0 0 30 2 *`, ends rather than loops).
const HORIZON_DAYS: i64 = 366 * 5;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl Recurrence {
    /// Parses a rule; the error says what is wrong in words a caller can act on.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (kind, arg) = raw.split_once(':').map_or((raw, None), |(k, a)| (k, Some(a.trim())));
        match (kind.to_ascii_lowercase().as_str(), arg) {
            ("daily", None) => Ok(Recurrence::Daily),
            ("weekly", Some(days)) => {
                let set = list(days, |d| {
                    let d = d.to_ascii_lowercase();
                    (0..7).find(|&i| d == DAYS[i] || d == FULL_DAYS[i]).map(|i| i as u32)
                })
                .ok_or_else(|| "weekly: give days as mon,tue,wed,thu,fri,sat,sun".to_string())?;
                Ok(Recurrence::Weekly(set))
            }
            ("monthly", Some(days)) => {
                let set = list(days, |d| d.parse::<u32>().ok().filter(|d| (1..=31).contains(d)))
                    .ok_or_else(|| "monthly: give days of the month from 1 to 31, e.g. monthly:1,15".to_string())?;
                Ok(Recurrence::Monthly(set))
            }
            ("cron", Some(expr)) => {
                let fields = expr.split_whitespace().count();
                let normalised = match fields {
                    5 => unix_cron(expr).ok_or_else(|| "cron: the weekday field is not one cron reads".to_string())?,
                    6 | 7 => expr.to_string(),
                    _ => return Err("cron: give 5 fields (minute hour day month weekday), or 6-7 with seconds".into()),
                };
                let schedule = cron::Schedule::from_str(&normalised).map_err(|e| format!("cron: {e}"))?;
                Ok(Recurrence::Cron(Box::new(schedule)))
            }
            _ => Err("give daily, weekly:<days>, monthly:<days> or cron:<expression>".into()),
        }
    }

    /// The rule as it is stored: lower case, days in order, cron with its seconds field.
    pub fn normalised(&self) -> String {
        match self {
            Recurrence::Daily => "daily".into(),
            Recurrence::Weekly(days) => {
                format!("weekly:{}", days.iter().map(|d| DAYS[*d as usize]).collect::<Vec<_>>().join(","))
            }
            Recurrence::Monthly(days) => {
                format!("monthly:{}", days.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
            }
            Recurrence::Cron(s) => format!("cron:{s}"),
        }
    }

    /// The first wall time of this rule after `after` (strictly), on or after `start`. Daily, weekly
    /// and monthly rules fire at `start`'s time of day; a cron rule at its own times.
    fn next_wall(&self, start: NaiveDateTime, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let from = if after < start { start - Duration::seconds(1) } else { after };
        match self {
            Recurrence::Cron(s) => {
                let t = Utc.from_utc_datetime(&from);
                s.after(&t).next().map(|n| n.naive_utc()).filter(|n| *n <= from + Duration::days(HORIZON_DAYS))
            }
            _ => {
                let time = start.time();
                let mut day = from.date();
                let last = from.date() + Duration::days(HORIZON_DAYS);
                while day <= last {
                    let candidate = day.and_time(time);
                    if candidate > from && candidate >= start && self.matches(day) {
                        return Some(candidate);
                    }
                    day = day.succ_opt()?;
                }
                None
            }
        }
    }

    fn matches(&self, day: NaiveDate) -> bool {
        match self {
            Recurrence::Daily => true,
            Recurrence::Weekly(days) => days.contains(&day.weekday().num_days_from_monday()),
            Recurrence::Monthly(days) => {
                let last = last_day_of_month(day);
                // A day past the month's end fires on its last day (once, however many such days).
                days.contains(&day.day()) || (day.day() == last && days.iter().any(|d| *d > last))
            }
            Recurrence::Cron(_) => false,
        }
    }
}

/// A five-field (Unix) expression in the `cron` crate's syntax: a seconds field first, and numeric
/// weekdays (Unix: 0 or 7 = Sunday, 1 = Monday) written as names, since the crate counts 1 = Sunday.
fn unix_cron(expr: &str) -> Option<String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let name = |n: &str| n.parse::<usize>().ok().filter(|n| *n <= 7).map(|n| NAMES[n]);
    let mut weekdays = Vec::new();
    for part in fields[4].split(',') {
        let (range, step) = part.split_once('/').map_or((part, None), |(r, s)| (r, Some(s)));
        let named = match range.split_once('-') {
            _ if range == "*" || range.chars().any(|c| c.is_ascii_alphabetic()) => range.to_string(),
            // A range that ends on Sunday as 7: the days up to Saturday, and Sunday.
            Some((a, "7")) if step.is_none() && a != "0" => match name(a)? {
                "SUN" => "SUN".to_string(),
                first => format!("{first}-SAT,SUN"),
            },
            Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
            None => name(range)?.to_string(),
        };
        weekdays.push(match step {
            Some(s) => format!("{named}/{s}"),
            None => named,
        });
    }
    Some(format!("0 {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], weekdays.join(",")))
}

fn list(raw: &str, item: impl Fn(&str) -> Option<u32>) -> Option<BTreeSet<u32>> {
    let set: Option<BTreeSet<u32>> = raw.split(',').map(|p| item(p.trim())).collect();
    set.filter(|s| !s.is_empty())
}

fn last_day_of_month(day: NaiveDate) -> u32 {
    let (y, m) = if day.month() == 12 { (day.year() + 1, 1) } else { (day.year(), day.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).and_then(|d| d.pred_opt()).map_or(28, |d| d.day())
}

/// The instant a wall time in `tz` means: itself; the earlier of two (autumn overlap); or, when the
/// clocks skip it (spring gap), the first instant after the gap.
pub fn resolve(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are whole minutes and shorter than a day: the first wall minute that exists again is
            // the end of the gap.
            let mut probe = wall.date().and_hms_opt(wall.hour(), wall.minute(), 0).unwrap_or(wall);
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&wall)
        }
    }
}

/// A schedule's timing: its first wall time, its zone, its rule (none: it fires once) and its end.
#[derive(Debug, Clone)]
pub struct Timing {
    pub start: NaiveDateTime,
    pub tz: Tz,
    pub recurrence: Option<Recurrence>,
    pub end: Option<DateTime<Utc>>,
}

impl Timing {
    /// The first occurrence strictly after `after`, if there is one before the end.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(rule) = &self.recurrence else {
            let at = resolve(self.tz, self.start);
            return (at > after).then_some(at);
        };
        // Wall times at or before `after`'s own wall time resolve at or before `after` (resolution keeps
        // order), so the search starts there and skips what resolves no later than `after`.
        let mut wall = after.with_timezone(&self.tz).naive_local();
        loop {
            wall = rule.next_wall(self.start, wall)?;
            let at = resolve(self.tz, wall);
            if self.end.is_some_and(|end| at > end) {
                return None;
            }
            if at > after {
                return Some(at);
            }
        }
    }

    /// The next `count` occurrences after `after`.
    pub fn occurrences(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut at = after;
        while out.len() < count {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The latest occurrence in `(after, until]` — what `fire_once` fires after downtime.
    pub fn latest_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut latest = None;
        let mut at = after;
        while let Some(next) = self.next_after(at).filter(|n| *n <= until) {
            latest = Some(next);
            at = next;
        }
        latest
    }
}

/// Parses an IANA zone name.
pub fn time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| format!("`{name}` is not an IANA time zone (e.g. Africa/Addis_Ababa)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        Utc.from_utc_datetime(&wall(s))
    }

    fn timing(start: &str, tz: &str, rule: Option<&str>) -> Timing {
        Timing {
            start: wall(start),
            tz: time_zone(tz).unwrap(),
            recurrence: rule.map(|r| Recurrence::parse(r).unwrap()),
            end: None,
        }
    }

    fn next(t: &Timing, after: &str, n: usize) -> Vec<String> {
        t.occurrences(utc(after), n).iter().map(|d| d.format("%Y-%m-%d %H:%M").to_string()).collect()
    }

    #[test]
    fn rules_parse_and_normalise() {
        let n = |r: &str| Recurrence::parse(r).map(|r| r.normalised());
        assert_eq!(n("daily").unwrap(), "daily");
        assert_eq!(n("weekly:Friday, mon,wed").unwrap(), "weekly:mon,wed,fri");
        assert_eq!(n("monthly:15,1").unwrap(), "monthly:1,15");
        assert_eq!(n("cron:30 9 * * 1-5").unwrap(), "cron:0 30 9 * * MON-FRI");
        assert_eq!(n("cron:0 8 * * 0").unwrap(), "cron:0 0 8 * * SUN");
        assert_eq!(n("cron:0 8 * * 5-7").unwrap(), "cron:0 0 8 * * FRI-SAT,SUN");
        assert_eq!(n("cron:0 0 12 * * Mon").unwrap(), "cron:0 0 12 * * Mon");
        for bad in [
            "hourly",
            "weekly:",
            "weekly:mon,funday",
            "monthly:0",
            "monthly:32",
            "cron:* *",
            "cron:61 * * * *",
            "daily:3",
        ] {
            assert!(Recurrence::parse(bad).is_err(), "{bad} parsed");
        }
        assert!(time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn a_one_time_schedule_fires_once() {
        let t = timing("2026-06-01 09:00", "Africa/Addis_Ababa", None);
        assert_eq!(next(&t, "2026-05-01 00:00", 3), ["2026-06-01 06:00"]);
        assert_eq!(next(&t, "2026-06-01 06:00", 3), Vec::<String>::new());
    }

    #[test]
    fn nine_stays_nine_across_new_york_dst() {
        let t = timing("2026-03-06 09:00", "America/New_York", Some("daily"));
        assert_eq!(
            next(&t, "2026-03-06 00:00", 4),
            ["2026-03-06 14:00", "2026-03-07 14:00", "2026-03-08 13:00", "2026-03-09 13:00"]
        );
        let t = timing("2026-10-30 09:00", "America/New_York", Some("daily"));
        assert_eq!(next(&t, "2026-10-31 00:00", 3), ["2026-10-31 13:00", "2026-11-01 14:00", "2026-11-02 14:00"]);
    }

    #[test]
    fn a_time_in_the_spring_gap_fires_when_the_gap_ends() {
        // New York skips 02:00-03:00 on 2026-03-08: 02:30 fires at 03:00 EDT (07:00Z).
        let t = timing("2026-03-07 02:30", "America/New_York", Some("daily"));
        assert_eq!(next(&t, "2026-03-07 00:00", 3), ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"]);
        // London skips 01:00-02:00 on 2026-03-29: 01:30 fires at 02:00 BST (01:00Z).
        let t = timing("2026-03-28 01:30", "Europe/London", Some("daily"));
        assert_eq!(next(&t, "2026-03-28 00:00", 3), ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"]);
    }

    #[test]
    fn a_time_in_the_autumn_overlap_fires_once_at_its_first_occurrence() {
        // New York repeats 01:00-02:00 on 2026-11-01; London repeats 01:00-02:00 on 2026-10-25.
        let t = timing("2026-10-31 01:30", "America/New_York", Some("daily"));
        assert_eq!(next(&t, "2026-10-31 00:00", 3), ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"]);
        // Searching from inside the repeated hour does not fire its second 01:30.
        assert_eq!(next(&t, "2026-11-01 06:10", 1), ["2026-11-02 06:30"]);
        let t = timing("2026-10-24 01:30", "Europe/London", Some("daily"));
        assert_eq!(next(&t, "2026-10-24 00:00", 3), ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"]);
        // A cron rule every 30 minutes through the overlap: each wall time once.
        let t = timing("2026-11-01 00:00", "America/New_York", Some("cron:*/30 * * * *"));
        assert_eq!(
            next(&t, "2026-11-01 04:00", 5),
            ["2026-11-01 04:30", "2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 07:00", "2026-11-01 07:30"]
        );
    }

    #[test]
    fn day_31_fires_on_the_last_day_of_shorter_months() {
        let t = timing("2027-01-31 09:00", "Africa/Addis_Ababa", Some("monthly:31"));
        assert_eq!(
            next(&t, "2027-01-01 00:00", 4),
            ["2027-01-31 06:00", "2027-02-28 06:00", "2027-03-31 06:00", "2027-04-30 06:00"]
        );
        let t = timing("2028-01-31 09:00", "Africa/Addis_Ababa", Some("monthly:30,31"));
        assert_eq!(next(&t, "2028-02-01 00:00", 3), ["2028-02-29 06:00", "2028-03-30 06:00", "2028-03-31 06:00"]);
    }

    #[test]
    fn zones_without_dst_and_with_quarter_hours() {
        let t = timing("2026-07-06 09:00", "Asia/Kathmandu", Some("weekly:mon,thu"));
        assert_eq!(next(&t, "2026-07-01 00:00", 3), ["2026-07-06 03:15", "2026-07-09 03:15", "2026-07-13 03:15"]);
        let t = timing("2026-07-06 08:00", "Africa/Addis_Ababa", Some("cron:0 8 * * 1-5"));
        assert_eq!(next(&t, "2026-07-10 06:00", 2), ["2026-07-13 05:00", "2026-07-14 05:00"]);
    }

    #[test]
    fn the_end_and_the_latest_missed_occurrence() {
        let mut t = timing("2026-01-01 09:00", "Africa/Addis_Ababa", Some("daily"));
        t.end = Some(utc("2026-01-03 06:00"));
        assert_eq!(next(&t, "2025-12-31 00:00", 5), ["2026-01-01 06:00", "2026-01-02 06:00", "2026-01-03 06:00"]);
        t.end = None;
        assert_eq!(t.latest_between(utc("2026-01-01 06:00"), utc("2026-01-05 07:00")), Some(utc("2026-01-05 06:00")));
        assert_eq!(t.latest_between(utc("2026-01-05 06:00"), utc("2026-01-05 07:00")), None);
    }

    const ZONES: [&str; 6] = [
        "America/New_York",
        "Europe/London",
        "Africa/Addis_Ababa",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "America/Santiago",
    ];

    fn wall_after_2020(day: i64, minute: u32) -> NaiveDateTime {
        wall("2020-01-01 00:00") + Duration::days(day) + Duration::minutes(i64::from(minute))
    }

    proptest! {
        /// Occurrences strictly increase, and a daily rule fires on every local day, once, at its wall
        /// time whenever that time exists that day (else at the end of the gap, the same day).
        #[test]
        fn daily_occurrences_increase_and_skip_no_day(
            zone_i in 0..ZONES.len(),
            day in 0i64..3650,
            minute in 0u32..(24 * 60),
        ) {
            let (tz, start) = (time_zone(ZONES[zone_i]).unwrap(), wall_after_2020(day, minute));
            let t = Timing { start, tz, recurrence: Some(Recurrence::Daily), end: None };
            let all = t.occurrences(Utc.from_utc_datetime(&(start - Duration::days(2))), 400);
            prop_assert_eq!(all.len(), 400);
            for (i, pair) in all.windows(2).enumerate() {
                prop_assert!(pair[0] < pair[1]);
                let day = start.date() + Duration::days(i as i64 + 1);
                let local = pair[1].with_timezone(&tz).naive_local();
                let wanted = day.and_time(start.time());
                if tz.from_local_datetime(&wanted).earliest().is_some() {
                    prop_assert_eq!(local, wanted);
                } else {
                    prop_assert!(local > wanted && local - wanted <= Duration::hours(2), "{} for {}", local, wanted);
                }
            }
        }

        /// Any rule: strictly increasing instants, whatever the zone.
        #[test]
        fn any_rule_increases(
            zone_i in 0..ZONES.len(),
            day in 0i64..3650,
            minute in 0u32..(24 * 60),
            rule in prop::sample::select(vec!["weekly:sun,wed", "monthly:29,30,31", "monthly:1", "cron:*/20 0-3 * * *"]),
        ) {
            let (tz, start) = (time_zone(ZONES[zone_i]).unwrap(), wall_after_2020(day, minute));
            let t = Timing { start, tz, recurrence: Some(Recurrence::parse(rule).unwrap()), end: None };
            let all = t.occurrences(Utc.from_utc_datetime(&(start - Duration::days(2))), 60);
            prop_assert_eq!(all.len(), 60);
            prop_assert!(all.windows(2).all(|p| p[0] < p[1]));
        }
    }
}
