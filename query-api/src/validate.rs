//! Field validation that reports every problem of a request at once.

use crate::envelope::{Failure, FieldError};

/// How many pages of `size` hold `total` items.
pub fn page_count(total: i64, size: i64) -> i64 {
    if total <= 0 || size <= 0 {
        0
    } else {
        (total + size - 1) / size
    }
}

/// Collects field errors.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

/// Characters allowed in codes (user, organization, role codes).
fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')
}

impl Validator {
    /// An empty collector.
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Adds an error.
    pub fn error(&mut self, field: &str, constraint: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, constraint, message));
    }

    /// Adds a prepared error.
    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// Adds an error unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, constraint: &str, message: impl Into<String>) {
        if !ok {
            self.error(field, constraint, message);
        }
    }

    /// A required, non-blank text of at most `max` characters; returns it trimmed.
    pub fn required(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        match value.map(str::trim) {
            None | Some("") => {
                self.error(field, "required", format!("{field} 不能为空"));
                None
            }
            Some(text) => self.length(field, text, max).then(|| text.to_string()),
        }
    }

    /// An optional text of at most `max` characters; returns it trimmed.
    pub fn optional(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let text = value?.trim();
        self.length(field, text, max).then(|| text.to_string())
    }

    fn length(&mut self, field: &str, text: &str, max: usize) -> bool {
        let ok = text.chars().count() <= max;
        self.check(ok, field, "length", format!("{field} 最多 {max} 个字符"));
        ok
    }

    /// A required code: letters, digits, `_`, `-`, `.`, `@`, at most `max` characters.
    pub fn code(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let code = self.required(field, value, max)?;
        if code.chars().all(is_code_char) {
            Some(code)
        } else {
            self.error(field, "format", format!("{field} 只能包含字母、数字和 _ - . @"));
            None
        }
    }

    /// A status: 0 or 1.
    pub fn status(&mut self, field: &str, value: Option<i64>) -> Option<i64> {
        let status = value?;
        self.check(
            matches!(status, 0 | 1),
            field,
            "enum",
            format!("{field} 只能是 0（禁用）或 1（启用）"),
        );
        Some(status)
    }

    /// A list of region codes (letters and digits, at most 16), upper-cased.
    pub fn regions(&mut self, field: &str, value: Option<&[String]>) -> Option<Vec<String>> {
        let regions = value?;
        let mut out = Vec::with_capacity(regions.len());
        for (i, region) in regions.iter().enumerate() {
            let region = crate::authz::scope::normalise_region(region);
            if region.is_empty() || region.len() > 16 || !region.chars().all(|c| c.is_ascii_alphanumeric()) {
                self.error(
                    &format!("{field}[{i}]"),
                    "format",
                    "区域代码只能包含字母和数字，例如 CN、US、UAE",
                );
            } else if !out.contains(&region) {
                out.push(region);
            }
        }
        Some(out)
    }

    /// A list of environment names (letters, digits, `_`, `-`, at most 32), canonicalised.
    pub fn environments(&mut self, field: &str, value: Option<&[String]>) -> Option<Vec<String>> {
        let environments = value?;
        let mut out = Vec::with_capacity(environments.len());
        for (i, environment) in environments.iter().enumerate() {
            let environment = crate::authz::scope::normalise_environment(environment);
            let ok = !environment.is_empty()
                && environment.len() <= 32
                && environment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                self.error(
                    &format!("{field}[{i}]"),
                    "format",
                    "环境名只能包含字母、数字、_ 和 -，例如 development",
                );
            } else if !out.contains(&environment) {
                out.push(environment);
            }
        }
        Some(out)
    }

    /// An integer within bounds.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) -> bool {
        let ok = (min..=max).contains(&value);
        self.check(ok, field, "range", format!("{field} 需在 {min} 到 {max} 之间"));
        ok
    }

    /// Whether no error was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok` when nothing was found, else the failure listing every error.
    pub fn finish(self) -> Result<(), Failure> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Failure::invalid(self.errors))
        }
    }

    /// [`Validator::finish`] for request parameters: 400 in every family, also the platform API's,
    /// whose 请求参数错误 is a 400 (its 422 is for a body that fails validation).
    pub fn finish_parameters(self) -> Result<(), Failure> {
        self.finish().map_err(|failure| Failure {
            kind: crate::envelope::FailureKind::BadRequest,
            ..failure
        })
    }
}

/// The admin API's pagination: `page` from 1, `page_size` 1 to 100 (default 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Page number.
    pub page: i64,
    /// Page size.
    pub page_size: i64,
}

/// The largest page the admin API allows.
pub const MAX_PAGE_SIZE: i64 = 100;

impl Page {
    /// Validates the parameters.
    pub fn new(validator: &mut Validator, page: Option<i64>, page_size: Option<i64>) -> Page {
        let page = page.unwrap_or(1);
        let page_size = page_size.unwrap_or(10);
        validator.range("page", page, 1, 1_000_000);
        validator.range("page_size", page_size, 1, MAX_PAGE_SIZE);
        Page {
            page: page.max(1),
            page_size: page_size.clamp(1, MAX_PAGE_SIZE),
        }
    }

    /// The admin API's pagination object.
    pub fn describe(&self, total: i64) -> serde_json::Value {
        let total_pages = page_count(total, self.page_size);
        serde_json::json!({
            "page": self.page,
            "page_size": self.page_size,
            "total": total,
            "total_pages": total_pages,
            "has_next": self.page < total_pages,
            "has_prev": self.page > 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error() {
        let mut v = Validator::new();
        assert_eq!(v.code("user_code", Some("a b"), 64), None);
        assert_eq!(v.required("username", Some("  "), 64), None);
        assert_eq!(
            v.regions("regions", Some(&["cn".into(), "u s".into()])),
            Some(vec!["CN".into()])
        );
        let failure = v.finish().unwrap_err();
        let fields: Vec<&str> = failure.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["user_code", "username", "regions[1]"]);
    }

    #[test]
    fn pagination_follows_the_admin_api() {
        let mut v = Validator::new();
        let page = Page::new(&mut v, None, None);
        assert!(v.is_ok());
        assert_eq!(
            page,
            Page {
                page: 1,
                page_size: 10
            }
        );
        let described = page.describe(1);
        assert_eq!(described["total_pages"], 1);
        assert_eq!(described["has_next"], false);
        assert_eq!(described["has_prev"], false);
        Page::new(&mut v, Some(0), Some(101));
        assert_eq!(v.finish().unwrap_err().errors.len(), 2);
    }
}
