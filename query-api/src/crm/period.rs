//! Dates, periods and time buckets of the analytics, all in UTC.
//!
//! - A **day** bucket is a UTC calendar day, labelled `YYYY-MM-DD`.
//! - A **week** bucket is an ISO week (Monday to Sunday, UTC), labelled by its Monday `YYYY-MM-DD`,
//!   so labels sort as text and read as dates; a week that spans a month or year end is one bucket
//!   (2024-12-30 holds 2024-12-30 to 2025-01-05).
//! - A **month** bucket is a UTC calendar month, labelled `YYYY-MM`.
//!
//! A window is a range of whole UTC days `[first, last]`. The SQL groups rows by UTC day number
//! (portable integer division of epoch milliseconds), and [`Buckets`] rolls days up into the
//! period's buckets here, so every backend buckets identically. When a window starts or ends inside
//! a week or month, that bucket counts only the days of the window and keeps the label of its start.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate, TimeZone, Utc};

use owl_sql::DAY_MS;

/// The most points one answer may have, whatever the period.
pub const MAX_POINTS: usize = 1000;

/// A bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// UTC days.
    Day,
    /// ISO weeks starting Monday.
    Week,
    /// Calendar months.
    Month,
}

/// Why a date, period or window was refused (rendered by the HTTP layer in its family's envelope).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Not `day`, `week` or `month`.
    #[error("{field} 必须是 day、week 或 month，收到 {value:?}")]
    Period {
        /// The parameter.
        field: &'static str,
        /// What was sent.
        value: String,
    },
    /// Not a valid `YYYY-MM-DD` date.
    #[error("{field} 必须是 YYYY-MM-DD 格式的有效日期，收到 {value:?}")]
    Date {
        /// The parameter.
        field: &'static str,
        /// What was sent.
        value: String,
    },
    /// The start is after the end.
    #[error("start_date（{start}）不能晚于 end_date（{end}）")]
    Reversed {
        /// Start.
        start: NaiveDate,
        /// End.
        end: NaiveDate,
    },
    /// More points than [`MAX_POINTS`].
    #[error("start_date 至 end_date 的时间范围过大：按 {period} 统计最多 {max} 个点，请求了 {points} 个")]
    TooManyPoints {
        /// The period name.
        period: &'static str,
        /// Points requested.
        points: usize,
        /// The limit.
        max: usize,
    },
}

impl PeriodError {
    /// The parameter at fault.
    pub fn field(&self) -> &'static str {
        match self {
            PeriodError::Period { field, .. } | PeriodError::Date { field, .. } => field,
            PeriodError::Reversed { .. } | PeriodError::TooManyPoints { .. } => "start_date",
        }
    }
}

impl Period {
    /// Parses `day`, `week` or `month` (case-insensitive); absent or blank means `default`.
    pub fn parse(field: &'static str, value: Option<&str>, default: Period) -> Result<Period, PeriodError> {
        let Some(text) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(default);
        };
        match text.to_ascii_lowercase().as_str() {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            _ => Err(PeriodError::Period {
                field,
                value: text.to_string(),
            }),
        }
    }

    /// `day`, `week` or `month`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The first day of the bucket holding `date`.
    pub fn bucket_start(self, date: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => date,
            Period::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            Period::Month => date.with_day(1).expect("day 1 exists in every month"),
        }
    }

    /// The first day of the bucket after the one starting at `start`.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => start + Days::new(1),
            Period::Week => start + Days::new(7),
            Period::Month => start + Months::new(1),
        }
    }

    /// The label of the bucket starting at `start`.
    pub fn label(self, start: NaiveDate) -> String {
        match self {
            Period::Day | Period::Week => start.format("%Y-%m-%d").to_string(),
            Period::Month => start.format("%Y-%m").to_string(),
        }
    }

    /// The default window ending `today`: 30 days, 12 ISO weeks or 12 months, the current one last.
    pub fn default_window(self, today: NaiveDate) -> Window {
        let first = match self {
            Period::Day => today - Days::new(29),
            Period::Week => self.bucket_start(today) - Days::new(7 * 11),
            Period::Month => self.bucket_start(today) - Months::new(11),
        };
        Window { first, last: today }
    }
}

/// Parses a strict `YYYY-MM-DD` date.
pub fn parse_date(field: &'static str, value: &str) -> Result<NaiveDate, PeriodError> {
    let text = value.trim();
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let date = shaped
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten();
    date.filter(|d| d.year() >= 1970)
        .ok_or_else(|| PeriodError::Date {
            field,
            value: value.to_string(),
        })
}

/// Parses an optional date parameter (blank means absent).
pub fn parse_optional_date(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<NaiveDate>, PeriodError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => parse_date(field, text).map(Some),
    }
}

/// A range of whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// First day.
    pub first: NaiveDate,
    /// Last day.
    pub last: NaiveDate,
}

impl Window {
    /// The window of `start_date`/`end_date`: without an end it ends where `default` does (today),
    /// without a start it spans as many days as `default`, ending at the end given.
    pub fn from_params(
        start: Option<NaiveDate>,
        end: Option<NaiveDate>,
        default: Window,
    ) -> Result<Window, PeriodError> {
        let window = match (start, end) {
            (None, None) => default,
            (Some(first), Some(last)) => Window { first, last },
            (Some(first), None) => Window {
                first,
                last: default.last.max(first),
            },
            (None, Some(last)) => {
                let span = u64::try_from(default.days() - 1).unwrap_or(0);
                Window {
                    first: last.checked_sub_days(Days::new(span)).unwrap_or(last),
                    last,
                }
            }
        };
        if window.first > window.last {
            return Err(PeriodError::Reversed {
                start: window.first,
                end: window.last,
            });
        }
        Ok(window)
    }

    /// Epoch milliseconds of the first instant of the window.
    pub fn start_ms(&self) -> i64 {
        date_ms(self.first)
    }

    /// Epoch milliseconds of the first instant after the window.
    pub fn end_ms(&self) -> i64 {
        date_ms(self.last + Days::new(1))
    }

    /// Days in the window.
    pub fn days(&self) -> i64 {
        (self.last - self.first).num_days() + 1
    }

    /// The buckets of `period` covering the window, refusing more than [`MAX_POINTS`].
    pub fn buckets(&self, period: Period) -> Result<Buckets, PeriodError> {
        let mut starts = Vec::new();
        let mut start = period.bucket_start(self.first);
        while start <= self.last {
            if starts.len() == MAX_POINTS {
                let points = estimate_points(self, period);
                return Err(PeriodError::TooManyPoints {
                    period: period.name(),
                    points,
                    max: MAX_POINTS,
                });
            }
            starts.push(start);
            start = period.next(start);
        }
        Ok(Buckets { period, starts })
    }
}

fn estimate_points(window: &Window, period: Period) -> usize {
    let days = window.days().max(1) as usize;
    match period {
        Period::Day => days,
        Period::Week => days.div_ceil(7),
        Period::Month => days.div_ceil(30),
    }
}

/// Epoch milliseconds of a UTC midnight.
pub fn date_ms(date: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .timestamp_millis()
}

/// The UTC date of a day number (days since 1970-01-01).
pub fn epoch_day_date(day: i64) -> NaiveDate {
    chrono::DateTime::<Utc>::from_timestamp_millis(day.saturating_mul(DAY_MS))
        .unwrap_or_default()
        .date_naive()
}

/// The UTC date of epoch milliseconds.
pub fn ms_date(ms: i64) -> NaiveDate {
    chrono::DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// The buckets of a window, oldest first.
#[derive(Debug, Clone)]
pub struct Buckets {
    period: Period,
    starts: Vec<NaiveDate>,
}

impl Buckets {
    /// The bucket size.
    pub fn period(&self) -> Period {
        self.period
    }

    /// Bucket labels, oldest first.
    pub fn labels(&self) -> Vec<String> {
        self.starts.iter().map(|s| self.period.label(*s)).collect()
    }

    /// Sums `(day number, value)` rows into the buckets; rows outside the window are ignored.
    pub fn sum<T: Copy + Default + std::ops::AddAssign>(
        &self,
        rows: impl IntoIterator<Item = (i64, T)>,
    ) -> Vec<T> {
        let index: BTreeMap<NaiveDate, usize> =
            self.starts.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        let mut values = vec![T::default(); self.starts.len()];
        for (day, value) in rows {
            let start = self.period.bucket_start(epoch_day_date(day));
            if let Some(&i) = index.get(&start) {
                values[i] += value;
            }
        }
        values
    }

    /// The label of the bucket holding a day number, if it is one of these buckets.
    pub fn label_of_day(&self, day: i64) -> Option<String> {
        let start = self.period.bucket_start(epoch_day_date(day));
        self.starts
            .binary_search(&start)
            .ok()
            .map(|_| self.period.label(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn day_number(text: &str) -> i64 {
        date_ms(d(text)) / DAY_MS
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("start_date", "2024-11-01").unwrap(), d("2024-11-01"));
        for bad in [
            "2024-1-05",
            "2024/11/01",
            "2024-02-30",
            "20241101",
            "2024-11-01T00:00:00",
            "",
            "1969-12-31",
        ] {
            let error = parse_date("start_date", bad).unwrap_err();
            assert_eq!(error.field(), "start_date", "{bad}");
        }
        assert_eq!(parse_optional_date("end_date", Some("  ")).unwrap(), None);
    }

    #[test]
    fn periods_parse_with_a_default() {
        assert_eq!(
            Period::parse("period", None, Period::Month).unwrap(),
            Period::Month
        );
        assert_eq!(
            Period::parse("period", Some("WEEK"), Period::Day).unwrap(),
            Period::Week
        );
        let error = Period::parse("period", Some("year"), Period::Day).unwrap_err();
        assert!(error.to_string().contains("day、week 或 month"), "{error}");
    }

    #[test]
    fn weeks_start_on_monday_and_cross_year_ends() {
        // 2025-01-01 is a Wednesday: its ISO week (2025-W01) starts on Monday 2024-12-30.
        assert_eq!(Period::Week.bucket_start(d("2025-01-01")), d("2024-12-30"));
        assert_eq!(Period::Week.bucket_start(d("2024-12-30")), d("2024-12-30"));
        assert_eq!(Period::Week.bucket_start(d("2025-01-05")), d("2024-12-30"));
        assert_eq!(Period::Week.bucket_start(d("2025-01-06")), d("2025-01-06"));
        assert_eq!(Period::Week.label(d("2024-12-30")), "2024-12-30");
        assert_eq!(Period::Month.label(d("2024-02-01")), "2024-02");
        assert_eq!(Period::Month.next(d("2024-12-01")), d("2025-01-01"));
    }

    #[test]
    fn buckets_roll_days_up_across_month_and_year_ends() {
        let window = Window {
            first: d("2024-12-30"),
            last: d("2025-02-02"),
        };
        let months = window.buckets(Period::Month).unwrap();
        assert_eq!(months.labels(), ["2024-12", "2025-01", "2025-02"]);
        let rows = [
            (day_number("2024-12-31"), 1_i64),
            (day_number("2025-01-01"), 10),
            (day_number("2025-01-31"), 100),
            (day_number("2025-02-01"), 1000),
        ];
        assert_eq!(months.sum(rows), vec![1, 110, 1000]);
        let weeks = window.buckets(Period::Week).unwrap();
        assert_eq!(weeks.labels()[0], "2024-12-30");
        assert_eq!(
            weeks.sum(rows)[0],
            11,
            "2024-12-31 and 2025-01-01 share the ISO week of 2024-12-30"
        );
        let days = window.buckets(Period::Day).unwrap();
        assert_eq!(days.labels().len(), 35);
        assert_eq!(
            days.label_of_day(day_number("2025-01-01")).as_deref(),
            Some("2025-01-01")
        );
        assert_eq!(days.label_of_day(day_number("2025-03-01")), None);
    }

    #[test]
    fn leap_day_and_default_windows() {
        let february = Window {
            first: d("2024-02-01"),
            last: d("2024-02-29"),
        };
        assert_eq!(february.days(), 29);
        assert_eq!(february.end_ms(), date_ms(d("2024-03-01")));
        let day = Period::Day.default_window(d("2024-03-01"));
        assert_eq!(
            (day.first, day.last),
            (d("2024-02-01"), d("2024-03-01")),
            "29 days back across the leap day"
        );
        let week = Period::Week.default_window(d("2025-01-01"));
        assert_eq!(week.first, d("2024-10-14"));
        assert_eq!(week.buckets(Period::Week).unwrap().labels().len(), 12);
        let month = Period::Month.default_window(d("2025-01-15"));
        assert_eq!(month.first, d("2024-02-01"));
        assert_eq!(month.buckets(Period::Month).unwrap().labels().len(), 12);
    }

    #[test]
    fn windows_validate() {
        let default = Window {
            first: d("2024-11-01"),
            last: d("2024-11-30"),
        };
        assert_eq!(Window::from_params(None, None, default).unwrap(), default);
        let only_end = Window::from_params(None, Some(d("2024-10-30")), default).unwrap();
        assert_eq!(
            only_end,
            Window {
                first: d("2024-10-01"),
                last: d("2024-10-30")
            },
            "the default's 30 days"
        );
        let only_start = Window::from_params(Some(d("2024-11-20")), None, default).unwrap();
        assert_eq!(
            only_start,
            Window {
                first: d("2024-11-20"),
                last: d("2024-11-30")
            }
        );
        let error = Window::from_params(Some(d("2024-12-01")), Some(d("2024-11-01")), default).unwrap_err();
        assert!(matches!(error, PeriodError::Reversed { .. }));
        let huge = Window {
            first: d("2000-01-01"),
            last: d("2024-01-01"),
        };
        assert!(matches!(
            huge.buckets(Period::Day),
            Err(PeriodError::TooManyPoints { .. })
        ));
        assert!(huge.buckets(Period::Month).is_ok());
    }
}
