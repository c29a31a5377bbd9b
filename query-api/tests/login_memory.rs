//! A flood of 500 concurrent logins keeps the process under 300 MiB: password checks are bounded
//! (about one per core, a short queue) and the rest are answered 503 with `Retry-After` before any
//! work. Alone in its binary so the peak memory it reads is its own.

mod common;

use common::{TestEnv, Variant};
use serde_json::json;

const FLOOD: usize = 500;

/// The process's peak resident set so far, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_bounded_in_memory_and_answered_503_past_the_gate() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    env.admin().await;
    let before = peak_rss_mib();
    // Every request has its own name and address, so no lockout stops any of them: only the gate
    // bounds the work.
    let ips: Vec<String> = (0..FLOOD)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let calls = ips.iter().enumerate().map(|(i, ip)| {
        let body = json!({"username": format!("user-{i}"), "password": format!("wrong-{i}")});
        env.call_from(ip, "POST", "/api/auth/login", None, Some(body))
    });
    let mut counts = std::collections::BTreeMap::new();
    for reply in futures::future::join_all(calls).await {
        if reply.status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
            assert!(reply.headers.contains_key("retry-after"), "{:?}", reply.headers);
        }
        *counts.entry(reply.status.as_u16()).or_insert(0) += 1;
    }
    let evaluated = counts.get(&401).copied().unwrap_or(0);
    let busy = counts.get(&503).copied().unwrap_or(0);
    assert!(evaluated >= 1, "{counts:?}");
    assert!(busy >= 1, "no login was turned away: {counts:?}");
    assert_eq!(evaluated + busy, FLOOD, "{counts:?}");
    let peak = peak_rss_mib();
    eprintln!("{FLOOD} concurrent logins: {counts:?}, peak RSS {peak} MiB ({before} MiB before the flood)");
    assert!(peak < 300, "peak RSS {peak} MiB during {FLOOD} concurrent logins");
}
