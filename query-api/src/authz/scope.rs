//! The data scope of a signed-in user: which regions and environments of logs they may see.
//!
//! Regions come from the user (`regions` on create and update; empty means all), environments from
//! the role (`developer` is limited to `development`). Log endpoints never trust the `region` a client
//! passes: they ask the scope for the effective list ([`Scope::regions_for`]), which is the
//! intersection of what was asked and what is allowed, so a CN ops user who asks for `US` gets an
//! empty answer and one who asks for nothing gets CN (the log API: "即使不传 region，也只能查询 CN 的日志").
//! Single-record endpoints (trace, detail) check each record with [`Scope::allows`].

use owl_model::LogRecord;
use serde::Serialize;

/// Regions and environments a user may read; `None` means unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Allowed regions (upper-case codes), or `None` for all.
    pub regions: Option<Vec<String>>,
    /// Allowed environments (canonical names), or `None` for all.
    pub environments: Option<Vec<String>>,
}

/// Canonical form of a region code: upper case, trimmed.
pub fn normalise_region(region: &str) -> String {
    region.trim().to_ascii_uppercase()
}

/// Canonical form of an environment name: lower case, with the common short forms spelled out.
pub fn normalise_environment(environment: &str) -> String {
    let lower = environment.trim().to_ascii_lowercase();
    match lower.as_str() {
        "dev" | "develop" => "development".to_string(),
        "prod" | "prd" => "production".to_string(),
        "stage" | "stg" => "staging".to_string(),
        "test" | "testing" | "qa" => "test".to_string(),
        _ => lower,
    }
}

fn restrict(
    allowed: &Option<Vec<String>>,
    requested: Option<&[String]>,
    normalise: fn(&str) -> String,
) -> Option<Vec<String>> {
    let requested: Option<Vec<String>> =
        requested.map(|r| r.iter().map(|s| normalise(s)).filter(|s| !s.is_empty()).collect());
    match (allowed, requested) {
        (None, None) => None,
        (None, Some(requested)) if requested.is_empty() => None,
        (None, Some(requested)) => Some(requested),
        (Some(allowed), None) => Some(allowed.clone()),
        (Some(allowed), Some(requested)) if requested.is_empty() => Some(allowed.clone()),
        (Some(allowed), Some(requested)) => {
            Some(requested.into_iter().filter(|r| allowed.contains(r)).collect())
        }
    }
}

impl Scope {
    /// A scope from the stored lists (empty lists mean unrestricted). Blank entries, which no
    /// writer accepts but a hand-edited row could hold, are dropped after the list was seen to be
    /// a restriction: `[""]` sees nothing rather than everything (the index ignores empty values).
    pub fn new(regions: &[String], environments: &[String]) -> Scope {
        let regions = (!regions.is_empty()).then(|| {
            regions
                .iter()
                .map(|r| normalise_region(r))
                .filter(|r| !r.is_empty())
                .collect()
        });
        let environments = (!environments.is_empty()).then(|| {
            environments
                .iter()
                .map(|e| normalise_environment(e))
                .filter(|e| !e.is_empty())
                .collect()
        });
        Scope {
            regions,
            environments,
        }
    }

    /// Whether the scope restricts nothing.
    pub fn is_unrestricted(&self) -> bool {
        self.regions.is_none() && self.environments.is_none()
    }

    /// The regions a query may touch given the regions the client asked for (`None` or empty: no
    /// preference). `None` means every region; `Some(empty)` means nothing may be returned.
    pub fn regions_for(&self, requested: Option<&[String]>) -> Option<Vec<String>> {
        restrict(&self.regions, requested, normalise_region)
    }

    /// The environments a query may touch, as [`Scope::regions_for`].
    pub fn environments_for(&self, requested: Option<&[String]>) -> Option<Vec<String>> {
        restrict(&self.environments, requested, normalise_environment)
    }

    /// Whether a record with this region and environment may be shown. A record without a region or
    /// environment is outside any restriction on it: a restricted user sees only what is labelled.
    pub fn allows(&self, region: Option<&str>, environment: Option<&str>) -> bool {
        let region_ok = match &self.regions {
            None => true,
            Some(allowed) => region.is_some_and(|r| allowed.contains(&normalise_region(r))),
        };
        let environment_ok = match &self.environments {
            None => true,
            Some(allowed) => environment.is_some_and(|e| allowed.contains(&normalise_environment(e))),
        };
        region_ok && environment_ok
    }

    /// Whether a record may be shown.
    pub fn allows_record(&self, record: &LogRecord) -> bool {
        self.allows(record.service.region.as_deref(), record.environment.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_blank_scope_sees_nothing() {
        for blank in [strings(&[""]), strings(&["  "]), strings(&["", " "])] {
            let scope = Scope::new(&blank, &blank);
            assert_eq!(scope.regions_for(None), Some(vec![]));
            assert_eq!(scope.regions_for(Some(&strings(&["CN"]))), Some(vec![]));
            assert_eq!(scope.environments_for(None), Some(vec![]));
            assert!(!scope.is_unrestricted());
            assert!(!scope.allows(Some("CN"), Some("production")));
            assert!(!scope.allows(Some(""), Some("")));
            assert!(!scope.allows(None, None));
            let mut filter = owl_index::LogFilter::default();
            assert!(!crate::logs::params::apply_scope(&mut filter, &scope, &[]));
        }
        let mixed = Scope::new(&strings(&["", "cn"]), &[]);
        assert_eq!(mixed.regions_for(None), Some(strings(&["CN"])));
    }

    #[test]
    fn cn_ops_only_ever_sees_cn() {
        let scope = Scope::new(&strings(&["CN"]), &[]);
        assert_eq!(scope.regions_for(None), Some(strings(&["CN"])));
        assert_eq!(scope.regions_for(Some(&strings(&["US"]))), Some(vec![]));
        assert_eq!(
            scope.regions_for(Some(&strings(&["cn", "US"]))),
            Some(strings(&["CN"]))
        );
        assert_eq!(scope.regions_for(Some(&[])), Some(strings(&["CN"])));
        assert!(scope.allows(Some("CN"), None));
        assert!(scope.allows(Some("cn"), Some("production")));
        assert!(!scope.allows(Some("US"), None));
        assert!(
            !scope.allows(None, None),
            "unlabelled records are outside a region restriction"
        );
    }

    #[test]
    fn unrestricted_admin_passes_the_request_through() {
        let scope = Scope::new(&[], &[]);
        assert!(scope.is_unrestricted());
        assert_eq!(scope.regions_for(None), None);
        assert_eq!(scope.regions_for(Some(&strings(&["us"]))), Some(strings(&["US"])));
        assert!(scope.allows(None, None));
    }

    #[test]
    fn developer_sees_development_only() {
        let scope = Scope::new(&[], &strings(&["development"]));
        assert_eq!(scope.environments_for(None), Some(strings(&["development"])));
        assert_eq!(scope.environments_for(Some(&strings(&["prod"]))), Some(vec![]));
        assert!(scope.allows(Some("US"), Some("dev")));
        assert!(!scope.allows(Some("US"), Some("production")));
        assert!(!scope.allows(Some("US"), None));
    }

    #[test]
    fn record_check_uses_service_region_and_environment() {
        let mut record = LogRecord::from_json_slice(
            br#"{"@timestamp":"2025-12-07T10:30:00.123Z","level":"INFO","message":"m","service":{"name":"Form","region":"CN"}}"#,
            chrono::Utc::now(),
        )
        .unwrap();
        let cn_dev = Scope::new(&strings(&["CN"]), &strings(&["development"]));
        assert!(!cn_dev.allows_record(&record));
        record.environment = Some("development".into());
        assert!(cn_dev.allows_record(&record));
        record.service.region = Some("UAE".into());
        assert!(!cn_dev.allows_record(&record));
    }
}
