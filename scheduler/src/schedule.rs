//! Cron schedules, in UTC: the 5-field form (`*/5 * * * *`) and the form with seconds first
//! (`0 */30 * * * *`, as the platform API's example writes it).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule and the text it came from.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule `{text}` is not a cron expression (5 fields, or 6 with seconds first): {reason}")]
pub struct ScheduleError {
    /// The expression refused.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        let refuse = |reason: String| ScheduleError {
            text: text.to_string(),
            reason,
        };
        let fields = text.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(refuse(format!("{fields} fields")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| refuse(e.to_string()))?;
        let schedule = Schedule {
            text: text.to_string(),
            cron,
        };
        // A pattern that never matches (`0 0 30 2 *`) is as useless as a malformed one.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(refuse("it never matches".to_string()));
        }
        Ok(schedule)
    }
}

impl Schedule {
    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` the schedule matches.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// [`Schedule::next_after`] in epoch milliseconds.
    pub fn next_after_ms(&self, after_ms: i64) -> Option<i64> {
        let after = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
        self.next_after(after).map(|t| t.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn both_forms_are_read_in_utc() {
        let every_half_hour: Schedule = "0 */30 * * * *".parse().unwrap();
        assert_eq!(
            every_half_hour.next_after(at("2026-12-03T10:10:00Z")),
            Some(at("2026-12-03T10:30:00Z"))
        );
        let five_minutes: Schedule = "*/5 * * * *".parse().unwrap();
        assert_eq!(
            five_minutes.next_after(at("2026-12-03T10:10:00Z")),
            Some(at("2026-12-03T10:15:00Z")),
            "strictly after"
        );
        let nightly: Schedule = "30 2 * * *".parse().unwrap();
        assert_eq!(
            nightly.next_after(at("2026-12-03T10:10:00Z")),
            Some(at("2026-12-04T02:30:00Z"))
        );
        assert_eq!(nightly.as_str(), "30 2 * * *");
    }

    #[test]
    fn a_bad_expression_is_refused_by_name() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "0 0 0 * * * 2030",
            "every hour",
            "0 0 30 2 *",
        ] {
            let error = bad.parse::<Schedule>().unwrap_err();
            assert!(
                error.to_string().contains(&format!("`{}`", bad.trim())),
                "{error}"
            );
        }
    }
}
