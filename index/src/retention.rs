//! Retention by whole partitions, and disk usage.
//!
//! A partition of day `D` is dropped once its whole day is older than the cutoff `now - days`,
//! that is when `D + 1 day <= now - days`: no record younger than the retention period is ever
//! deleted, and at most one day more than the period is kept. Dropping a directory is one
//! `remove_dir_all` after the partition's writer, reader handle and tail are gone, instead of a
//! delete query and a merge that rewrites segments.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Days, NaiveDate, Utc};
use owl_model::Kind;

use crate::error::{IndexError, Result};
use crate::partition::{PartitionKey, day_start};

/// How long each kind is kept, in days; `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// HTTP access records.
    pub http_days: Option<u32>,
    /// Application records.
    pub application_days: Option<u32>,
    /// Error records.
    pub error_days: Option<u32>,
    /// Host metric samples and heartbeats.
    pub metrics_days: Option<u32>,
}

impl Default for RetentionPolicy {
    /// The log API's defaults (http 14, application 30, error 30 days) and a week of host metrics.
    fn default() -> Self {
        RetentionPolicy {
            http_days: Some(14),
            application_days: Some(30),
            error_days: Some(30),
            metrics_days: Some(7),
        }
    }
}

impl RetentionPolicy {
    /// A policy that drops nothing.
    pub fn keep_all() -> RetentionPolicy {
        RetentionPolicy {
            http_days: None,
            application_days: None,
            error_days: None,
            metrics_days: None,
        }
    }

    /// The log API's cleanup of one kind: records of `kind` older than `days`, nothing else.
    pub fn only(kind: Kind, days: u32) -> RetentionPolicy {
        let mut policy = RetentionPolicy::keep_all();
        *policy.days_mut(kind) = Some(days);
        policy
    }

    /// The log API's cleanup of type `all`: every kind older than `days` (metrics untouched).
    pub fn all_kinds(days: u32) -> RetentionPolicy {
        RetentionPolicy {
            http_days: Some(days),
            application_days: Some(days),
            error_days: Some(days),
            metrics_days: None,
        }
    }

    /// Retention days of `kind`.
    pub fn days(&self, kind: Kind) -> Option<u32> {
        match kind {
            Kind::Http => self.http_days,
            Kind::Application => self.application_days,
            Kind::Error => self.error_days,
        }
    }

    fn days_mut(&mut self, kind: Kind) -> &mut Option<u32> {
        match kind {
            Kind::Http => &mut self.http_days,
            Kind::Application => &mut self.application_days,
            Kind::Error => &mut self.error_days,
        }
    }
}

/// Whether a partition of `day` is past a retention of `days` at `now`.
pub(crate) fn is_expired(day: NaiveDate, days: u32, now: DateTime<Utc>) -> bool {
    let Some(cutoff) = now.checked_sub_days(Days::new(u64::from(days))) else {
        return false;
    };
    let Some(next_day) = day.checked_add_days(Days::new(1)) else {
        return false;
    };
    day_start(next_day) <= cutoff
}

/// Files and bytes of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionUsage {
    /// The partition.
    pub key: PartitionKey,
    /// Files in its directory.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// Files and bytes of a group of partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Usage {
    fn add(&mut self, files: u64, bytes: u64) {
        self.files += files;
        self.bytes += bytes;
    }
}

/// What retention dropped, or would drop on a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// The partitions, oldest first per kind.
    pub partitions: Vec<PartitionUsage>,
    /// Metric and heartbeat day files.
    pub metrics: Usage,
}

impl RetentionReport {
    /// Totals per kind (kinds without dropped partitions are absent).
    pub fn by_kind(&self) -> BTreeMap<Kind, Usage> {
        let mut map: BTreeMap<Kind, Usage> = BTreeMap::new();
        for p in &self.partitions {
            map.entry(p.key.kind).or_default().add(p.files, p.bytes);
        }
        map
    }

    /// Files freed, partitions and metrics together.
    pub fn files(&self) -> u64 {
        self.partitions.iter().map(|p| p.files).sum::<u64>() + self.metrics.files
    }

    /// Bytes freed, partitions and metrics together.
    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum::<u64>() + self.metrics.bytes
    }
}

/// Disk usage of the index directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskUsage {
    /// Every file under the root.
    pub total: Usage,
    /// Partitions per kind; every kind is present.
    pub by_kind: BTreeMap<Kind, Usage>,
    /// The metrics store.
    pub metrics: Usage,
}

/// Counts the files and bytes under `dir`, recursively; a missing directory is empty. Files that
/// vanish while counting (a merge finished) are skipped.
pub(crate) fn dir_usage(dir: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(usage),
        Err(e) => return Err(IndexError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| IndexError::io(dir, e))?;
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let inner = dir_usage(&entry.path())?;
            usage.add(inner.files, inner.bytes);
        } else {
            usage.add(1, meta.len());
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_model::parse_timestamp;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_partition_expires_when_its_whole_day_is_past_the_cutoff() {
        // Cutoff 2025-12-07T10:00 - 14 days = 2025-11-23T10:00.
        let now = parse_timestamp("2025-12-07T10:00:00Z").unwrap();
        assert!(is_expired(day("2025-11-22"), 14, now));
        assert!(
            !is_expired(day("2025-11-23"), 14, now),
            "holds records younger than the cutoff"
        );
        let midnight = parse_timestamp("2025-12-07T00:00:00Z").unwrap();
        assert!(
            is_expired(day("2025-11-22"), 14, midnight),
            "ends exactly at the cutoff"
        );
        assert!(!is_expired(day("2025-12-07"), 0, now));
        assert!(is_expired(day("2025-12-06"), 0, now));
    }

    #[test]
    fn policies_name_their_kinds() {
        let policy = RetentionPolicy::default();
        assert_eq!(
            (
                policy.days(Kind::Http),
                policy.days(Kind::Application),
                policy.days(Kind::Error)
            ),
            (Some(14), Some(30), Some(30))
        );
        let only = RetentionPolicy::only(Kind::Http, 3);
        assert_eq!(
            (only.days(Kind::Http), only.days(Kind::Error), only.metrics_days),
            (Some(3), None, None)
        );
        assert_eq!(RetentionPolicy::all_kinds(5).days(Kind::Application), Some(5));
    }
}
