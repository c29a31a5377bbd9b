//! Where a channel may connect.
//!
//! A webhook URL or an SMTP host is chosen by whoever edits the alert configuration, so a channel
//! could be pointed at the node's own services or a cloud metadata endpoint (169.254.169.254). The
//! policy refuses internal addresses (loopback, private, link-local, unique local, ...; see
//! [`owl_config::net::is_internal`]) unless they lie in `notifications.allowed_networks`. It is
//! applied to the addresses a name resolves to, by the resolver the connection itself uses, so a
//! name that resolves to a public address when checked and to an internal one when connecting
//! (DNS rebinding) still cannot reach it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use owl_config::{Networks, NotificationsConfig};

/// A connection the policy refused; its message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetRefused(pub String);

/// Which addresses channels may reach.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allowed: Networks,
}

impl TargetPolicy {
    /// Internal addresses in `allowed` become reachable; every public address is.
    pub fn new(allowed: Networks) -> TargetPolicy {
        TargetPolicy { allowed }
    }

    /// The policy of `[notifications]`.
    pub fn from_config(notifications: &NotificationsConfig) -> TargetPolicy {
        TargetPolicy::new(notifications.allowed_networks.clone())
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        !owl_config::net::is_internal(ip) || self.allowed.contains(ip)
    }

    /// Refuses an address the policy does not allow.
    pub fn check(&self, ip: IpAddr) -> Result<(), TargetRefused> {
        if self.allows(ip) { Ok(()) } else { Err(refused(ip)) }
    }

    /// Resolves `host` and keeps the addresses the policy allows; refuses when none is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetRefused> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| TargetRefused(format!("无法解析 {host}: {e}")))?
            .collect();
        let first = resolved.first().copied();
        let allowed: Vec<SocketAddr> = resolved.into_iter().filter(|a| self.allows(a.ip())).collect();
        match (allowed.is_empty(), first) {
            (false, _) => Ok(allowed),
            (true, Some(addr)) => Err(refused(addr.ip())),
            (true, None) => Err(TargetRefused(format!("无法解析 {host}"))),
        }
    }
}

fn refused(ip: IpAddr) -> TargetRefused {
    TargetRefused(format!(
        "目标地址 {ip} 是内部地址，不在 notifications.allowed_networks 中，拒绝连接"
    ))
}

/// reqwest's resolver with the policy applied to every answer.
#[derive(Debug)]
pub(crate) struct PolicyResolver(pub(crate) Arc<TargetPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = policy.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a webhook URL before a request: an address written into the URL is not resolved, so
/// the resolver never sees it, and a plain `http://` URL (the URL itself authorises posting) may
/// only name this host.
pub(crate) fn check_webhook_url(policy: &TargetPolicy, url: &str) -> Result<(), TargetRefused> {
    let parsed = reqwest::Url::parse(url).map_err(|_| TargetRefused("webhook URL 无效".into()))?;
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(TargetRefused("webhook URL 缺少主机".into())),
    };
    if parsed.scheme() == "http" && !is_local_host(&parsed) {
        return Err(TargetRefused(
            "webhook URL 需为 https:// 地址（http:// 只允许本机地址）".into(),
        ));
    }
    match ip {
        Some(ip) => policy.check(ip),
        None => Ok(()),
    }
}

/// Whether a URL names this host (a loopback address or `localhost`).
pub(crate) fn is_local_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => v4.is_loopback(),
        Some(url::Host::Ipv6(v6)) => owl_config::net::is_loopback(IpAddr::V6(v6)),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> TargetPolicy {
        TargetPolicy::new(Networks::parse(allowed).unwrap())
    }

    #[test]
    fn internal_targets_need_the_allow_list() {
        let closed = policy(&[]);
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.0.0.5",
            "192.168.1.1",
            "fd00::1",
            "::1",
        ] {
            assert!(closed.check(ip.parse().unwrap()).is_err(), "{ip}");
        }
        assert!(closed.check("93.184.216.34".parse().unwrap()).is_ok());
        let open = policy(&["127.0.0.0/8", "10.0.0.0/8"]);
        assert!(open.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(open.check("10.9.9.9".parse().unwrap()).is_ok());
        assert!(open.check("169.254.169.254".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let closed = policy(&[]);
        let err = closed.resolve("localhost", 25).await.unwrap_err();
        assert!(err.0.contains("allowed_networks"), "{err}");
        let open = policy(&["127.0.0.0/8", "::1/128"]);
        let addrs = open.resolve("localhost", 25).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 25));
    }

    #[test]
    fn webhook_urls_with_addresses_and_plain_http_are_checked() {
        let closed = policy(&[]);
        assert!(check_webhook_url(&closed, "http://169.254.169.254/latest/meta-data").is_err());
        assert!(check_webhook_url(&closed, "https://[::1]:8443/hook").is_err());
        assert!(check_webhook_url(&closed, "https://hooks.slack.com/services/T/B/X").is_ok());
        let err = check_webhook_url(&closed, "http://hooks.example.com/x").unwrap_err();
        assert!(err.0.contains("https://"), "{err}");
        let open = policy(&["127.0.0.0/8"]);
        assert!(check_webhook_url(&open, "http://127.0.0.1:9000/hook").is_ok());
        assert!(check_webhook_url(&open, "http://10.0.0.1/hook").is_err());
    }
}
