//! Masking of sensitive values before a record is stored or leaves the node.
//!
//! The log API promises that logs are masked at write time, so the agent masks before shipping and the
//! collector masks records that arrive from elsewhere, with this one implementation.
//!
//! Two families of rules:
//! - by key: the value of a sensitive key (`password`, `token`, `authorization`, ...) in structured
//!   fields (`extra`) and in `key=value` / `"key": "value"` text inside messages and URLs. Keys
//!   match by word: a key is split into lowercase words on `_`, `-`, `.`, spaces and camelCase
//!   boundaries, and is sensitive when a configured key's words appear in it as a run
//!   (`db_password`, `newPassword` and `x-auth-token` are; `tokenizer` is not);
//! - by shape: bearer tokens, JWTs, Chinese resident ID numbers and payment card numbers. A number
//!   is only a card in a card shape (13 to 19 contiguous digits, or 4-4-4-4, 4-4-4-4-3, 4-6-5 or
//!   4-6-4 groups with one separator) with a known issuer prefix for its length and a valid Luhn
//!   digit; an ID number is exactly 17 digits and a check character with a real birth date. A
//!   number joined to letters, digits or other groups (`CN-1733580000000-a1b2`, a UUID, a hex id,
//!   a decimal) is part of an identifier and is kept, so order numbers and timestamps stay
//!   readable.

use std::borrow::Cow;

use chrono::Datelike;
use regex::Regex;
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
    /// Keys whose values are always masked, matched by word (see [`Masker::is_sensitive_key`]).
    pub keys: Vec<String>,
    /// Mask `Bearer ...` tokens.
    pub bearer_tokens: bool,
    /// Mask JSON Web Tokens.
    pub jwt: bool,
    /// Mask Chinese resident ID numbers (birth date and check digit verified).
    pub chinese_id: bool,
    /// Mask payment card numbers (card shapes, issuer prefix and Luhn verified).
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
        "credential",
        "credentials",
        // Alert channel webhook URLs authorise posting to a chat.
        "webhook",
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
    /// A key has no letter or digit, or has characters that cannot be part of a key.
    #[error("masking.keys[{index}]: `{key}` must be letters, digits, `-` or `_`, with a letter or digit")]
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
    /// The configured keys as their words joined by `_` (see [`key_words`]), sorted.
    keys: Vec<String>,
    /// For each first byte (see [`byte_class`]), the range of `keys` starting with it.
    keys_by_first: [(u16, u16); 36],
    /// One word of each configured key: text without any of them has no sensitive key.
    literals: Vec<String>,
    /// Finds any of `literals`, before the costlier key scan.
    key_hint: Option<Regex>,
    /// A key-like token and its `=`, `:` or `": "` separator.
    key_value: Option<Regex>,
    bearer: Option<Regex>,
    jwt: Option<Regex>,
    chinese_id: bool,
    card_numbers: bool,
    custom: Vec<Regex>,
}

/// Splits a key into words and writes them lowercase, joined by `_`, through `push`.
///
/// Words are separated by anything other than an ASCII letter or digit (`_`, `-`, `.`, spaces,
/// brackets, non-ASCII characters) and, with `camel`, by camelCase boundaries: before an
/// uppercase letter that follows a lowercase letter or a digit (`newPassword`, `oauth2Token`),
/// and before the last capital of a run that a lowercase letter follows (`APIKey` is `api_key`).
fn key_words(key: &[u8], camel: bool, mut push: impl FnMut(u8)) {
    let mut written = false;
    let mut separated = false;
    for (i, &b) in key.iter().enumerate() {
        if !b.is_ascii_alphanumeric() {
            separated = true;
            continue;
        }
        let boundary = camel && !separated && camel_boundary(key, i);
        if written && (separated || boundary) {
            push(b'_');
        }
        push(b.to_ascii_lowercase());
        written = true;
        separated = false;
    }
}

/// Whether a camelCase boundary comes before `key[i]`, a letter or digit (see [`key_words`]).
fn camel_boundary(key: &[u8], i: usize) -> bool {
    key[i].is_ascii_uppercase()
        && i > 0
        && (key[i - 1].is_ascii_lowercase()
            || key[i - 1].is_ascii_digit()
            || (key[i - 1].is_ascii_uppercase() && key.get(i + 1).is_some_and(u8::is_ascii_lowercase)))
}

/// Whether a word of `key` ends before `i`.
fn word_ends(key: &[u8], i: usize, camel: bool) -> bool {
    key.get(i)
        .is_none_or(|b| !b.is_ascii_alphanumeric() || (camel && camel_boundary(key, i)))
}

/// Whether the words `words` (lowercase, joined by `_`) are the words of `key` from `i`, a word
/// start, on: compared in place, with the boundaries of [`key_words`].
fn words_at(key: &[u8], mut i: usize, words: &[u8], camel: bool) -> bool {
    let mut word_start = i;
    for &w in words {
        if w == b'_' {
            if !word_ends(key, i, camel) {
                return false;
            }
            while key.get(i).is_some_and(|b| !b.is_ascii_alphanumeric()) {
                i += 1;
            }
            if i == key.len() {
                return false;
            }
            word_start = i;
        } else {
            if key.get(i).map(u8::to_ascii_lowercase) != Some(w)
                || (i > word_start && camel && camel_boundary(key, i))
            {
                return false;
            }
            i += 1;
        }
    }
    word_ends(key, i, camel)
}

/// A key as its lowercase words joined by `_` (`newPassword` is `new_password`).
fn normalise_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    key_words(key.as_bytes(), true, |b| out.push(char::from(b)));
    out
}

/// `0..36` for a lowercase ASCII letter or a digit: the first bytes of split words.
fn byte_class(b: u8) -> usize {
    match b {
        b'a'..=b'z' => usize::from(b - b'a'),
        _ => 26 + usize::from(b.wrapping_sub(b'0') % 10),
    }
}

impl Masker {
    /// Compiles the rules, reporting the first bad key or pattern.
    pub fn new(rules: &MaskingRules) -> Result<Masker, MaskError> {
        for (index, key) in rules.keys.iter().enumerate() {
            if !key.bytes().any(|b| b.is_ascii_alphanumeric())
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
        let mut keys: Vec<String> = rules.keys.iter().map(|k| normalise_key(k)).collect();
        let first = |k: &String| byte_class(k.as_bytes()[0]);
        keys.sort_by(|a, b| (first(a), a).cmp(&(first(b), b)));
        keys.dedup();
        let mut keys_by_first = [(0u16, 0u16); 36];
        for (class, range) in keys_by_first.iter_mut().enumerate() {
            let from = keys.partition_point(|k| first(k) < class);
            let to = keys.partition_point(|k| first(k) <= class);
            // Far more keys than any config holds would only make this index useless, not wrong.
            *range = (
                u16::try_from(from).unwrap_or(u16::MAX),
                u16::try_from(to).unwrap_or(u16::MAX),
            );
        }
        // The longest word of each key (the last of equals): any text in which the key matches
        // holds it, case aside.
        let mut literals: Vec<String> = keys
            .iter()
            .map(|k| k.split('_').max_by_key(|w| w.len()).unwrap_or(k).to_string())
            .collect();
        literals.sort();
        literals.dedup();
        let (key_hint, key_value) = if literals.is_empty() {
            (None, None)
        } else {
            let alternation = literals
                .iter()
                .map(|w| regex::escape(w))
                .collect::<Vec<_>>()
                .join("|");
            let hint = Regex::new(&format!("(?i){alternation}"))
                .expect("the alternation is built from validated keys");
            // A key-like token that does not continue a word (`_` and ASCII letters and digits),
            // then `=`, `:` or `": "`. Whether the token is sensitive is decided by word, as
            // for structured keys; the value is found by hand.
            let key_value = Regex::new(r#"(?-u:\b)([A-Za-z0-9_][A-Za-z0-9_.-]*)["']?\s*[:=]\s*["']?"#)
                .expect("static regex");
            (Some(hint), Some(key_value))
        };
        let bearer = rules
            .bearer_tokens
            .then(|| Regex::new(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*").expect("static regex"));
        let jwt = rules.jwt.then(|| {
            Regex::new(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*").expect("static regex")
        });
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
            keys_by_first,
            literals,
            key_hint,
            key_value,
            bearer,
            jwt,
            chinese_id: rules.chinese_id,
            card_numbers: rules.card_numbers,
            custom,
        })
    }

    /// Whether a key is sensitive: whether the words of a configured key appear as a run of its
    /// words, case aside (`db_password`, `newPassword`, `user.password` and `password_policy` for
    /// `password`; `apiKey` and `X-API-KEY` for `api_key`; not `tokenizer` or `passwords`).
    ///
    /// The one rule for structured fields, `key=value` text and the audit log.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        // This runs for every key of every structured record: compared in place, no copy. Split
        // by camelCase too (`newPassword`) and, when that splits a word, not (`PassWord` is
        // still `password`, whatever its case).
        let key = key.as_bytes();
        self.has_words(key, true)
            || ((1..key.len()).any(|i| key[i - 1].is_ascii_alphanumeric() && camel_boundary(key, i))
                && self.has_words(key, false))
    }

    /// Whether the words of a configured key are a run of the words of `key`. Only the keys that
    /// start with a word's first byte are compared at it.
    fn has_words(&self, key: &[u8], camel: bool) -> bool {
        (0..key.len()).any(|i| {
            let b = key[i];
            let starts = b.is_ascii_alphanumeric()
                && (i == 0 || !key[i - 1].is_ascii_alphanumeric() || (camel && camel_boundary(key, i)));
            if !starts {
                return false;
            }
            let (from, to) = self.keys_by_first[byte_class(b.to_ascii_lowercase())];
            let candidates = self
                .keys
                .get(usize::from(from)..usize::from(to))
                .unwrap_or(&self.keys);
            candidates.iter().any(|k| words_at(key, i, k.as_bytes(), camel))
        })
    }

    /// Lowercase words, one or more per configured key, at least one of which appears (ASCII
    /// case-insensitively) in any text whose key rule masks something: a prefilter may skip text
    /// that holds none of them.
    pub fn key_literals(&self) -> &[String] {
        &self.literals
    }

    /// Masks sensitive values inside free text.
    pub fn mask_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.enabled || text.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = match self.mask_key_values(text) {
            Some(masked) => Cow::Owned(masked),
            None => Cow::Borrowed(text),
        };
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
        if (self.chinese_id || self.card_numbers)
            && let Some(masked) = self.mask_numbers(&out)
        {
            out = Cow::Owned(masked);
        }
        for re in &self.custom {
            if re.is_match(&out) {
                let replaced = re.replace_all(&out, REDACTED).into_owned();
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// Masks the values of sensitive keys in `key=value` / `"key": "value"` text; `None` when
    /// there are none.
    fn mask_key_values(&self, text: &str) -> Option<String> {
        let (hint, re) = (self.key_hint.as_ref()?, self.key_value.as_ref()?);
        if !hint.is_match(text) {
            return None;
        }
        let mut out = String::new();
        let mut copied = 0;
        let mut at = 0;
        while let Some(c) = re.captures_at(text, at) {
            let (whole, key) = (c.get(0)?, c.get(1)?);
            // The value may itself be `key=value` (`x=password=p`): look on after the separator.
            at = whole.end();
            if !self.is_sensitive_key(key.as_str()) {
                continue;
            }
            let rest = &text[whole.end()..];
            let scheme = bearer_scheme_len(rest);
            let value = rest[scheme..]
                .find(|c: char| c.is_whitespace() || "\"'&,;}]".contains(c))
                .unwrap_or(rest.len() - scheme);
            if value == 0 {
                continue;
            }
            let value_start = whole.end() + scheme;
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_start + value;
            at = copied;
        }
        if copied == 0 {
            return None;
        }
        out.push_str(&text[copied..]);
        Some(out)
    }

    /// Masks card and ID numbers by shape; `None` when there are none.
    fn mask_numbers(&self, text: &str) -> Option<String> {
        let b = text.as_bytes();
        let mut out = String::new();
        let mut copied = 0;
        let mut i = 0;
        while i < b.len() {
            if !is_word_byte(b[i]) {
                i += 1;
                continue;
            }
            // A number starts a word and is not joined to a longer identifier.
            if b[i].is_ascii_digit()
                && starts_token(b, i)
                && let Some(end) = self.sensitive_number_at(text, i)
            {
                out.push_str(&text[copied..i]);
                out.push_str(REDACTED);
                copied = end;
                i = end;
                continue;
            }
            while i < b.len() && is_word_byte(b[i]) {
                i += 1;
            }
        }
        if copied == 0 {
            return None;
        }
        out.push_str(&text[copied..]);
        Some(out)
    }

    /// The end of a card or ID number starting at `start`, a digit that starts a token.
    fn sensitive_number_at(&self, text: &str, start: usize) -> Option<usize> {
        let b = text.as_bytes();
        let run = b[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        let end = start + run;
        if self.card_numbers
            && run == 4
            && let Some(end) = grouped_card_at(b, start)
        {
            return Some(end);
        }
        if self.chinese_id
            && run == 17
            && matches!(b.get(end), Some(b'X' | b'x'))
            && ends_token(b, end + 1)
            && is_chinese_id(&text[start..end + 1])
        {
            return Some(end + 1);
        }
        if !(13..=19).contains(&run) || !ends_token(b, end) {
            return None;
        }
        let digits = &text[start..end];
        ((self.chinese_id && run == 18 && is_chinese_id(digits))
            || (self.card_numbers && is_card_number(digits)))
        .then_some(end)
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

/// The length of a leading `Bearer ` scheme, kept in front of a masked value.
fn bearer_scheme_len(value: &str) -> usize {
    let b = value.as_bytes();
    if b.len() > 6 && b[..6].eq_ignore_ascii_case(b"bearer") && b[6].is_ascii_whitespace() {
        6 + b[6..].iter().take_while(|b| b.is_ascii_whitespace()).count()
    } else {
        0
    }
}

/// Letters, digits and `_`: what identifiers are made of. Other characters (CJK too) end a
/// number.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether a `-` or `.` at `at` joins two parts of one identifier (`CN-1733…-a1b2`, `v2.4111…`,
/// `4111….25`), given the byte on its other side.
fn joins(b: &[u8], at: usize, other: Option<usize>) -> bool {
    matches!(b.get(at), Some(b'-' | b'.'))
        && other
            .and_then(|o| b.get(o))
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether a number starting at `i` starts a token: not after a letter, digit or `_`, nor joined
/// to one by `-` or `.`.
fn starts_token(b: &[u8], i: usize) -> bool {
    i == 0 || (!is_word_byte(b[i - 1]) && !joins(b, i - 1, i.checked_sub(2)))
}

/// Whether a number ending before `end` ends its token.
fn ends_token(b: &[u8], end: usize) -> bool {
    b.get(end).is_none_or(|c| !is_word_byte(*c)) && !joins(b, end, Some(end + 1))
}

/// Card group shapes, longest first: 4-4-4-4-3 (19), 4-4-4-4 (16), 4-6-5 (Amex), 4-6-4 (Diners).
const CARD_GROUPS: [&[usize]; 4] = [&[4, 4, 4, 4, 3], &[4, 4, 4, 4], &[4, 6, 5], &[4, 6, 4]];

/// The end of a grouped card number (`4111 1111 1111 1111`, `3782-822463-10005`) starting at
/// `start`, a run of four digits. One separator throughout; the groups must not continue a
/// group run before them (`1234 4111 …`); digits after a space may follow (an expiry date, a
/// code), but not after a dash.
fn grouped_card_at(b: &[u8], start: usize) -> Option<usize> {
    let sep = *b.get(start + 4)?;
    if sep != b' ' && sep != b'-' {
        return None;
    }
    if sep == b' ' && start >= 2 && b[start - 1] == b' ' && b[start - 2].is_ascii_digit() {
        return None;
    }
    // The groups as (start, len), up to five.
    let mut groups = [(0usize, 0usize); 5];
    let mut count = 0;
    let mut at = start;
    while count < groups.len() {
        let len = b[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        groups[count] = (at, len);
        count += 1;
        at += len;
        if b.get(at) != Some(&sep) || !b.get(at + 1).is_some_and(u8::is_ascii_digit) {
            break;
        }
        at += 1;
    }
    for shape in CARD_GROUPS {
        if shape.len() > count || shape.iter().zip(&groups).any(|(want, (_, len))| want != len) {
            continue;
        }
        let (last, len) = groups[shape.len() - 1];
        let end = last + len;
        if !ends_token(b, end) {
            continue;
        }
        let mut digits = [0u8; 19];
        let mut n = 0;
        for &(at, len) in &groups[..shape.len()] {
            digits[n..n + len].copy_from_slice(&b[at..at + len]);
            n += len;
        }
        if std::str::from_utf8(&digits[..n]).is_ok_and(is_card_number) {
            return Some(end);
        }
    }
    None
}

/// Whether a string is a Chinese resident ID number (GB 11643-1999): exactly 17 digits and a
/// check character, a first (region) digit of 1 to 9, a birth date `YYYYMMDD` that exists between
/// 1900 and this year, and the ISO 7064 MOD 11-2 check character (weights 2^(17-i) mod 11, check
/// characters `10X98765432`, `x` taken for `X`).
pub fn is_chinese_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) || bytes[0] == b'0' {
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
    if bytes[17].to_ascii_uppercase() != expected {
        return false;
    }
    let number = |digits: &[u8]| digits.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0'));
    let (year, month, day) = (
        number(&bytes[6..10]),
        number(&bytes[10..12]),
        number(&bytes[12..14]),
    );
    let Ok(year) = i32::try_from(year) else {
        return false;
    };
    // The clock is read last, for the few numbers that get this far.
    (1900..=chrono::Utc::now().year()).contains(&year)
        && chrono::NaiveDate::from_ymd_opt(year, month, day).is_some()
}

/// An issuer's prefix range (`low..=high`, `digits` long) and its card lengths (bit `n` for `n`
/// digits).
struct Issuer {
    digits: u32,
    low: u32,
    high: u32,
    lengths: u32,
}

const fn lengths(min: u32, max: u32) -> u32 {
    (1 << (max + 1)) - (1 << min)
}

const fn issuer(digits: u32, low: u32, high: u32, lengths: u32) -> Issuer {
    Issuer {
        digits,
        low,
        high,
        lengths,
    }
}

/// Card issuers and their lengths (within 13 to 19 digits).
const ISSUERS: &[Issuer] = &[
    // Visa.
    issuer(1, 4, 4, 1 << 13 | 1 << 16 | 1 << 19),
    // Mastercard.
    issuer(2, 51, 55, lengths(16, 16)),
    issuer(4, 2221, 2720, lengths(16, 16)),
    // American Express.
    issuer(2, 34, 34, lengths(15, 15)),
    issuer(2, 37, 37, lengths(15, 15)),
    // Discover.
    issuer(4, 6011, 6011, lengths(16, 19)),
    issuer(3, 644, 649, lengths(16, 19)),
    issuer(2, 65, 65, lengths(16, 19)),
    // UnionPay.
    issuer(2, 62, 62, lengths(16, 19)),
    // JCB.
    issuer(4, 3528, 3589, lengths(16, 19)),
    // Diners Club.
    issuer(2, 36, 36, lengths(14, 16)),
    issuer(3, 300, 305, lengths(14, 16)),
    issuer(4, 3095, 3095, lengths(14, 16)),
    issuer(2, 38, 39, lengths(14, 16)),
    // Maestro.
    issuer(4, 5018, 5018, lengths(13, 19)),
    issuer(4, 5020, 5020, lengths(13, 19)),
    issuer(4, 5038, 5038, lengths(13, 19)),
    issuer(4, 5893, 5893, lengths(13, 19)),
    issuer(4, 6304, 6304, lengths(13, 19)),
    issuer(4, 6759, 6759, lengths(13, 19)),
    issuer(4, 6761, 6763, lengths(13, 19)),
    // Mir.
    issuer(4, 2200, 2204, lengths(16, 19)),
];

/// Whether a string of 13 to 19 digits is a payment card number: a known issuer prefix for its
/// length and a valid Luhn check digit.
pub fn is_card_number(s: &str) -> bool {
    let bytes = s.as_bytes();
    if !(13..=19).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // All-same digits (000000...) pass Luhn but are never cards.
    if bytes.iter().all(|b| *b == bytes[0]) {
        return false;
    }
    let prefix = |digits: u32| {
        bytes[..digits as usize]
            .iter()
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
    };
    let length = 1u32 << bytes.len();
    if !ISSUERS
        .iter()
        .any(|i| i.lengths & length != 0 && (i.low..=i.high).contains(&prefix(i.digits)))
    {
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
        // Keys match by word: a session cookie is a cookie.
        assert_eq!(extra["session_cookie"], REDACTED);
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

    #[test]
    fn sensitive_keys_match_by_word() {
        let m = masker();
        for key in [
            "db_password",
            "newPassword",
            "user.password",
            "x-auth-token",
            "X-Auth-Token",
            "session_token",
            "apiKey",
            "ApiKey",
            "APIKey",
            "apikey",
            "x-api-key",
            "x.api.key",
            "clientSecret",
            "AWS_SECRET_ACCESS_KEY",
            "privateKey",
            "ssh private key",
            "oauth2Token",
            "password_policy",
            "webhookUrl",
            "credentials",
            "db-credential",
            "headers[cookie]",
        ] {
            assert!(m.is_sensitive_key(key), "{key}");
        }
        for key in [
            "tokenizer",
            "passwordless_enabled",
            "max_tokens",
            "keyboard",
            "monkey_key",
            "api_version",
            "key",
            "author",
            "secretary",
            "webhooks2",
        ] {
            assert!(!m.is_sensitive_key(key), "{key}");
        }
    }

    #[test]
    fn default_keys_cover_the_audit_filter_by_word() {
        // The words query-api's audit filter treats as secrets.
        let m = masker();
        for part in [
            "password",
            "passwd",
            "pwd",
            "secret",
            "token",
            "authorization",
            "api_key",
            "apikey",
            "cookie",
            "private_key",
            "credential",
            "webhook",
        ] {
            let camel: String = part
                .split('_')
                .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
                .collect();
            for key in [
                part.to_string(),
                part.to_ascii_uppercase(),
                format!("my_{part}"),
                format!("my-{part}-value"),
                format!("my{camel}Value"),
                format!("alert.{part}"),
            ] {
                assert!(m.is_sensitive_key(&key), "{key}");
            }
        }
    }

    #[test]
    fn key_value_text_matches_keys_by_word() {
        let m = masker();
        for (text, masked) in [
            ("db_password=hunter2 ok", "db_password=***REDACTED*** ok"),
            (
                r#"{"newPassword": "x", "user": "bob"}"#,
                r#"{"newPassword": "***REDACTED***", "user": "bob"}"#,
            ),
            ("X-Auth-Token: abc123", "X-Auth-Token: ***REDACTED***"),
            (
                "AWS_SECRET_ACCESS_KEY=wJalrXUt",
                "AWS_SECRET_ACCESS_KEY=***REDACTED***",
            ),
            ("GET /v1?apiKey=k1&x=1", "GET /v1?apiKey=***REDACTED***&x=1"),
            ("clientSecret: s3", "clientSecret: ***REDACTED***"),
            ("user.password=p", "user.password=***REDACTED***"),
            ("run --password=hunter2", "run --password=***REDACTED***"),
            ("env __password=p", "env __password=***REDACTED***"),
            ("x=password=abc", "x=password=***REDACTED***"),
            (
                "webhookUrl=https://hooks.example.com/T0/B1/xyz sent",
                "webhookUrl=***REDACTED*** sent",
            ),
            ("session_token='t1'", "session_token='***REDACTED***'"),
            ("privateKey: k", "privateKey: ***REDACTED***"),
        ] {
            assert_eq!(m.mask_text(text), masked, "{text}");
        }
        for text in [
            "tokenizer=fast",
            "passwordless_enabled=true",
            "max_tokens=100",
            "monkey=1 key=2",
            "time: 12:30:00",
        ] {
            assert_eq!(m.mask_text(text), text);
        }
    }

    #[test]
    fn structured_keys_are_masked_by_word() {
        let m = masker();
        let mut value = serde_json::json!({
            "db_password": "p",
            "newPassword": "n",
            "headers": {"x-auth-token": "t", "Content-Type": "json"},
            "apiKey": "k",
            "tokenizer": "bpe",
        });
        assert!(m.mask_value(&mut value));
        assert_eq!(value["db_password"], REDACTED);
        assert_eq!(value["newPassword"], REDACTED);
        assert_eq!(value["headers"]["x-auth-token"], REDACTED);
        assert_eq!(value["headers"]["Content-Type"], "json");
        assert_eq!(value["apiKey"], REDACTED);
        assert_eq!(value["tokenizer"], "bpe");
    }

    #[test]
    fn numbers_outside_card_and_id_shapes_are_kept() {
        let m = masker();
        let id = |body: &str| format!("{body}{}", mod11_2(body));
        let texts = [
            // Luhn-valid, but no issuer starts with 1, 8 or 9.
            format!("order {} ok", with_luhn("100000000000")),
            format!("order {} ok", with_luhn("800000000000000000")),
            format!("n {}", with_luhn("911111111111111")),
            // Visa is 13, 16 or 19 digits, Amex 15, Mastercard 16.
            format!("n {}", with_luhn("4111111111111")),
            format!("n {}", with_luhn("371449635398431")),
            format!("n {}", with_luhn("55000055555555599")),
            // Separators must be consistent and in card groups.
            "n 4111 1111-1111 1111".to_string(),
            "n 41 11 11 11 11 11 11 11".to_string(),
            "n 4111-11111111-1111".to_string(),
            // Inside longer letter, digit or dash runs.
            "id a4111111111111111".to_string(),
            "id 4111111111111111f".to_string(),
            "id 41111111111111110000".to_string(),
            "id tx_4111111111111111".to_string(),
            "id CN-4111111111111111-a1b2c3d4".to_string(),
            "uuid 12345678-4111-1111-1111-111111111111".to_string(),
            "n 4111-1111-1111-1111-2222".to_string(),
            "n 1234 4111 1111 1111 1111".to_string(),
            "amount 4111111111111111.25".to_string(),
            // An ID number with a correct check digit but a birth date that does not exist
            // (1900 is no leap year), a first digit of 0, a year before 1900, a future year.
            format!("order {}", id("11010519900230451")),
            format!("order {}", id("11010519000229451")),
            format!("order {}", id("01010119900307451")),
            format!("order {}", id("11010118990307451")),
            format!("order {}", id("11010130010307451")),
            format!("order {}", id("11010119901307451")),
            format!("order {}", id("11010119900300451")),
        ];
        for text in &texts {
            assert_eq!(m.mask_text(text), *text);
        }
        assert!(is_chinese_id(&id("11010520000229002")), "2000 is a leap year");
        assert!(!is_chinese_id(&id("11010519000229002")), "1900 is not");
        assert!(!is_chinese_id("110101199003074514 "));
        for (valid, number) in [
            (true, "4111111111111111".to_string()),
            (true, "378282246310005".to_string()),
            (true, "6011111111111117".to_string()),
            (true, "3530111333300000".to_string()),
            (true, "30569309025904".to_string()),
            (true, "6200000000000005".to_string()),
            (true, "2223003122003222".to_string()),
            (true, "5555555555554444".to_string()),
            (false, with_luhn("100000000000")),
            (false, with_luhn("4111111111111")),
            (false, "4111 1111 1111 1111".to_string()),
        ] {
            assert_eq!(is_card_number(&number), valid, "{number}");
        }
    }

    #[test]
    fn card_numbers_followed_by_more_numbers_are_masked() {
        let m = masker();
        assert_eq!(
            m.mask_text("card 4111 1111 1111 1111 12/27"),
            "card ***REDACTED*** 12/27"
        );
        assert_eq!(m.mask_text("4111111111111111 123"), "***REDACTED*** 123");
        assert_eq!(m.mask_text("amex 3782 822463 10005."), "amex ***REDACTED***.");
        assert_eq!(m.mask_text("diners 3056-930902-5904"), "diners ***REDACTED***");
    }

    /// SplitMix64: a small deterministic generator for the corpora.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// A number in `low..=high`.
        fn range(&mut self, low: u64, high: u64) -> u64 {
            low + self.next() % (high - low + 1)
        }

        fn from(&mut self, alphabet: &[u8], n: usize) -> String {
            (0..n)
                .map(|_| char::from(alphabet[self.range(0, alphabet.len() as u64 - 1) as usize]))
                .collect()
        }

        fn digits(&mut self, n: usize) -> String {
            self.from(b"0123456789", n)
        }

        fn hex(&mut self, n: usize) -> String {
            self.from(b"0123456789abcdef", n)
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.range(0, items.len() as u64 - 1) as usize]
        }
    }

    /// `body` with its Luhn check digit appended.
    fn with_luhn(body: &str) -> String {
        let sum: u32 = body
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 0 {
                    (d * 2) / 10 + (d * 2) % 10
                } else {
                    d
                }
            })
            .sum();
        format!("{body}{}", (10 - sum % 10) % 10)
    }

    fn days_in_month(year: u64, month: u64) -> u64 {
        match month {
            2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// The ISO 7064 MOD 11-2 check character of 17 digits.
    fn mod11_2(body: &str) -> char {
        let sum: u64 = body
            .bytes()
            .enumerate()
            .map(|(i, b)| u64::from(b - b'0') * ((1u64 << (17 - i)) % 11))
            .sum();
        match (12 - sum % 11) % 11 {
            10 => 'X',
            d => char::from(b'0' + d as u8),
        }
    }

    /// An independent check of the ID number rules, for the corpora.
    fn chinese_id_valid(id: &str) -> bool {
        let b = id.as_bytes();
        if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) || b[0] == b'0' {
            return false;
        }
        let num = |r: std::ops::Range<usize>| id[r].parse::<u64>().unwrap();
        let (year, month, day) = (num(6..10), num(10..12), num(12..14));
        (1900..=2100).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && mod11_2(&id[..17]) == char::from(b[17]).to_ascii_uppercase()
    }

    fn chinese_id(rng: &mut Rng) -> String {
        let year = rng.range(1900, 2024);
        let month = rng.range(1, 12);
        let day = rng.range(1, days_in_month(year, month));
        let body = format!(
            "{}{}{year:04}{month:02}{day:02}{}",
            rng.range(1, 9),
            rng.digits(5),
            rng.digits(3)
        );
        let check = mod11_2(&body);
        format!("{body}{check}")
    }

    /// Issuer prefix ranges and card lengths.
    const ISSUERS: &[(&str, u64, u64, &[usize])] = &[
        ("visa", 4, 4, &[13, 16, 19]),
        ("mastercard", 51, 55, &[16]),
        ("mastercard", 2221, 2720, &[16]),
        ("amex", 34, 34, &[15]),
        ("amex", 37, 37, &[15]),
        ("discover", 6011, 6011, &[16, 17, 18, 19]),
        ("discover", 644, 649, &[16, 17, 18, 19]),
        ("discover", 65, 65, &[16, 17, 18, 19]),
        ("unionpay", 62, 62, &[16, 17, 18, 19]),
        ("jcb", 3528, 3589, &[16, 17, 18, 19]),
        ("diners", 36, 36, &[14, 15, 16]),
        ("diners", 300, 305, &[14, 15, 16]),
        ("diners", 38, 39, &[14, 15, 16]),
        ("maestro", 6759, 6759, &[13, 16, 19]),
        ("maestro", 5018, 5018, &[13, 16, 19]),
    ];

    /// Card numbers as people write them: contiguous, and grouped with spaces or dashes.
    fn card_spellings(number: &str) -> Vec<String> {
        let groups: &[usize] = match number.len() {
            14 => &[4, 6, 4],
            15 => &[4, 6, 5],
            16 => &[4, 4, 4, 4],
            19 => &[4, 4, 4, 4, 3],
            _ => &[],
        };
        let mut spellings = vec![number.to_string()];
        if !groups.is_empty() {
            for sep in [" ", "-"] {
                let mut at = 0;
                let mut parts = Vec::new();
                for g in groups {
                    parts.push(&number[at..at + g]);
                    at += g;
                }
                spellings.push(parts.join(sep));
            }
        }
        spellings
    }

    #[test]
    fn card_and_id_corpus_has_no_misses() {
        let m = masker();
        let mut rng = Rng(0x0c4d_2025);
        let templates = [
            "card @ paid",
            "@",
            "卡号@已支付",
            "pan=@&amount=12.50",
            r#"{"pan":"@","amount":1250}"#,
            "charged @.",
            "(card: @)",
            "payment failed for @\n  at Checkout.pay",
            "ID @, name 张三",
            "身份证号码：@",
        ];
        let mut numbers = Vec::new();
        for (_, low, high, lengths) in ISSUERS {
            for _ in 0..400 {
                let prefix = rng.range(*low, *high).to_string();
                let len = *rng.pick(lengths);
                let body = format!("{prefix}{}", rng.digits(len - 1 - prefix.len()));
                let number = with_luhn(&body);
                assert!(is_card_number(&number), "{number}");
                numbers.extend(card_spellings(&number));
            }
        }
        let cards = numbers.len();
        let mut with_x = 0;
        for _ in 0..4000 {
            let id = chinese_id(&mut rng);
            assert!(chinese_id_valid(&id), "{id}");
            assert!(is_chinese_id(&id), "{id}");
            if id.ends_with('X') {
                with_x += 1;
                numbers.push(id.to_ascii_lowercase());
            }
            numbers.push(id);
        }
        let mut misses = Vec::new();
        for (i, number) in numbers.iter().enumerate() {
            let template = templates[i % templates.len()];
            let text = template.replace('@', number);
            if m.mask_text(&text) != template.replace('@', REDACTED) {
                misses.push(text);
            }
        }
        assert!(
            misses.is_empty(),
            "{} of {} missed, e.g. {:?}",
            misses.len(),
            numbers.len(),
            &misses[..misses.len().min(10)]
        );
        assert!(
            cards >= 10_000 && numbers.len() - cards >= 4000 && with_x >= 250,
            "{cards} cards, {} IDs, {with_x} ending in X",
            numbers.len() - cards
        );
    }

    /// Luhn-valid digit runs that no issuer uses: prefixes outside every issuer range, and issuer
    /// prefixes at lengths the issuer does not use.
    const NO_ISSUER: &[(&str, &[usize])] = &[
        ("1", &[13, 14, 15, 16, 17, 18, 19]),
        ("7", &[13, 14, 15, 16, 17, 18, 19]),
        ("8", &[13, 14, 15, 16, 17, 18, 19]),
        ("9", &[13, 14, 15, 16, 17, 18, 19]),
        ("20", &[13, 14, 15, 16, 17, 18, 19]),
        ("21", &[13, 14, 15, 16, 17, 18, 19]),
        ("28", &[13, 14, 15, 16, 17, 18, 19]),
        ("31", &[13, 14, 15, 16, 17, 18, 19]),
        ("33", &[13, 14, 15, 16, 17, 18, 19]),
        ("359", &[13, 14, 15, 16, 17, 18, 19]),
        ("4", &[14, 15, 17, 18]),
        ("51", &[13, 14, 15, 17, 18, 19]),
        ("55", &[13, 14, 15, 17, 18, 19]),
        ("34", &[13, 14, 16, 17, 18, 19]),
        ("37", &[13, 14, 16, 17, 18, 19]),
        ("36", &[13, 17, 18, 19]),
        ("56", &[13, 14, 15, 16, 17, 18, 19]),
        ("59", &[13, 14, 15, 16, 17, 18, 19]),
        ("61", &[13, 14, 15, 16, 17, 18, 19]),
        ("62", &[13, 14, 15]),
        ("602", &[13, 14, 15, 16, 17, 18, 19]),
        ("640", &[13, 14, 15, 16, 17, 18, 19]),
        ("66", &[13, 14, 15, 16, 17, 18, 19]),
        ("69", &[13, 14, 15, 16, 17, 18, 19]),
    ];

    /// 13-digit epoch milliseconds between late 2001 and 2040.
    fn epoch_millis(rng: &mut Rng, luhn: bool) -> String {
        let ms = rng.range(1_000_000_000_000, 2_208_988_799_999).to_string();
        if luhn { with_luhn(&ms[..12]) } else { ms }
    }

    #[test]
    fn identifier_corpus_has_no_false_positives() {
        let m = masker();
        let mut rng = Rng(0x0041_2025);
        let mut ids: Vec<String> = Vec::new();
        for i in 0..4000 {
            ids.push(epoch_millis(&mut rng, i % 2 == 0));
        }
        for i in 0..1500 {
            let ms = epoch_millis(&mut rng, i % 2 == 0);
            let hex = rng.hex(8);
            ids.push(format!("CN-{ms}-{hex}"));
        }
        for i in 0..1500 {
            let ms = epoch_millis(&mut rng, i % 2 == 0);
            let hex = rng.hex(6);
            ids.push(format!("{ms}-{hex}"));
        }
        for _ in 0..1500 {
            let prefix = *rng.pick(&["ORD", "SO", "PO", "INV", "TX", "ord_", "INV-", "R"]);
            let (year, month, day) = (rng.range(2001, 2040), rng.range(1, 12), rng.range(1, 28));
            let tail = rng.range(3, 8) as usize;
            let seq = rng.digits(tail);
            ids.push(format!("{prefix}{year}{month:02}{day:02}{seq}"));
        }
        // Date-time stamps: yyyyMMddHHmmss and with milliseconds.
        for _ in 0..1000 {
            let (year, month, day) = (rng.range(2001, 2040), rng.range(1, 12), rng.range(1, 28));
            let (h, min, s, ms) = (
                rng.range(0, 23),
                rng.range(0, 59),
                rng.range(0, 59),
                rng.range(0, 999),
            );
            ids.push(format!("{year}{month:02}{day:02}{h:02}{min:02}{s:02}"));
            ids.push(format!("{year}{month:02}{day:02}{h:02}{min:02}{s:02}{ms:03}"));
        }
        let mut id_shaped = 0;
        for i in 0..4000 {
            let (prefix, lengths) = rng.pick(NO_ISSUER);
            let len = *rng.pick(lengths);
            let body = format!("{prefix}{}", rng.digits(len - prefix.len() - 1));
            // Mostly Luhn-valid: those are what the old rule masked.
            let number = if i % 4 == 3 {
                format!("{body}{}", rng.digits(1))
            } else {
                with_luhn(&body)
            };
            if chinese_id_valid(&number) {
                // A valid ID number shape is masked by design; not an identifier for this corpus.
                id_shaped += 1;
                continue;
            }
            ids.push(number);
        }
        for i in 0..1500 {
            let uuid = if i % 3 == 0 {
                // All-digit UUIDs: every group a digit run.
                let d = rng.digits(32);
                format!(
                    "{}-{}-{}-{}-{}",
                    &d[..8],
                    &d[8..12],
                    &d[12..16],
                    &d[16..20],
                    &d[20..]
                )
            } else {
                let h = rng.hex(32);
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            };
            ids.push(uuid);
        }
        for _ in 0..500 {
            let len = *rng.pick(&[16, 24, 32]);
            let mut hex = rng.hex(len);
            hex.replace_range(..1, "f");
            ids.push(hex);
        }
        // Card-valid digits inside longer letter, digit or dash runs.
        for _ in 0..1000 {
            let card = with_luhn(&format!("4{}", rng.digits(14)));
            let hex4 = rng.hex(4);
            let hex8 = rng.hex(8);
            let shapes = [
                format!("a{card}"),
                format!("{card}f"),
                format!("tx_{card}"),
                format!("9{card}"),
                format!("{card}0000"),
                format!("CN-{card}-{hex8}"),
                format!("{hex8}-{card}-{hex4}"),
                format!("{card}.25"),
                format!("v2.{card}"),
            ];
            ids.push(rng.pick(&shapes).clone());
        }
        for _ in 0..500 {
            let mobile = format!("1{}{}", rng.range(3, 9), rng.digits(9));
            ids.push(format!("+86{mobile}"));
            ids.push(format!("86-{mobile}"));
        }
        let templates = [
            "@",
            "order @ shipped",
            "GET /api/orders/@?x=1 200 12ms",
            r#"{"order_id":"@","status":"paid"}"#,
            "trace_id=@ span_id=ab12",
            "https://shop.example.com/o/@/items",
            "订单@已发货",
            "@ took 12 ms",
            "[@] retry 3",
            "ids @, 42",
        ];
        let mut false_positives = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let text = templates[i % templates.len()].replace('@', id);
            if m.mask_text(&text) != text {
                false_positives.push(text);
            }
        }
        assert!(
            false_positives.is_empty(),
            "{} of {} masked, e.g. {:?}",
            false_positives.len(),
            ids.len(),
            &false_positives[..false_positives.len().min(10)]
        );
        assert!(ids.len() >= 10_000 && id_shaped < 5, "{} {id_shaped}", ids.len());
    }

    /// Words spelled as snake_case, kebab-case, dot.case, camelCase, PascalCase or SCREAMING_CASE.
    fn spell(words: &[String], style: usize) -> String {
        let capitalised = |w: &String| w[..1].to_ascii_uppercase() + &w[1..];
        match style {
            0 => words.join("_"),
            1 => words.join("-"),
            2 => words.join("."),
            3 => words
                .iter()
                .enumerate()
                .map(|(i, w)| if i == 0 { w.clone() } else { capitalised(w) })
                .collect(),
            4 => words.iter().map(capitalised).collect(),
            _ => words.join("_").to_ascii_uppercase(),
        }
    }

    /// The word rule, written plainly: split into words (with and without camelCase boundaries)
    /// and look for each configured key's words as a window.
    fn reference_is_sensitive(m: &Masker, key: &str) -> bool {
        let split = |camel: bool| {
            let chars: Vec<char> = key.chars().collect();
            let mut words: Vec<String> = vec![String::new()];
            for (i, &c) in chars.iter().enumerate() {
                if !c.is_ascii_alphanumeric() {
                    words.push(String::new());
                    continue;
                }
                let prev = i.checked_sub(1).map(|p| chars[p]);
                let next = chars.get(i + 1).copied();
                if camel
                    && c.is_ascii_uppercase()
                    && prev.is_some_and(|p| {
                        p.is_ascii_lowercase()
                            || p.is_ascii_digit()
                            || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
                    })
                {
                    words.push(String::new());
                }
                words.last_mut().unwrap().push(c.to_ascii_lowercase());
            }
            words.retain(|w| !w.is_empty());
            words
        };
        [split(true), split(false)].iter().any(|words| {
            m.keys.iter().any(|k| {
                let k: Vec<&str> = k.split('_').collect();
                words.windows(k.len()).any(|w| w == k.as_slice())
            })
        })
    }

    #[test]
    fn keys_split_into_words() {
        for (key, words) in [
            ("password", "password"),
            ("db_password", "db_password"),
            ("newPassword", "new_password"),
            ("NewPassword", "new_password"),
            ("APIKey", "api_key"),
            ("apiKey", "api_key"),
            ("APIKEY", "apikey"),
            ("x-auth-token", "x_auth_token"),
            ("X-Auth-Token", "x_auth_token"),
            ("XAuthToken", "x_auth_token"),
            ("user.password", "user_password"),
            ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
            ("oauth2Token", "oauth2_token"),
            ("S3Key", "s3_key"),
            ("userID", "user_id"),
            ("IDToken", "id_token"),
            ("password2", "password2"),
            ("  set--cookie__", "set_cookie"),
            ("headers[x-api-key]", "headers_x_api_key"),
            ("pässword", "p_ssword"),
            ("密码password", "password"),
            ("", ""),
            ("-_.", ""),
        ] {
            assert_eq!(normalise_key(key), words, "{key}");
        }
        let plain = |key: &str| {
            let mut out = Vec::new();
            key_words(key.as_bytes(), false, |b| out.push(b));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(plain("PassWord"), "password");
        assert_eq!(plain("newPassword_x"), "newpassword_x");
        assert_eq!(plain("x-API-Key"), "x_api_key");
    }

    #[test]
    fn long_keys_are_matched() {
        let m = masker();
        let long = format!("{}_newPassword", "a".repeat(200));
        assert!(m.is_sensitive_key(&long));
        assert!(!m.is_sensitive_key(&"tokenizer_".repeat(20)));
    }

    #[test]
    fn key_literals_are_in_every_masked_key() {
        let m = masker();
        let literals = m.key_literals();
        assert!(
            literals.iter().all(|l| !l.is_empty() && !l.contains('_')),
            "{literals:?}"
        );
        for key in [
            "db_password",
            "privateKey",
            "x.api.key",
            "AWS_SECRET_ACCESS_KEY",
            "PassWord",
            "webhookUrl",
        ] {
            assert!(m.is_sensitive_key(key), "{key}");
            let lower = key.to_ascii_lowercase();
            assert!(literals.iter().any(|l| lower.contains(l.as_str())), "{key}");
        }
        // A key made only of separators is no key.
        assert!(
            Masker::new(&MaskingRules {
                keys: vec!["-_".into()],
                ..MaskingRules::default()
            })
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn masking_never_panics(text in ".{0,200}") {
            let _ = masker().mask_text(&text);
        }

        #[test]
        fn sensitive_keys_as_word_runs(
            key in "(?i)(x|api|key|token|pass|word|cookie|set|secret|é|[-_. ]|[A-Z]){0,6}"
        ) {
            let m = masker();
            proptest::prop_assert_eq!(m.is_sensitive_key(&key), reference_is_sensitive(&m, &key));
        }

        #[test]
        fn any_key_as_word_runs(key in "[ -~]{0,24}|\\PC{0,12}") {
            let m = masker();
            proptest::prop_assert_eq!(m.is_sensitive_key(&key), reference_is_sensitive(&m, &key));
        }

        #[test]
        fn key_words_are_lowercase_words_of_the_key(key in "\\PC{0,40}") {
            for camel in [true, false] {
                let mut words = Vec::new();
                key_words(key.as_bytes(), camel, |b| words.push(b));
                let words = String::from_utf8(words).unwrap();
                proptest::prop_assert!(words.len() <= 2 * key.len());
                proptest::prop_assert!(words.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                proptest::prop_assert!(words.is_empty() || words.split('_').all(|w| !w.is_empty()), "{words}");
                let letters: String = key.chars().filter(char::is_ascii_alphanumeric).collect();
                proptest::prop_assert_eq!(words.replace('_', ""), letters.to_ascii_lowercase());
                // Split words split no further.
                proptest::prop_assert_eq!(normalise_key(&words), words);
            }
        }

        #[test]
        fn a_configured_key_inside_a_longer_key_is_sensitive(
            before in proptest::collection::vec("[a-z][a-z0-9]{0,6}", 0..3),
            after in proptest::collection::vec("[a-z][a-z0-9]{0,6}", 0..3),
            key in proptest::sample::select(default_sensitive_keys()),
            style in 0..6usize,
        ) {
            let mut words: Vec<String> = before.clone();
            words.extend(key.split(['_', '-']).map(str::to_string));
            words.extend(after.clone());
            let spelled = spell(&words, style);
            proptest::prop_assert!(masker().is_sensitive_key(&spelled), "{spelled}");
            let text = format!("at {spelled}=s3cr3t; ok");
            proptest::prop_assert_eq!(
                masker().mask_text(&text),
                format!("at {spelled}={REDACTED}; ok")
            );
        }
    }
}
