//! Feishu (Lark) custom bot webhooks.
//!
//! The body is `{"msg_type":"text","content":{"text":...}}`; a bot with signature verification
//! also needs `timestamp` (seconds, as a string) and `sign`: HMAC-SHA256 keyed with
//! `"{timestamp}\n{secret}"` over an empty message, Base64-encoded, as Feishu's documentation
//! computes it. Feishu answers HTTP 200 even when it refuses a message, with a non-zero `code`
//! (older bots: `StatusCode`) and `msg`: 19021 is a bad signature or a timestamp more than an hour
//! off, 11232 a rate limit (worth retrying), others are configuration errors.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::DeliveryError;
use super::slack::status_error;
use crate::alert::Channel;
use crate::notice::Notice;

/// Feishu's "too many requests" code.
const RATE_LIMITED: i64 = 11232;
/// Feishu's "bad signature or timestamp" code.
const SIGNATURE_FAILED: i64 = 19021;

/// The signature of a signed custom bot message sent at `timestamp_s`.
pub fn sign(timestamp_s: i64, secret: &str) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The body Feishu receives; signed when `secret` is set.
pub(crate) fn payload(notice: &Notice, secret: &str, timestamp_s: i64) -> Value {
    let mut body = json!({ "msg_type": "text", "content": { "text": notice.plain_text() } });
    if !secret.is_empty() {
        body["timestamp"] = json!(timestamp_s.to_string());
        body["sign"] = json!(sign(timestamp_s, secret));
    }
    body
}

pub(crate) async fn send(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    timestamp_s: i64,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    let response = http
        .post(url)
        .json(&payload(notice, secret, timestamp_s))
        .send()
        .await
        .map_err(|e| DeliveryError::http(Channel::Feishu, e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(status_error(Channel::Feishu, status));
    }
    let body = response.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let code = answer
        .get("code")
        .or_else(|| answer.get("StatusCode"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if code == 0 {
        return Ok(());
    }
    // The numeric code only: Feishu's `msg` is the remote's text, not echoed.
    let meaning = match code {
        SIGNATURE_FAILED => " (signature or timestamp rejected)",
        RATE_LIMITED => " (rate limited)",
        _ => "",
    };
    Err(DeliveryError::new(
        Channel::Feishu,
        format!("code {code}{meaning}"),
        code == RATE_LIMITED,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_feishus_reference() {
        // Computed with Feishu's Python sample: key f"{timestamp}\n{secret}", empty message.
        assert_eq!(
            sign(1_599_360_473, "demo"),
            "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
        );
    }

    #[test]
    fn unsigned_bodies_carry_no_signature_fields() {
        let notice = Notice::test(Some("hi"), "http://q", 0);
        let body = payload(&notice, "", 1);
        assert_eq!(
            body,
            json!({"msg_type": "text", "content": {"text": notice.plain_text()}})
        );
        let signed = payload(&notice, "s", 1_700_000_000);
        assert_eq!(signed["timestamp"], "1700000000");
        assert_eq!(signed["sign"], sign(1_700_000_000, "s"));
    }
}
