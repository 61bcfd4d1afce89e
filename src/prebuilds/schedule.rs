//! Prebuild schedules: the `scheduling { timezone; schedule { cron; instances } }` block of a preset.
//!
//! Pure logic only (no I/O, no clock): callers pass the instant to evaluate, so the reconciler
//! and the tests decide what "now" is.
//!
//! The cron dialect is deliberately small (see [`CronSpec::parse`]): schedules have hour
//! granularity, so the minute field must be `*`, and only numbers, ranges and comma lists are
//! accepted. Every field is stored as a bitmask, which makes matching a handful of bit tests and
//! lets overlap be decided exactly without sampling instants.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;

/// One of the five cron fields, used to say where a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CronField {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl CronField {
    /// Inclusive bounds of the values a field accepts.
    #[must_use]
    pub fn bounds(self) -> (u32, u32) {
        match self {
            CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 6),
        }
    }

    /// The accepted range as shown in messages; day-of-week says which day 0 is because cron
    /// dialects disagree on it (and on whether 7 is Sunday).
    fn range_text(self) -> String {
        let (min, max) = self.bounds();
        match self {
            CronField::DayOfWeek => format!("{min}-{max} (0 = Sunday, 6 = Saturday)"),
            _ => format!("{min}-{max}"),
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        })
    }
}

/// What is wrong with a cron expression; always wrapped in [`ScheduleError::InvalidCron`],
/// which adds the expression itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CronProblem {
    #[error("\"@\" shortcuts such as @daily are not supported, write the five fields")]
    Shortcut,
    #[error(
        "expected 5 whitespace-separated fields (MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK), found {found}"
    )]
    FieldCount { found: usize },
    #[error("minute field must be \"*\" (schedules have hour granularity), got {value:?}")]
    MinuteNotStar { value: String },
    #[error("{field} field has an empty list element")]
    EmptyElement { field: CronField },
    #[error("{field} field: \"*\" cannot be combined with other values in a list")]
    StarInList { field: CronField },
    #[error("{field} field {token:?}: steps (\"/\") are not supported, list the values instead")]
    Step { field: CronField, token: String },
    #[error("{field} field {token:?}: names and letters are not supported, use numbers")]
    Name { field: CronField, token: String },
    #[error(
        "{field} field {token:?}: expected \"*\", a number, a range \"a-b\" or a comma-separated list of numbers and ranges"
    )]
    InvalidToken { field: CronField, token: String },
    #[error("{field} value {value} out of range {}", .field.range_text())]
    OutOfRange { field: CronField, value: String },
    #[error("{field} range {start}-{end} is reversed (the start must not exceed the end)")]
    ReversedRange {
        field: CronField,
        start: u32,
        end: u32,
    },
}

/// Errors of the scheduling block. Messages quote the user's text so a template author can find
/// the offending line.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ScheduleError {
    #[error("invalid cron {expr:?}: {problem}")]
    InvalidCron { expr: String, problem: CronProblem },
    #[error("scheduling timezone is required (an IANA name such as \"Europe/Berlin\")")]
    MissingTimezone,
    #[error("unknown timezone {name:?} (expected an IANA name such as \"Europe/Berlin\")")]
    UnknownTimezone { name: String },
    #[error("schedule {cron:?}: instances must be >= 0, got {instances}")]
    NegativeInstances { cron: String, instances: i32 },
    /// Indices are positions in declaration order, for callers that point at the block.
    #[error("schedules {first:?} and {second:?} overlap")]
    Overlap {
        first: String,
        second: String,
        first_index: usize,
        second_index: usize,
    },
}

/// A parsed cron expression of the prebuild dialect.
///
/// Bit `v` of a mask is set when value `v` is accepted. The star flags record whether DOM / DOW
/// were written as `*`, because cron's day rule depends on that and not on the mask (`1-31` is
/// "restricted" even though it accepts every day, exactly as in Vixie cron).
///
/// Equality includes the source text, so differently spaced but equivalent expressions differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronSpec {
    hours: u32,
    dom: u32,
    months: u16,
    dow: u8,
    dom_star: bool,
    dow_star: bool,
    source: String,
}

impl CronSpec {
    /// Parses `MINUTE HOUR DOM MONTH DOW`.
    ///
    /// MINUTE must be `*`; HOUR 0-23, DOM 1-31, MONTH 1-12, DOW 0-6 with Sunday = 0. Each other
    /// field is `*`, a number, a range `a-b` with `a <= b`, or a comma list of numbers and ranges.
    /// Steps, names, `?` and `@` shortcuts are rejected. Never panics, whatever the input.
    ///
    /// # Errors
    /// [`ScheduleError::InvalidCron`] with the first problem found, fields checked left to right.
    pub fn parse(expr: &str) -> Result<CronSpec, ScheduleError> {
        Self::parse_fields(expr).map_err(|problem| ScheduleError::InvalidCron {
            expr: expr.to_owned(),
            problem,
        })
    }

    fn parse_fields(expr: &str) -> Result<CronSpec, CronProblem> {
        if expr.trim_start().starts_with('@') {
            return Err(CronProblem::Shortcut);
        }
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(CronProblem::FieldCount {
                found: fields.len(),
            });
        };
        if *minute != "*" {
            return Err(CronProblem::MinuteNotStar {
                value: (*minute).to_owned(),
            });
        }
        let (hours, _) = parse_field(hour, CronField::Hour)?;
        let (dom, dom_star) = parse_field(dom, CronField::DayOfMonth)?;
        let (months, _) = parse_field(month, CronField::Month)?;
        let (dow, dow_star) = parse_field(dow, CronField::DayOfWeek)?;
        Ok(CronSpec {
            hours,
            dom,
            // parse_field only sets bits within the field's bounds (≤ 12 and ≤ 6), so these
            // narrowing casts keep every bit.
            months: months as u16,
            dow: dow as u8,
            dom_star,
            dow_star,
            source: expr.to_owned(),
        })
    }

    /// Whether a local wall-clock time satisfies the expression (seconds and minutes ignored).
    #[must_use]
    pub fn matches_local(&self, local: NaiveDateTime) -> bool {
        self.hours & (1 << local.hour()) != 0
            && self.months & (1 << local.month()) != 0
            && self.day_matches(local.day(), local.weekday().num_days_from_sunday())
    }

    /// Whether the instant `at`, read on the wall clock of `tz`, satisfies the expression.
    /// DST therefore follows the zone: a skipped local hour never matches and a repeated one
    /// matches twice.
    #[must_use]
    pub fn matches(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        self.matches_local(at.with_timezone(&tz).naive_local())
    }

    /// Cron's day rule (Vixie): when either day field is `*` both must match, so the other one
    /// decides; when both are restricted, either suffices.
    fn day_matches(&self, dom: u32, weekday: u32) -> bool {
        let dom_ok = self.dom & (1 << dom) != 0;
        let dow_ok = self.dow & (1 << weekday) != 0;
        if self.dom_star || self.dow_star {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        }
    }

    /// Days (as a DOM bitmask) among `valid_days` that this expression accepts when they fall on
    /// `weekday`; the mask form of [`Self::day_matches`].
    fn days_accepted_on(&self, weekday: u32, valid_days: u32) -> u32 {
        let dow_ok = self.dow & (1 << weekday) != 0;
        let dom = self.dom & valid_days;
        match (self.dom_star || self.dow_star, dow_ok) {
            // AND rule: the weekday gates, DOM picks the days.
            (true, true) => dom,
            (true, false) => 0,
            // OR rule: a matching weekday accepts any day, otherwise DOM alone decides.
            (false, true) => valid_days,
            (false, false) => dom,
        }
    }

    /// Whether both expressions match at some common moment: some hour of some real calendar
    /// date in some Gregorian year.
    ///
    /// Exact, decided from the masks: hours and months must intersect, and for some common month
    /// there must be a day that exists in it (February 29 included, 31 excluded from 30-day
    /// months) and a weekday on which both day rules accept it. Every (month, existing day,
    /// weekday) triple does occur in some year: a fixed date's weekday moves by one or two a
    /// year, and February 29 moves by five every four years, which visits all seven weekdays.
    ///
    /// This differs from Coder's provider rule (days overlap when: either DOM is `*` → compare
    /// DOW; else either DOW is `*` → compare DOM; else DOM or DOW intersect). That rule ignores
    /// month lengths and how DOM and DOW combine, so it both misses real overlaps
    /// (`* 8 5 * *` vs `* 8 6 * 1`: the 5th can be a Monday) and reports impossible ones
    /// (`* * 31 2 *` vs `* * * 2 *`: February 31 never exists). We report an overlap exactly
    /// when both schedules can match at the same moment, so "first match wins" is never needed
    /// to resolve an ambiguity the author did not intend.
    #[must_use]
    pub fn overlaps(&self, other: &CronSpec) -> bool {
        if self.hours & other.hours == 0 {
            return false;
        }
        let months = self.months & other.months;
        (1..=12u32).filter(|m| months & (1 << m) != 0).any(|month| {
            let valid = days_mask(days_in_month_max(month));
            (0..7).any(|weekday| {
                self.days_accepted_on(weekday, valid) & other.days_accepted_on(weekday, valid) != 0
            })
        })
    }

    /// Whether the expression matches at any moment at all (`* * 30 2 *` never does).
    #[must_use]
    pub fn is_satisfiable(&self) -> bool {
        self.overlaps(self)
    }

    /// The expression as written.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Accepted hours: bit `h` for hour `h` (0-23).
    #[must_use]
    pub fn hours_mask(&self) -> u32 {
        self.hours
    }

    /// Accepted days of the month: bit `d` for day `d` (1-31).
    #[must_use]
    pub fn days_of_month_mask(&self) -> u32 {
        self.dom
    }

    /// Accepted months: bit `m` for month `m` (1-12).
    #[must_use]
    pub fn months_mask(&self) -> u16 {
        self.months
    }

    /// Accepted weekdays: bit `w` for weekday `w` (0 = Sunday … 6 = Saturday).
    #[must_use]
    pub fn days_of_week_mask(&self) -> u8 {
        self.dow
    }

    /// Whether DOM was written as `*`.
    #[must_use]
    pub fn day_of_month_is_star(&self) -> bool {
        self.dom_star
    }

    /// Whether DOW was written as `*`.
    #[must_use]
    pub fn day_of_week_is_star(&self) -> bool {
        self.dow_star
    }
}

impl FromStr for CronSpec {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSpec::parse(s)
    }
}

impl fmt::Display for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Longest length of a month in any year; February counts 29 because leap years exist.
fn days_in_month_max(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Bits 1..=last set.
fn days_mask(last: u32) -> u32 {
    (1..=last).fold(0, |mask, d| mask | (1 << d))
}

/// Parses one non-minute field into (bitmask, written-as-`*`).
fn parse_field(text: &str, field: CronField) -> Result<(u32, bool), CronProblem> {
    let (min, max) = field.bounds();
    if text == "*" {
        return Ok(((min..=max).fold(0, |mask, v| mask | (1 << v)), true));
    }
    let mut mask = 0u32;
    for element in text.split(',') {
        let (start, end) = parse_element(element, field)?;
        for v in start..=end {
            mask |= 1 << v;
        }
    }
    Ok((mask, false))
}

/// Parses a number or `a-b` range within the field's bounds; returns inclusive endpoints.
fn parse_element(element: &str, field: CronField) -> Result<(u32, u32), CronProblem> {
    if element.is_empty() {
        return Err(CronProblem::EmptyElement { field });
    }
    if element == "*" {
        return Err(CronProblem::StarInList { field });
    }
    let token = || element.to_owned();
    if element.contains('/') {
        return Err(CronProblem::Step {
            field,
            token: token(),
        });
    }
    if element.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(CronProblem::Name {
            field,
            token: token(),
        });
    }
    let invalid = || CronProblem::InvalidToken {
        field,
        token: token(),
    };
    match element.split_once('-') {
        Some((a, b)) => {
            let start = parse_value(a, field).ok_or_else(invalid)??;
            let end = parse_value(b, field).ok_or_else(invalid)??;
            if start > end {
                return Err(CronProblem::ReversedRange { field, start, end });
            }
            Ok((start, end))
        }
        None => {
            let v = parse_value(element, field).ok_or_else(invalid)??;
            Ok((v, v))
        }
    }
}

/// `None` when `text` is not a plain decimal number; `Some(Err)` when it is one but outside the
/// field's bounds (including numbers too large for `u32`, which are reported as written).
fn parse_value(text: &str, field: CronField) -> Option<Result<u32, CronProblem>> {
    // Checked by hand because `u32::from_str` would also accept a leading `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (min, max) = field.bounds();
    Some(match text.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(CronProblem::OutOfRange {
            field,
            value: text.to_owned(),
        }),
    })
}

/// One `schedule { cron; instances }` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub cron: CronSpec,
    pub instances: i32,
}

/// A validated `scheduling` block: a known timezone and pairwise non-overlapping schedules in
/// declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduling {
    pub timezone: Tz,
    pub schedules: Vec<Schedule>,
}

impl Scheduling {
    /// Validates timezone, each cron, instances >= 0, and pairwise non-overlap.
    ///
    /// Returns the first problem, in a fixed order so the message is reproducible: timezone,
    /// then each schedule in declaration order (cron, then instances), then overlapping pairs
    /// `(i, j)` with `i < j` in lexicographic order. An empty list is accepted (it never
    /// matches, so the base count always applies).
    ///
    /// # Errors
    /// [`ScheduleError::MissingTimezone`], [`ScheduleError::UnknownTimezone`],
    /// [`ScheduleError::InvalidCron`], [`ScheduleError::NegativeInstances`] or
    /// [`ScheduleError::Overlap`].
    pub fn parse(timezone: &str, schedules: &[(String, i32)]) -> Result<Scheduling, ScheduleError> {
        if timezone.trim().is_empty() {
            return Err(ScheduleError::MissingTimezone);
        }
        let tz = timezone
            .parse::<Tz>()
            .map_err(|_| ScheduleError::UnknownTimezone {
                name: timezone.to_owned(),
            })?;
        let parsed = schedules
            .iter()
            .map(|(cron, instances)| {
                let cron = CronSpec::parse(cron)?;
                if *instances < 0 {
                    return Err(ScheduleError::NegativeInstances {
                        cron: cron.source,
                        instances: *instances,
                    });
                }
                Ok(Schedule {
                    cron,
                    instances: *instances,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in parsed.iter().enumerate() {
            for (j, b) in parsed.iter().enumerate().skip(i + 1) {
                if a.cron.overlaps(&b.cron) {
                    return Err(ScheduleError::Overlap {
                        first: a.cron.source.clone(),
                        second: b.cron.source.clone(),
                        first_index: i,
                        second_index: j,
                    });
                }
            }
        }
        Ok(Scheduling {
            timezone: tz,
            schedules: parsed,
        })
    }

    /// `instances` of the first schedule (declaration order) matching `at`, if any.
    #[must_use]
    pub fn matching_instances(&self, at: DateTime<Utc>) -> Option<i32> {
        // Convert once rather than per schedule: the zone lookup is the costly part.
        let local = at.with_timezone(&self.timezone).naive_local();
        self.schedules
            .iter()
            .find(|s| s.cron.matches_local(local))
            .map(|s| s.instances)
    }
}

/// Desired count of a pool: first matching schedule's instances, else `base`.
#[must_use]
pub fn desired_instances(base: i32, scheduling: Option<&Scheduling>, at: DateTime<Utc>) -> i32 {
    scheduling
        .and_then(|s| s.matching_instances(at))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate, Offset, TimeZone};
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn cron(expr: &str) -> CronSpec {
        CronSpec::parse(expr).unwrap()
    }

    fn problem(expr: &str) -> CronProblem {
        match CronSpec::parse(expr) {
            Err(ScheduleError::InvalidCron { expr: e, problem }) => {
                assert_eq!(e, expr);
                problem
            }
            other => panic!("{expr:?} should be rejected, got {other:?}"),
        }
    }

    fn message(expr: &str) -> String {
        CronSpec::parse(expr).unwrap_err().to_string()
    }

    // ---- matching ------------------------------------------------------------------------

    #[test]
    fn weekday_business_hours() {
        let c = cron("* 8-18 * * 1-5");
        let tz = chrono_tz::UTC;
        // 2025-03-03 is a Monday, 2025-03-07 a Friday, 2025-03-08 a Saturday.
        assert!(c.matches(utc(2025, 3, 3, 8, 0), tz));
        assert!(c.matches(Utc.with_ymd_and_hms(2025, 3, 7, 18, 59, 59).unwrap(), tz));
        assert!(!c.matches(utc(2025, 3, 7, 19, 0), tz));
        assert!(!c.matches(utc(2025, 3, 3, 7, 59), tz));
        for h in 0..24 {
            assert!(!c.matches(utc(2025, 3, 8, h, 0), tz), "Saturday {h}:00");
        }
    }

    #[test]
    fn hour_list_wrapping_midnight() {
        let c = cron("* 19-23,0-7 * * 1,5");
        let tz = chrono_tz::UTC;
        assert!(c.matches(utc(2025, 3, 3, 23, 30), tz)); // Monday
        assert!(c.matches(utc(2025, 3, 7, 7, 10), tz)); // Friday
        assert!(!c.matches(utc(2025, 3, 7, 8, 0), tz));
        assert!(!c.matches(utc(2025, 3, 4, 23, 30), tz)); // Tuesday
    }

    #[test]
    fn weekend_uses_sunday_zero() {
        let c = cron("* * * * 6,0");
        // 2025-03-02 is a Sunday; walk the week that follows it.
        let expected = [true, false, false, false, false, false, true];
        for (offset, want) in expected.iter().enumerate() {
            let at = utc(2025, 3, 2, 12, 0) + Duration::days(offset as i64);
            assert_eq!(c.matches(at, chrono_tz::UTC), *want, "{at}");
        }
    }

    #[test]
    fn day_rule_is_or_when_both_restricted_and_and_otherwise() {
        // 2025-03-03 Monday, 2025-03-15 Saturday, 2025-03-04 Tuesday.
        let either = cron("* * 15 * 1");
        assert!(either.matches(utc(2025, 3, 3, 0, 0), chrono_tz::UTC));
        assert!(either.matches(utc(2025, 3, 15, 0, 0), chrono_tz::UTC));
        assert!(!either.matches(utc(2025, 3, 4, 0, 0), chrono_tz::UTC));
        let dom_only = cron("* * 15 * *");
        assert!(!dom_only.matches(utc(2025, 3, 3, 0, 0), chrono_tz::UTC));
        assert!(dom_only.matches(utc(2025, 3, 15, 0, 0), chrono_tz::UTC));
        // `1-31` is not `*`: with a restricted DOW, every day matches through DOM.
        let full_range = cron("* * 1-31 * 1");
        assert!(full_range.matches(utc(2025, 3, 4, 0, 0), chrono_tz::UTC));
    }

    #[test]
    fn month_field_matches() {
        let c = cron("* * * 3,12 *");
        assert!(c.matches(utc(2025, 3, 4, 0, 0), chrono_tz::UTC));
        assert!(c.matches(utc(2025, 12, 31, 23, 0), chrono_tz::UTC));
        assert!(!c.matches(utc(2025, 4, 1, 0, 0), chrono_tz::UTC));
    }

    #[test]
    fn new_york_follows_dst() {
        let c = cron("* 9 * * *");
        let ny = chrono_tz::America::New_York;
        assert!(c.matches(utc(2025, 3, 7, 14, 0), ny)); // EST, 09:00 local
        assert!(c.matches(utc(2025, 3, 10, 13, 0), ny)); // EDT, 09:00 local
        assert!(!c.matches(utc(2025, 3, 10, 14, 0), ny)); // EDT, 10:00 local
        assert!(!c.matches(utc(2025, 3, 7, 13, 0), ny)); // EST, 08:00 local
    }

    #[test]
    fn skipped_and_repeated_local_hours() {
        let ny = chrono_tz::America::New_York;
        // 2025-03-09 02:00-02:59 does not exist in New York.
        let two = cron("* 2 * * *");
        let day = utc(2025, 3, 9, 0, 0);
        assert!((0..24).all(|h| !two.matches(day + Duration::hours(h), ny)));
        // 2025-11-02 01:00-01:59 happens twice (EDT, then EST): both match.
        let one = cron("* 1 * 11 *");
        assert!(one.matches(utc(2025, 11, 2, 5, 30), ny));
        assert!(one.matches(utc(2025, 11, 2, 6, 30), ny));
        assert!(!one.matches(utc(2025, 11, 2, 7, 30), ny));
    }

    #[test]
    fn timezone_changes_the_local_date() {
        // 23:30 UTC on Sunday is already Monday 08:30 in Tokyo.
        let c = cron("* 8 * * 1");
        assert!(c.matches(utc(2025, 3, 2, 23, 30), chrono_tz::Asia::Tokyo));
        assert!(!c.matches(utc(2025, 3, 2, 23, 30), chrono_tz::UTC));
    }

    // ---- overlap -------------------------------------------------------------------------

    fn assert_overlap(a: &str, b: &str, want: bool) {
        let (a, b) = (cron(a), cron(b));
        assert_eq!(a.overlaps(&b), want, "{a} vs {b}");
        assert_eq!(b.overlaps(&a), want, "{b} vs {a} (symmetry)");
    }

    #[test]
    fn overlap_examples() {
        assert_overlap("* 8-18 * * 1-5", "* 10-16 * * 1", true);
        assert_overlap("* 8-11 * * *", "* 12-14 * * *", false);
        assert_overlap("* 8-18 * * 1-5", "* 8-18 * * 0,6", false);
        assert_overlap("* * * 1-6 *", "* * * 7-12 *", false);
    }

    #[test]
    fn overlap_is_exact_where_coders_rule_is_not() {
        // Coder compares DOM only ({5} vs {6}) and says no; the 5th can be a Monday.
        assert_overlap("* 8 5 * *", "* 8 6 * 1", true);
        // Both restricted: Coder sees disjoint DOMs and DOWs; Monday the 2nd matches both.
        assert_overlap("* * 1 * 1", "* * 2 * 2", true);
        // February 31 never exists (Coder would say they overlap).
        assert_overlap("* * 31 2 *", "* * * 2 *", false);
        assert_overlap("* * 30 2 *", "* * * * *", false);
        // 31 never occurs in 30-day months.
        assert_overlap("* * 31 4,6,9,11 *", "* * * * *", false);
        assert_overlap("* * 31 4,7 *", "* * * 7 *", true);
        // February 29 is sometimes a Monday.
        assert_overlap("* * 29 2 *", "* * * * 1", true);
        // Same DOW, disjoint DOMs, both star-less: only the DOW side can meet.
        assert_overlap("* * 5 * *", "* * 6 * *", false);
    }

    #[test]
    fn satisfiable() {
        assert!(cron("* * * * *").is_satisfiable());
        assert!(cron("* * 29 2 *").is_satisfiable());
        assert!(!cron("* * 30 2 *").is_satisfiable());
        assert!(!cron("* * 31 4,6 *").is_satisfiable());
        // DOW restricted too, so "30 February OR Monday in February" can match.
        assert!(cron("* * 30 2 1").is_satisfiable());
    }

    // ---- parsing -------------------------------------------------------------------------

    #[test]
    fn masks_and_star_flags() {
        let c = cron("  * 19-23,0-7   * 2 6,0 ");
        assert_eq!(c.hours_mask(), 0xFF | (0x1F << 19));
        assert_eq!(c.days_of_month_mask(), 0xFFFF_FFFE);
        assert!(c.day_of_month_is_star());
        assert_eq!(c.months_mask(), 1 << 2);
        assert_eq!(c.days_of_week_mask(), 0b100_0001);
        assert!(!c.day_of_week_is_star());
        assert_eq!(c.source(), "  * 19-23,0-7   * 2 6,0 ");
        assert_eq!(cron("* * * * *").months_mask(), 0x1FFE);
        assert_eq!(cron("* * * * *").days_of_week_mask(), 0x7F);
        assert_eq!(
            "* 08 * * *".parse::<CronSpec>().unwrap().hours_mask(),
            1 << 8
        );
    }

    #[test]
    fn minute_must_be_star() {
        assert_eq!(
            problem("0 8 * * *"),
            CronProblem::MinuteNotStar { value: "0".into() }
        );
        assert!(message("0 8 * * *").contains("minute field must be \"*\""));
        assert!(matches!(
            problem("*/5 8 * * *"),
            CronProblem::MinuteNotStar { .. }
        ));
    }

    #[test]
    fn out_of_range_values() {
        assert_eq!(
            message("* 24 * * *"),
            "invalid cron \"* 24 * * *\": hour value 24 out of range 0-23"
        );
        assert!(message("* * 0 * *").contains("day-of-month value 0 out of range 1-31"));
        assert!(message("* * 32 * *").contains("day-of-month value 32 out of range 1-31"));
        assert!(message("* * * 0 *").contains("month value 0 out of range 1-12"));
        assert!(message("* * * 13 *").contains("month value 13 out of range 1-12"));
        assert!(
            message("* 1-99999999999999999999 * * *").contains("hour value 99999999999999999999")
        );
    }

    #[test]
    fn sunday_is_not_seven() {
        assert_eq!(
            problem("* * * * 7"),
            CronProblem::OutOfRange {
                field: CronField::DayOfWeek,
                value: "7".into()
            }
        );
        assert!(message("* * * * 1-7").contains("day-of-week value 7 out of range 0-6 (0 = Sunday"));
    }

    #[test]
    fn reversed_range() {
        assert_eq!(
            problem("* 5-3 * * *"),
            CronProblem::ReversedRange {
                field: CronField::Hour,
                start: 5,
                end: 3
            }
        );
        assert!(message("* 5-3 * * *").contains("hour range 5-3 is reversed"));
    }

    #[test]
    fn unsupported_syntax() {
        assert!(matches!(
            problem("* */2 * * *"),
            CronProblem::Step {
                field: CronField::Hour,
                ..
            }
        ));
        assert!(message("* */2 * * *").contains("steps"));
        assert!(matches!(
            problem("* 1-10/2 * * *"),
            CronProblem::Step { .. }
        ));
        assert!(matches!(
            problem("* * * * MON"),
            CronProblem::Name {
                field: CronField::DayOfWeek,
                ..
            }
        ));
        assert!(message("* * * * MON").contains("names"));
        assert!(matches!(
            problem("* * * JAN *"),
            CronProblem::Name {
                field: CronField::Month,
                ..
            }
        ));
        assert!(matches!(problem("* * L * *"), CronProblem::Name { .. }));
        assert_eq!(problem("@daily"), CronProblem::Shortcut);
        assert!(matches!(
            problem("* * ? * 1"),
            CronProblem::InvalidToken { .. }
        ));
        assert!(matches!(
            problem("* +8 * * *"),
            CronProblem::InvalidToken { .. }
        ));
        assert!(matches!(
            problem("* -8 * * *"),
            CronProblem::InvalidToken { .. }
        ));
        assert!(matches!(
            problem("* 8- * * *"),
            CronProblem::InvalidToken { .. }
        ));
        assert!(matches!(
            problem("* 1-2-3 * * *"),
            CronProblem::InvalidToken { .. }
        ));
        assert!(matches!(
            problem("* 8,,9 * * *"),
            CronProblem::EmptyElement { .. }
        ));
        assert!(matches!(
            problem("* 8, * * *"),
            CronProblem::EmptyElement { .. }
        ));
        assert!(matches!(
            problem("* *,8 * * *"),
            CronProblem::StarInList { .. }
        ));
        assert!(matches!(
            problem("* ８ * * *"),
            CronProblem::InvalidToken { .. }
        ));
    }

    #[test]
    fn wrong_field_counts() {
        assert_eq!(problem(""), CronProblem::FieldCount { found: 0 });
        assert_eq!(problem("   "), CronProblem::FieldCount { found: 0 });
        assert_eq!(problem("* * * *"), CronProblem::FieldCount { found: 4 });
        assert_eq!(problem("* * * * * *"), CronProblem::FieldCount { found: 6 });
        assert!(message("* * * *").contains("expected 5 whitespace-separated fields"));
    }

    // ---- scheduling block ----------------------------------------------------------------

    fn entries(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
    }

    #[test]
    fn unknown_and_missing_timezone() {
        assert_eq!(
            Scheduling::parse("Mars/Olympus_Mons", &[]),
            Err(ScheduleError::UnknownTimezone {
                name: "Mars/Olympus_Mons".into()
            })
        );
        assert_eq!(
            Scheduling::parse("", &[]),
            Err(ScheduleError::MissingTimezone)
        );
        assert!(Scheduling::parse("Europe/Berlin", &[]).is_ok());
    }

    #[test]
    fn scheduling_validation_errors() {
        let err = Scheduling::parse(
            "UTC",
            &entries(&[("* 8-18 * * 1-5", 3), ("* 10-16 * * 1", 5)]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "schedules \"* 8-18 * * 1-5\" and \"* 10-16 * * 1\" overlap"
        );
        assert_eq!(
            Scheduling::parse("UTC", &entries(&[("* 8 * * *", -1)])),
            Err(ScheduleError::NegativeInstances {
                cron: "* 8 * * *".into(),
                instances: -1
            })
        );
        assert!(matches!(
            Scheduling::parse("UTC", &entries(&[("0 8 * * *", 1)])),
            Err(ScheduleError::InvalidCron { .. })
        ));
        // Deterministic order: the bad cron (2nd entry) is reported before the overlap of 1st/3rd.
        assert!(matches!(
            Scheduling::parse(
                "UTC",
                &entries(&[("* 8 * * *", 1), ("* 25 * * *", 1), ("* 8 * * *", 1)])
            ),
            Err(ScheduleError::InvalidCron { .. })
        ));
        // Overlaps are reported for the first pair in (i, j) order.
        assert_eq!(
            Scheduling::parse(
                "UTC",
                &entries(&[
                    ("* 1 * * *", 1),
                    ("* 2 * * *", 1),
                    ("* 2 * * *", 1),
                    ("* 1 * * *", 1)
                ])
            ),
            Err(ScheduleError::Overlap {
                first: "* 1 * * *".into(),
                second: "* 1 * * *".into(),
                first_index: 0,
                second_index: 3
            })
        );
    }

    #[test]
    fn desired_instances_first_match_wins_else_base() {
        let s = Scheduling::parse(
            "America/New_York",
            &entries(&[
                ("* 8-11 * * 1-5", 4),
                ("* 12-18 * * 1-5", 2),
                ("* * * * 0,6", 0),
            ]),
        )
        .unwrap();
        assert_eq!(s.timezone, chrono_tz::America::New_York);
        // Monday 2025-03-03 09:00 EST = 14:00Z.
        assert_eq!(desired_instances(1, Some(&s), utc(2025, 3, 3, 14, 0)), 4);
        assert_eq!(desired_instances(1, Some(&s), utc(2025, 3, 3, 18, 0)), 2);
        // Saturday: the zero-instance schedule wins over the base.
        assert_eq!(desired_instances(1, Some(&s), utc(2025, 3, 8, 18, 0)), 0);
        // Monday 20:00 local: nothing matches.
        assert_eq!(desired_instances(1, Some(&s), utc(2025, 3, 4, 1, 0)), 1);
        assert_eq!(desired_instances(7, None, utc(2025, 3, 3, 14, 0)), 7);
        assert_eq!(s.matching_instances(utc(2025, 3, 4, 1, 0)), None);
    }

    #[test]
    fn first_match_wins_in_declaration_order() {
        // Valid schedules never overlap, so order can only matter when built by hand.
        let s = Scheduling {
            timezone: chrono_tz::UTC,
            schedules: vec![
                Schedule {
                    cron: cron("* 8 * * *"),
                    instances: 1,
                },
                Schedule {
                    cron: cron("* * * * *"),
                    instances: 2,
                },
            ],
        };
        assert_eq!(desired_instances(0, Some(&s), utc(2025, 3, 3, 8, 0)), 1);
        assert_eq!(desired_instances(0, Some(&s), utc(2025, 3, 3, 9, 0)), 2);
    }

    // ---- property tests ------------------------------------------------------------------

    /// Reference matcher reading the cron text directly, independent of the bitmasks.
    fn naive_field(text: &str, value: u32) -> bool {
        text == "*"
            || text.split(',').any(|part| match part.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u32>().unwrap() <= value && value <= b.parse::<u32>().unwrap()
                }
                None => part.parse::<u32>().unwrap() == value,
            })
    }

    fn naive_day(f: &[&str], dom: u32, dow: u32) -> bool {
        let (dom_ok, dow_ok) = (naive_field(f[2], dom), naive_field(f[4], dow));
        if f[2] == "*" || f[4] == "*" {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        }
    }

    /// (hour, day, month, weekday) of the local wall clock, derived from the zone's UTC offset
    /// with plain arithmetic instead of chrono's calendar conversion.
    fn naive_local_fields(at: DateTime<Utc>, tz: Tz) -> (u32, u32, u32, u32) {
        let offset = tz
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc();
        let local = at.timestamp() + i64::from(offset);
        let mut days = local.div_euclid(86_400);
        let hour = (local.rem_euclid(86_400) / 3600) as u32;
        let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut year = 1970;
        loop {
            let len = if leap(year) { 366 } else { 365 };
            if days < len {
                break;
            }
            days -= len;
            year += 1;
        }
        let lengths = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 1;
        for len in lengths {
            if days < len {
                break;
            }
            days -= len;
            month += 1;
        }
        (hour, days as u32 + 1, month, weekday)
    }

    fn element(min: u32, max: u32) -> impl Strategy<Value = String> {
        // Mostly short ranges so generated schedules are often disjoint.
        (min..=max, 0..=4u32, any::<bool>()).prop_map(move |(a, len, range)| {
            if range {
                format!("{a}-{}", (a + len).min(max))
            } else {
                a.to_string()
            }
        })
    }

    fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just("*".to_owned()),
            3 => prop::collection::vec(element(min, max), 1..=3).prop_map(|v| v.join(",")),
        ]
    }

    fn dom_field() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => field(1, 31),
            // Month-end days are where month lengths and leap years matter.
            1 => prop::collection::vec(element(27, 31), 1..=2).prop_map(|v| v.join(",")),
        ]
    }

    fn month_field() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => field(1, 12),
            1 => Just("2".to_owned()),
            1 => Just("2,4".to_owned()),
        ]
    }

    fn cron_text() -> impl Strategy<Value = String> {
        (field(0, 23), dom_field(), month_field(), field(0, 6))
            .prop_map(|(h, dom, m, dow)| format!("* {h} {dom} {m} {dow}"))
    }

    /// Hours `*`: with random hours most pairs are told apart by the hours alone, so these
    /// make the day and month rules decide.
    fn day_cron_text() -> impl Strategy<Value = String> {
        (dom_field(), month_field(), field(0, 6))
            .prop_map(|(dom, m, dow)| format!("* * {dom} {m} {dow}"))
    }

    /// Same months on both sides and hours `*`, so only the day rules can keep them apart.
    fn same_month_day_pair() -> impl Strategy<Value = (String, String)> {
        let day = || {
            prop_oneof![
                (dom_field(), Just("*".to_owned())),
                (Just("*".to_owned()), field(0, 6)),
                (dom_field(), field(0, 6)),
            ]
        };
        (month_field(), day(), day()).prop_map(|(m, (dom_a, dow_a), (dom_b, dow_b))| {
            (
                format!("* * {dom_a} {m} {dow_a}"),
                format!("* * {dom_b} {m} {dow_b}"),
            )
        })
    }

    fn cron_pair() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            (cron_text(), cron_text()),
            (day_cron_text(), day_cron_text()),
            same_month_day_pair(),
        ]
    }

    /// Crons for which a 400-day window shows every possible overlap (see the property below).
    fn short_month_cron_text() -> impl Strategy<Value = String> {
        let hours = prop_oneof![Just("*".to_owned()), field(0, 23)];
        (hours, field(1, 28), field(0, 6)).prop_map(|(h, dom, dow)| format!("* {h} {dom} * {dow}"))
    }

    /// Whether both crons match at some hour of some date in `days`, judged by the reference
    /// matcher: a day is checked once and its hours via the intersection of the hour fields.
    fn brute_force_overlap(a: &str, b: &str, days: impl Iterator<Item = NaiveDate>) -> bool {
        let (fa, fb): (Vec<&str>, Vec<&str>) = (
            a.split_whitespace().collect(),
            b.split_whitespace().collect(),
        );
        if !(0..24).any(|h| naive_field(fa[1], h) && naive_field(fb[1], h)) {
            return false;
        }
        days.into_iter().any(|date| {
            let (dom, month, dow) = (
                date.day(),
                date.month(),
                date.weekday().num_days_from_sunday(),
            );
            [&fa, &fb]
                .iter()
                .all(|f| naive_field(f[3], month) && naive_day(f, dom, dow))
        })
    }

    fn date_range(first: NaiveDate, count: usize) -> impl Iterator<Item = NaiveDate> {
        first.iter_days().take(count)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Hour by hour through 2025 (both DST switches) in zones with DST, a half-hour offset,
        /// and a half-hour DST shift, at a random second within each hour.
        #[test]
        fn matches_agrees_with_reference_over_a_year(
            text in cron_text(),
            second in 0..3600i64,
        ) {
            let spec = CronSpec::parse(&text).unwrap();
            let fields: Vec<&str> = text.split_whitespace().collect();
            let start = utc(2025, 1, 1, 0, 0) + Duration::seconds(second);
            for tz in [
                chrono_tz::America::New_York,
                chrono_tz::Europe::Berlin,
                chrono_tz::Australia::Lord_Howe,
            ] {
                for h in 0..365 * 24 {
                    let at = start + Duration::hours(h);
                    let (hour, dom, month, dow) = naive_local_fields(at, tz);
                    let want = naive_field(fields[1], hour)
                        && naive_field(fields[3], month)
                        && naive_day(&fields, dom, dow);
                    prop_assert_eq!(spec.matches(at, tz), want, "{} at {} in {}", text, at, tz);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// 2000-01-01..=2027-12-31 holds seven leap years, so February 29 falls on every weekday,
        /// and every other (month, day, weekday) triple occurs too: the window is exhaustive.
        #[test]
        fn overlaps_agrees_with_28_year_enumeration((a, b) in cron_pair()) {
            let (sa, sb) = (CronSpec::parse(&a).unwrap(), CronSpec::parse(&b).unwrap());
            let first = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
            let last = NaiveDate::from_ymd_opt(2027, 12, 31).unwrap();
            let days = (last - first).num_days() as usize + 1;
            let want = brute_force_overlap(&a, &b, date_range(first, days));
            prop_assert_eq!(sa.overlaps(&sb), want, "{} vs {}", a, b);
            prop_assert_eq!(sb.overlaps(&sa), want, "symmetry: {} vs {}", b, a);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The wording ("some hour of a 400-day window matches both") is only exact when
        /// every possible (day, weekday) combination appears in the window. With MONTH `*` and
        /// DOM <= 28 the day exists in every month, and any window holding a whole calendar year
        /// (this one starts on January 1) puts each day-of-month on all seven weekdays. With a
        /// restricted month or DOM 29-31 a 400-day window can miss the one year where e.g.
        /// February 13 is a Friday or February 29 a Monday.
        #[test]
        fn overlaps_agrees_with_400_day_window(
            a in short_month_cron_text(),
            b in short_month_cron_text(),
        ) {
            let (sa, sb) = (CronSpec::parse(&a).unwrap(), CronSpec::parse(&b).unwrap());
            let first = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
            let want = brute_force_overlap(&a, &b, date_range(first, 400));
            prop_assert_eq!(sa.overlaps(&sb), want, "{} vs {}", a, b);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = CronSpec::parse(&s);
        }

        /// Cron-like noise reaches the inner parsing paths far more often than arbitrary text.
        #[test]
        fn parse_never_panics_on_cron_like_strings(s in "[0-9*,/ @?A-Za-z\\-]{0,24}") {
            if let Ok(spec) = CronSpec::parse(&s) {
                prop_assert_eq!(spec.source(), s.as_str());
            }
        }

        #[test]
        fn scheduling_parse_never_panics(
            tz in "[A-Za-z/_]{0,20}",
            list in prop::collection::vec(("[0-9*, \\-]{0,16}", any::<i32>()), 0..4),
        ) {
            let _ = Scheduling::parse(&tz, &list);
            let _ = Scheduling::parse("UTC", &list);
        }
    }
}
