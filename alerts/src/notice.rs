//! What a notice says, independent of the channel: a title, labelled lines and a link back to the
//! query API. Each channel renders it in its own format (Slack mrkdwn, Feishu text, email text).

use serde_json::Value;

use crate::alert::{Alert, AlertType};
use crate::incidents::NoticeKind;
use owl_model::clock::format_millis;

/// One notice, ready for any channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Why it is sent.
    pub kind: NoticeKind,
    /// The alert, when it is about one (not for channel tests).
    pub alert_id: Option<uuid::Uuid>,
    /// The headline (`[WARNING] 慢请求告警: POST /api/v1/forms/submit 耗时 5234ms`).
    pub title: String,
    /// Labelled facts, in order.
    pub lines: Vec<(String, String)>,
    /// Where to look in the query API.
    pub link: String,
}

/// The base URL of links: `query_api.public_url`, or `http://<query_api.listen>`.
pub fn link_base(config: &owl_config::Config) -> String {
    let public = config.query_api.public_url.trim().trim_end_matches('/');
    if public.is_empty() {
        format!("http://{}", config.query_api.listen)
    } else {
        public.to_string()
    }
}

fn unit(alert_type: AlertType, key: &str) -> &'static str {
    match key {
        "duration" => "ms",
        "usedPercent" | "cpuPercent" | "memoryPercent" | "errorRate" => "%",
        "windowMinutes" | "blockDurationMinutes" => " 分钟",
        "threshold" => match alert_type {
            AlertType::SlowRequest => "ms",
            AlertType::IpAnomaly => " 次/分钟",
            _ => "%",
        },
        _ => "",
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `%XX`-escapes what cannot appear in a URL path segment or query value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Notice {
    /// A notice about an alert: the trace of a slow request, or the alert history of its type.
    pub fn for_alert(kind: NoticeKind, alert: &Alert, link_base: &str) -> Notice {
        let severity = alert.severity.as_str();
        let title = match kind {
            NoticeKind::Firing | NoticeKind::Test => format!("[{severity}] {}", alert.message),
            NoticeKind::Repeat => format!(
                "[{severity}] 持续告警 · {}（共 {} 次）",
                alert.message, alert.occurrences
            ),
            NoticeKind::Escalated => format!("[{severity}] 告警升级 · {}", alert.message),
            NoticeKind::Resolved => format!("[已恢复] {}", alert.message),
        };
        let mut lines = vec![
            ("类型".to_string(), alert.alert_type.as_str().to_string()),
            ("级别".to_string(), severity.to_string()),
        ];
        for (key, value) in &alert.context {
            if matches!(key.as_str(), "usedBytes" | "totalBytes") {
                continue;
            }
            lines.push((
                key.clone(),
                format!("{}{}", show(value), unit(alert.alert_type, key)),
            ));
        }
        if alert.occurrences > 1 {
            lines.push(("次数".to_string(), alert.occurrences.to_string()));
        }
        lines.push(("首次".to_string(), format_millis(alert.created_at)));
        if alert.last_seen_at != alert.created_at {
            lines.push(("最近".to_string(), format_millis(alert.last_seen_at)));
        }
        if let Some(resolved_at) = alert.resolved_at {
            lines.push(("恢复".to_string(), format_millis(resolved_at)));
        }
        lines.push(("告警 ID".to_string(), alert.id.to_string()));
        let link = match alert.context.get("traceId").and_then(Value::as_str) {
            Some(trace_id) if alert.alert_type == AlertType::SlowRequest => {
                format!("{link_base}/api/v1/logs/trace/{}", escape(trace_id))
            }
            _ => format!(
                "{link_base}/api/v1/logs/alerts?type={}",
                alert.alert_type.as_str()
            ),
        };
        Notice {
            kind,
            alert_id: Some(alert.id),
            title,
            lines,
            link,
        }
    }

    /// A channel test.
    pub fn test(message: Option<&str>, link_base: &str, now_ms: i64) -> Notice {
        let message = message
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or("这是一条来自 Owl 的测试告警");
        Notice {
            kind: NoticeKind::Test,
            alert_id: None,
            title: format!("[测试] {message}"),
            lines: vec![("时间".to_string(), format_millis(now_ms))],
            link: format!("{link_base}/api/v1/logs/alerts/config"),
        }
    }

    /// Plain text: the title, one `label: value` line per fact, the link.
    pub fn plain_text(&self) -> String {
        let mut text = self.title.clone();
        for (label, value) in &self.lines {
            text.push('\n');
            text.push_str(label);
            text.push_str(": ");
            text.push_str(value);
        }
        text.push_str("\n查看: ");
        text.push_str(&self.link);
        text
    }

    /// Slack mrkdwn: the title in bold, the facts, a link; `&`, `<`, `>` escaped as Slack requires.
    pub fn slack_text(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut text = format!("*{}*", esc(&self.title));
        for (label, value) in &self.lines {
            text.push_str(&format!("\n{}: {}", esc(label), esc(value)));
        }
        text.push_str(&format!("\n<{}|在 Owl 中查看>", self.link));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertSeverity, AlertState, AlertStatus};
    use serde_json::{Map, json};

    pub(crate) fn slow_alert() -> Alert {
        let mut context = Map::new();
        context.insert("traceId".into(), json!("CN-1733580000000-a1b2c3d4"));
        context.insert("url".into(), json!("/api/v1/forms/submit"));
        context.insert("duration".into(), json!(5234));
        context.insert("threshold".into(), json!(2000));
        Alert {
            id: uuid::Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap(),
            alert_type: AlertType::SlowRequest,
            key: "Form POST /api/v1/forms/submit".into(),
            severity: AlertSeverity::Warning,
            state: AlertState::Open,
            status: AlertStatus::Pending,
            message: "慢请求告警: POST /api/v1/forms/submit 耗时 5234ms".into(),
            context,
            service: Some("Form".into()),
            host: None,
            region: None,
            channels: Vec::new(),
            occurrences: 1,
            notices: 0,
            last_error: None,
            created_at: 1_733_567_405_000,
            last_seen_at: 1_733_567_405_000,
            notified_at: None,
            sent_at: None,
            resolved_at: None,
            acknowledged_at: None,
            acknowledged_by: None,
        }
    }

    #[test]
    fn firing_notice_reads_well() {
        let notice = Notice::for_alert(NoticeKind::Firing, &slow_alert(), "https://owl.example.com");
        assert_eq!(
            notice.plain_text(),
            "[WARNING] 慢请求告警: POST /api/v1/forms/submit 耗时 5234ms\n\
             类型: SLOW_REQUEST\n级别: WARNING\ntraceId: CN-1733580000000-a1b2c3d4\nurl: /api/v1/forms/submit\n\
             duration: 5234ms\nthreshold: 2000ms\n首次: 2024-12-07T10:30:05.000Z\n\
             告警 ID: 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n\
             查看: https://owl.example.com/api/v1/logs/trace/CN-1733580000000-a1b2c3d4"
        );
    }

    #[test]
    fn repeat_and_resolved_say_so() {
        let mut alert = slow_alert();
        alert.occurrences = 4;
        alert.last_seen_at += 60_000;
        let repeat = Notice::for_alert(NoticeKind::Repeat, &alert, "http://x");
        assert!(
            repeat.title.contains("持续告警") && repeat.title.contains("共 4 次"),
            "{}",
            repeat.title
        );
        alert.resolved_at = Some(alert.last_seen_at + 300_000);
        let resolved = Notice::for_alert(NoticeKind::Resolved, &alert, "http://x");
        assert!(resolved.title.starts_with("[已恢复]"));
        assert!(resolved.plain_text().contains("恢复: 2024-12-07T10:36:05.000Z"));
    }

    #[test]
    fn slack_text_escapes_and_links() {
        let mut alert = slow_alert();
        alert.message = "a <b> & c".into();
        alert.alert_type = AlertType::HighErrorRate;
        let text = Notice::for_alert(NoticeKind::Firing, &alert, "http://q:3001").slack_text();
        assert!(text.starts_with("*[WARNING] a &lt;b&gt; &amp; c*\n"), "{text}");
        assert!(
            text.ends_with("\n<http://q:3001/api/v1/logs/alerts?type=HIGH_ERROR_RATE|在 Owl 中查看>"),
            "{text}"
        );
    }

    #[test]
    fn link_base_prefers_the_public_url() {
        let mut config = owl_config::Config::default();
        config.query_api.listen = "127.0.0.1:3001".into();
        assert_eq!(link_base(&config), "http://127.0.0.1:3001");
        config.query_api.public_url = "https://owl.example.com/".into();
        assert_eq!(link_base(&config), "https://owl.example.com");
    }
}
