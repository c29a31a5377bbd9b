//! Masking of sensitive values before a record is stored or leaves the node.
//!
//! 003 promises that logs are masked at write time, so the agent masks before shipping and the
//! collector masks records that arrive from elsewhere, with this one implementation.
//!
//! Two families of rules:
//! - by key: the value of a sensitive key (`password`, `token`, `authorization`, ...) in structured
//!   fields (`extra`) and in `key=value` / `"key": "value"` text inside messages and URLs;
//! - by shape: bearer tokens, JWTs, Chinese resident ID numbers (18 digits, check digit verified)
//!   and payment card numbers (13 to 19 digits, Luhn verified). Verifying the check digit keeps
//!   order numbers and timestamps readable.

use std::borrow::Cow;

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::LogRecord;

/// What a masked value becomes.
pub const REDACTED: &str = "***REDACTED***";

/// The configurable masking rules (the `[masking]` section of the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingRules {
    /// Whether masking runs at all.
    pub enabled: bool,
    /// Keys whose values are always masked (matched case-insensitively, `-` and `_` alike).
    pub keys: Vec<String>,
    /// Mask `Bearer ...` tokens.
    pub bearer_tokens: bool,
    /// Mask JSON Web Tokens.
    pub jwt: bool,
    /// Mask Chinese resident ID numbers (check digit verified).
    pub chinese_id: bool,
    /// Mask payment card numbers (Luhn verified).
    pub card_numbers: bool,
    /// Extra regular expressions whose matches are masked.
    pub patterns: Vec<String>,
}

/// The default sensitive keys.
pub fn default_sensitive_keys() -> Vec<String> {
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "authorization",
        "api_key",
        "apikey",
        "x-api-key",
        "cookie",
        "set-cookie",
        "private_key",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Default for MaskingRules {
    fn default() -> Self {
        MaskingRules {
            enabled: true,
            keys: default_sensitive_keys(),
            bearer_tokens: true,
            jwt: true,
            chinese_id: true,
            card_numbers: true,
            patterns: Vec::new(),
        }
    }
}

/// A masking rule that could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// A custom pattern is not a valid regular expression.
    #[error("masking.patterns[{index}]: `{pattern}` is not a valid regular expression: {source}")]
    BadPattern {
        /// Position in `patterns`.
        index: usize,
        /// The pattern.
        pattern: String,
        /// Why it failed.
        source: regex::Error,
    },
    /// A key is empty or has characters that cannot be part of a key.
    #[error("masking.keys[{index}]: `{key}` must be non-empty letters, digits, `-` or `_`")]
    BadKey {
        /// Position in `keys`.
        index: usize,
        /// The key.
        key: String,
    },
}

/// Compiled masking rules.
#[derive(Debug, Clone)]
pub struct Masker {
    enabled: bool,
    keys: Vec<String>,
    key_value: Option<Regex>,
    bearer: Option<Regex>,
    jwt: Option<Regex>,
    digits: Option<Regex>,
    chinese_id: bool,
    card_numbers: bool,
    custom: Vec<Regex>,
}

fn normalise_key(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

impl Masker {
    /// Compiles the rules, reporting the first bad key or pattern.
    pub fn new(rules: &MaskingRules) -> Result<Masker, MaskError> {
        for (index, key) in rules.keys.iter().enumerate() {
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(MaskError::BadKey {
                    index,
                    key: key.clone(),
                });
            }
        }
        let keys: Vec<String> = rules.keys.iter().map(|k| normalise_key(k)).collect();
        let key_value = if keys.is_empty() {
            None
        } else {
            let alternation = rules
                .keys
                .iter()
                .map(|k| regex::escape(k).replace("\\-", "[-_]").replace('_', "[-_]"))
                .collect::<Vec<_>>()
                .join("|");
            // key, then `=`, `:` or `": "`, then the value up to a delimiter. The key must not be
            // the tail of a longer word (`tokenizer=` is not a token).
            let pattern = format!(
                r#"(?i)(^|[^A-Za-z0-9_])((?:{alternation})["']?\s*[:=]\s*["']?)(bearer\s+)?([^\s"'&,;}}\]]+)"#
            );
            Some(Regex::new(&pattern).expect("key alternation is built from validated keys"))
        };
        let bearer = rules
            .bearer_tokens
            .then(|| Regex::new(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*").expect("static regex"));
        let jwt = rules.jwt.then(|| {
            Regex::new(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*").expect("static regex")
        });
        let digits = (rules.chinese_id || rules.card_numbers)
            .then(|| Regex::new(r"(^|[^0-9A-Za-z])(\d(?:[ -]?\d){12,18}[0-9Xx]?)").expect("static regex"));
        let mut custom = Vec::with_capacity(rules.patterns.len());
        for (index, pattern) in rules.patterns.iter().enumerate() {
            let regex = Regex::new(pattern).map_err(|source| MaskError::BadPattern {
                index,
                pattern: pattern.clone(),
                source,
            })?;
            custom.push(regex);
        }
        Ok(Masker {
            enabled: rules.enabled,
            keys,
            key_value,
            bearer,
            jwt,
            digits,
            chinese_id: rules.chinese_id,
            card_numbers: rules.card_numbers,
            custom,
        })
    }

    /// Whether a structured key is sensitive.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        // Compared in place rather than normalised into a new string: this runs for every key
        // of every structured record.
        let normalised = |b: u8| if b == b'-' { b'_' } else { b.to_ascii_lowercase() };
        self.keys
            .iter()
            .any(|k| k.len() == key.len() && k.bytes().zip(key.bytes()).all(|(a, b)| a == normalised(b)))
    }

    /// Masks sensitive values inside free text.
    pub fn mask_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.enabled || text.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = Cow::Borrowed(text);
        if let Some(re) = &self.key_value
            && re.is_match(&out)
        {
            let replaced = re
                .replace_all(&out, |c: &Captures| {
                    let bearer = c.get(3).map_or("", |m| m.as_str());
                    format!("{}{}{}{}", &c[1], &c[2], bearer, REDACTED)
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
        if let Some(re) = &self.bearer
            && re.is_match(&out)
        {
            let replaced = re.replace_all(&out, format!("$1 {REDACTED}")).into_owned();
            out = Cow::Owned(replaced);
        }
        if let Some(re) = &self.jwt
            && re.is_match(&out)
        {
            let replaced = re.replace_all(&out, REDACTED).into_owned();
            out = Cow::Owned(replaced);
        }
        if let Some(re) = &self.digits
            && re.is_match(&out)
        {
            let replaced = re
                .replace_all(&out, |c: &Captures| {
                    let candidate = &c[2];
                    if self.is_sensitive_number(candidate) {
                        format!("{}{}", &c[1], REDACTED)
                    } else {
                        c[0].to_string()
                    }
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
        for re in &self.custom {
            if re.is_match(&out) {
                let replaced = re.replace_all(&out, REDACTED).into_owned();
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    fn is_sensitive_number(&self, candidate: &str) -> bool {
        let compact: String = candidate.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        (self.chinese_id && is_chinese_id(&compact)) || (self.card_numbers && is_card_number(&compact))
    }

    /// Masks a JSON value in place: values under sensitive keys entirely, strings by text rules.
    /// Returns whether anything changed.
    pub fn mask_value(&self, value: &mut Value) -> bool {
        if !self.enabled {
            return false;
        }
        match value {
            Value::String(s) => mask_string(self, s),
            Value::Array(items) => items.iter_mut().fold(false, |acc, v| self.mask_value(v) | acc),
            Value::Object(map) => self.mask_map(map),
            _ => false,
        }
    }

    fn mask_map(&self, map: &mut Map<String, Value>) -> bool {
        let mut changed = false;
        for (key, value) in map.iter_mut() {
            if self.is_sensitive_key(key) && !value.is_null() {
                if value.as_str() != Some(REDACTED) {
                    *value = Value::String(REDACTED.to_string());
                    changed = true;
                }
            } else {
                changed |= self.mask_value(value);
            }
        }
        changed
    }

    /// Masks every free-text and structured field of a record. Returns whether anything changed.
    pub fn mask_record(&self, record: &mut LogRecord) -> bool {
        if !self.enabled {
            return false;
        }
        let mut changed = mask_string(self, &mut record.message);
        if let Some(error) = &mut record.error {
            changed |= mask_opt(self, &mut error.message);
            changed |= mask_opt(self, &mut error.stack);
        }
        if let Some(http) = &mut record.http {
            changed |= mask_opt(self, &mut http.url);
        }
        if let Some(client) = &mut record.client {
            changed |= mask_opt(self, &mut client.user_agent);
        }
        changed |= mask_opt(self, &mut record.exception);
        if let Some(extra) = &mut record.extra {
            changed |= self.mask_map(extra);
        }
        changed
    }
}

fn mask_string(masker: &Masker, s: &mut String) -> bool {
    match masker.mask_text(s) {
        Cow::Borrowed(_) => false,
        Cow::Owned(masked) => {
            *s = masked;
            true
        }
    }
}

fn mask_opt(masker: &Masker, s: &mut Option<String>) -> bool {
    s.as_mut().is_some_and(|s| mask_string(masker, s))
}

/// Whether an 18-character string is a Chinese resident ID number with a valid check digit
/// (GB 11643-1999: weights 2^(17-i) mod 11, check characters `10X98765432`).
pub fn is_chinese_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = bytes[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let expected = CHECK[(sum % 11) as usize];
    bytes[17].to_ascii_uppercase() == expected
}

/// Whether a digit string of 13 to 19 digits passes the Luhn check.
pub fn is_card_number(s: &str) -> bool {
    let bytes = s.as_bytes();
    if !(13..=19).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // All-same digits (000000...) pass Luhn but are never cards.
    if bytes.iter().all(|b| *b == bytes[0]) {
        return false;
    }
    let sum: u32 = bytes
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker::new(&MaskingRules::default()).unwrap()
    }

    #[test]
    fn key_value_text_is_masked() {
        let m = masker();
        assert_eq!(
            m.mask_text("login password=hunter2 ok"),
            "login password=***REDACTED*** ok"
        );
        assert_eq!(
            m.mask_text(r#"{"password": "hunter2", "user": "bob"}"#),
            r#"{"password": "***REDACTED***", "user": "bob"}"#
        );
        assert_eq!(
            m.mask_text("GET /cb?access_token=abc123&x=1"),
            "GET /cb?access_token=***REDACTED***&x=1"
        );
        assert_eq!(m.mask_text("api-key: k-123"), "api-key: ***REDACTED***");
        assert_eq!(m.mask_text("Cookie: sid=abc"), "Cookie: ***REDACTED***");
        assert_eq!(
            m.mask_text("secret=s passwd=p refresh_token=r"),
            "secret=***REDACTED*** passwd=***REDACTED*** refresh_token=***REDACTED***"
        );
        // A key that is only the tail of a longer word is not a key.
        assert_eq!(m.mask_text("mytokenizer=fast"), "mytokenizer=fast");
    }

    #[test]
    fn authorization_header_keeps_its_scheme() {
        let m = masker();
        assert_eq!(
            m.mask_text("Authorization: Bearer abcdefghijklmnop"),
            "Authorization: Bearer ***REDACTED***"
        );
        assert_eq!(
            m.mask_text("sent bearer abcdefghijkl.mnop"),
            "sent bearer ***REDACTED***"
        );
    }

    #[test]
    fn jwts_are_masked() {
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(
            masker().mask_text(&format!("token {jwt} used")),
            "token ***REDACTED*** used"
        );
    }

    #[test]
    fn chinese_ids_are_masked_only_with_a_valid_check_digit() {
        let m = masker();
        assert!(is_chinese_id("11010519491231002X"));
        assert!(is_chinese_id("110101199003074514"));
        assert_eq!(
            m.mask_text("身份证110101199003074514已登记"),
            "身份证***REDACTED***已登记"
        );
        assert_eq!(m.mask_text("id 11010519491231002x"), "id ***REDACTED***");
        // Wrong check digit: an order number, left alone.
        assert_eq!(
            m.mask_text("order 110101199003074515"),
            "order 110101199003074515"
        );
    }

    #[test]
    fn card_numbers_are_masked_only_when_luhn_valid() {
        let m = masker();
        assert_eq!(
            m.mask_text("card 4111 1111 1111 1111 charged"),
            "card ***REDACTED*** charged"
        );
        assert_eq!(m.mask_text("card 4111-1111-1111-1111"), "card ***REDACTED***");
        assert_eq!(m.mask_text("card 5500005555555559"), "card ***REDACTED***");
        assert_eq!(m.mask_text("ts 1733580000123 ok"), "ts 1733580000123 ok");
        assert_eq!(m.mask_text("n 4111111111111112"), "n 4111111111111112");
    }

    #[test]
    fn structured_fields_are_masked_by_key() {
        let m = masker();
        let mut value = serde_json::json!({
            "user": "bob",
            "Password": "x",
            "nested": {"api_key": "k", "note": "Bearer abcdefghijk"},
            "list": [{"token": "t"}],
        });
        assert!(m.mask_value(&mut value));
        assert_eq!(value["Password"], REDACTED);
        assert_eq!(value["nested"]["api_key"], REDACTED);
        assert_eq!(value["nested"]["note"], "Bearer ***REDACTED***");
        assert_eq!(value["list"][0]["token"], REDACTED);
        assert_eq!(value["user"], "bob");
    }

    #[test]
    fn records_are_masked_everywhere() {
        let m = masker();
        let mut record = LogRecord::from_json_slice(
            br#"{"message":"login password=p1","http":{"url":"/x?token=abc"},
                 "error":{"message":"bad secret=s"},"exception":"card 4111111111111111",
                 "session_cookie":"c","cookie":"sid=1"}"#,
            chrono::Utc::now(),
        )
        .unwrap();
        assert!(m.mask_record(&mut record));
        assert_eq!(record.message, "login password=***REDACTED***");
        assert_eq!(record.http.unwrap().url.unwrap(), "/x?token=***REDACTED***");
        assert_eq!(
            record.error.unwrap().message.unwrap(),
            "bad secret=***REDACTED***"
        );
        assert_eq!(record.exception.unwrap(), "card ***REDACTED***");
        let extra = record.extra.unwrap();
        assert_eq!(extra["cookie"], REDACTED);
        assert_eq!(extra["session_cookie"], "c");
    }

    #[test]
    fn rules_are_configurable() {
        let rules = MaskingRules {
            keys: vec!["pin".into()],
            card_numbers: false,
            patterns: vec![r"EMP-\d{4}".into()],
            ..MaskingRules::default()
        };
        let m = Masker::new(&rules).unwrap();
        assert_eq!(
            m.mask_text("pin=1234 password=x"),
            "pin=***REDACTED*** password=x"
        );
        assert_eq!(m.mask_text("4111111111111111"), "4111111111111111");
        assert_eq!(m.mask_text("by EMP-0042"), "by ***REDACTED***");
        let disabled = Masker::new(&MaskingRules {
            enabled: false,
            ..MaskingRules::default()
        })
        .unwrap();
        assert_eq!(disabled.mask_text("password=x"), "password=x");
    }

    #[test]
    fn bad_rules_name_the_key() {
        let err = Masker::new(&MaskingRules {
            patterns: vec!["(".into()],
            ..MaskingRules::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("masking.patterns[0]"), "{err}");
        let err = Masker::new(&MaskingRules {
            keys: vec!["a b".into()],
            ..MaskingRules::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("masking.keys[0]"), "{err}");
    }

    #[test]
    fn sensitive_keys_ignore_case_and_dash_or_underscore() {
        let m = masker();
        for key in [
            "password",
            "PassWord",
            "x-api-key",
            "X_API_KEY",
            "x-api_key",
            "Set-Cookie",
        ] {
            assert!(m.is_sensitive_key(key), "{key}");
        }
        for key in ["passwords", "pass", "", "tokenizer", "x-api-keys", "pässword"] {
            assert!(!m.is_sensitive_key(key), "{key}");
        }
    }

    proptest::proptest! {
        #[test]
        fn masking_never_panics(text in ".{0,200}") {
            let _ = masker().mask_text(&text);
        }

        #[test]
        fn sensitive_keys_as_normalised(key in "(?i)(x|api|key|token|pass|word|cookie|set|é|[-_]){0,5}") {
            let m = masker();
            proptest::prop_assert_eq!(m.is_sensitive_key(&key), m.keys.contains(&normalise_key(&key)));
        }
    }
}
