//! A secret string: read from config, never printed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configured secret (token, password, webhook URL). Its `Debug` and `Serialize` forms are
/// redacted so it never reaches a log line or an API answer by accident; use
/// [`Secret::expose`] where the value is really needed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the value is a placeholder from an example or a template (`replace-with-...`,
    /// `changeme`, `...`, `<token>`) rather than a real secret: such a value is public, so a
    /// config that still holds one is refused.
    pub fn is_placeholder(&self) -> bool {
        let value = self.0.trim().to_ascii_lowercase();
        if value.is_empty() {
            return false;
        }
        let markers = [
            "replace-with",
            "replace_with",
            "replace me",
            "changeme",
            "change-me",
            "change_me",
            "your-",
            "at least 32 bytes",
            "redacted",
        ];
        markers.iter().any(|m| value.contains(m))
            || value.chars().all(|c| c == '.' || c == '*' || c == 'x')
            || (value.starts_with('<') && value.ends_with('>'))
            || (value.starts_with("${") && value.ends_with('}'))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"***REDACTED***\""
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "***REDACTED***" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised() {
        for placeholder in [
            "replace-with-the-collector-agent-token",
            "replace-with-a-long-random-token",
            "at least 32 bytes",
            "CHANGEME",
            "...",
            "<agent-token>",
            "${OWL_AGENT_TOKEN}",
            "your-secret-here",
        ] {
            assert!(Secret::new(placeholder).is_placeholder(), "{placeholder}");
        }
        for real in ["", "k3J9s8dF0aQ2mX7pL5vN1cB4", "correct horse battery staple"] {
            assert!(!Secret::new(real).is_placeholder(), "{real}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "\"***REDACTED***\"");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***REDACTED***\"");
        assert_eq!(secret.expose(), "hunter2");
    }
}
