//! Pod labels and the node's from the Kubernetes API server (`agent.kubernetes.api = true`).
//!
//! The agent lists the pods of its node once, then follows a watch from the list's
//! `resourceVersion` (a `410 Gone` or a broken watch lists again), and keeps them in a local
//! cache that records are enriched from: no API call per line or per file. The node's labels are
//! read at start and every five minutes. A pod deleted from the API stays in the cache for
//! [`GONE_GRACE`], since its last lines are read after it is gone.
//!
//! Mapping: service from the pod label `app.kubernetes.io/name` (else `app`), environment from
//! `environment` (else `env`), region from the node label `topology.kubernetes.io/region`;
//! every pod label goes to `extra` as `kubernetes.labels.<name>`, the node as `kubernetes.node`.
//! A record's own values win, then these, then the input's configuration.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use owl_config::KubernetesConfig;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::PodInfo;

/// How long a deleted pod's labels are kept.
const GONE_GRACE: Duration = Duration::from_secs(600);
/// How often the node's labels are read again.
const NODE_REFRESH: Duration = Duration::from_secs(300);
/// Server-side end of a watch (it is then resumed from the last version seen).
const WATCH_SECONDS: u64 = 300;

/// Why the API option cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// No node to watch the pods of.
    #[error(
        "agent.kubernetes.node_name is empty and NODE_NAME is not set: set it from spec.nodeName with the downward API"
    )]
    NoNode,
    /// No API server address.
    #[error(
        "agent.kubernetes.api_url is empty and KUBERNETES_SERVICE_HOST is not set (the agent is not running in a cluster)"
    )]
    NoServer,
    /// The CA bundle could not be read.
    #[error("agent.kubernetes.ca_file {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("kubernetes API client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the API says of a pod, ready to apply to records.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodLabels {
    pub service: Option<String>,
    pub environment: Option<String>,
    pub region: Option<String>,
    /// `kubernetes.labels.*` and `kubernetes.node`.
    pub fields: Map<String, Value>,
}

#[derive(Debug, Clone)]
struct CachedPod {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    applied: Arc<PodLabels>,
}

#[derive(Default)]
struct State {
    by_uid: HashMap<String, CachedPod>,
    by_name: HashMap<(String, String), String>,
    node_labels: BTreeMap<String, String>,
    gone: VecDeque<(Instant, String)>,
}

/// The pods of this node as the API server last said.
pub(crate) struct PodCache {
    node: String,
    state: RwLock<State>,
    synced: tokio::sync::Notify,
    is_synced: std::sync::atomic::AtomicBool,
}

impl PodCache {
    pub(crate) fn new(node: String) -> PodCache {
        PodCache {
            node,
            state: RwLock::new(State::default()),
            synced: tokio::sync::Notify::new(),
            is_synced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The labels of the pod a file belongs to, by uid (the `/var/log/pods` layout) or by
    /// namespace and name (the `/var/log/containers` layout).
    pub(crate) fn lookup(&self, pod: &PodInfo) -> Option<Arc<PodLabels>> {
        let state = self.state.read().expect("the pod cache lock is never poisoned");
        let uid = match &pod.uid {
            Some(uid) => uid,
            None => state.by_name.get(&(pod.namespace.clone(), pod.pod.clone()))?,
        };
        state.by_uid.get(uid).map(|p| p.applied.clone())
    }

    /// Waits until the first list was taken in, for at most `timeout`.
    pub(crate) async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut notified = std::pin::pin!(self.synced.notified());
        // Registered before the flag is read, so a list taken in between is not missed.
        notified.as_mut().enable();
        if self.is_synced.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        tokio::time::timeout(timeout, notified).await.is_ok()
    }

    fn labels_for(
        &self,
        labels: &BTreeMap<String, String>,
        node_labels: &BTreeMap<String, String>,
    ) -> PodLabels {
        let label = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| labels.get(*n).filter(|v| !v.is_empty()).cloned())
        };
        let mut fields = Map::new();
        for (key, value) in labels {
            fields.insert(format!("kubernetes.labels.{key}"), Value::from(value.as_str()));
        }
        fields.insert("kubernetes.node".to_string(), Value::from(self.node.as_str()));
        PodLabels {
            service: label(&["app.kubernetes.io/name", "app"]),
            environment: label(&["environment", "env"]),
            region: node_labels
                .get("topology.kubernetes.io/region")
                .filter(|v| !v.is_empty())
                .cloned(),
            fields,
        }
    }

    fn put(&self, state: &mut State, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let applied = Arc::new(self.labels_for(&pod.metadata.labels, &state.node_labels));
        let (namespace, name) = (
            pod.metadata.namespace.unwrap_or_default(),
            pod.metadata.name.unwrap_or_default(),
        );
        state
            .by_name
            .insert((namespace.clone(), name.clone()), uid.clone());
        state.by_uid.insert(
            uid,
            CachedPod {
                namespace,
                name,
                labels: pod.metadata.labels,
                applied,
            },
        );
    }

    /// Marks a pod as gone: forgotten after [`GONE_GRACE`] unless it comes back.
    fn gone(state: &mut State, uid: String, now: Instant) {
        state.gone.push_back((now, uid));
    }

    fn expire(state: &mut State, now: Instant, live: &dyn Fn(&str) -> bool) {
        while let Some((at, _)) = state.gone.front() {
            if now.duration_since(*at) < GONE_GRACE {
                break;
            }
            let (_, uid) = state.gone.pop_front().expect("checked just above");
            if live(&uid) {
                continue;
            }
            if let Some(pod) = state.by_uid.remove(&uid)
                && state.by_name.get(&(pod.namespace.clone(), pod.name.clone())) == Some(&uid)
            {
                state.by_name.remove(&(pod.namespace, pod.name));
            }
        }
    }

    /// Takes in a full list: pods not in it are gone.
    fn replace(&self, pods: Vec<Pod>) {
        let mut state = self.state.write().expect("the pod cache lock is never poisoned");
        let listed: std::collections::HashSet<String> =
            pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        let now = Instant::now();
        let missing: Vec<String> = state
            .by_uid
            .keys()
            .filter(|uid| !listed.contains(*uid))
            .cloned()
            .collect();
        for uid in missing {
            Self::gone(&mut state, uid, now);
        }
        for pod in pods {
            self.put(&mut state, pod);
        }
        Self::expire(&mut state, now, &|uid| listed.contains(uid));
        drop(state);
        self.is_synced.store(true, std::sync::atomic::Ordering::Release);
        self.synced.notify_waiters();
    }

    fn event(&self, kind: &str, pod: Pod) {
        let mut state = self.state.write().expect("the pod cache lock is never poisoned");
        let now = Instant::now();
        match kind {
            "ADDED" | "MODIFIED" => self.put(&mut state, pod),
            "DELETED" => {
                if let Some(uid) = pod.metadata.uid {
                    Self::gone(&mut state, uid, now);
                }
            }
            _ => {}
        }
        Self::expire(&mut state, now, &|_| false);
    }

    fn set_node_labels(&self, labels: BTreeMap<String, String>) {
        let mut state = self.state.write().expect("the pod cache lock is never poisoned");
        if state.node_labels == labels {
            return;
        }
        state.node_labels = labels;
        let node_labels = state.node_labels.clone();
        for pod in state.by_uid.values_mut() {
            pod.applied = Arc::new(self.labels_for(&pod.labels, &node_labels));
        }
    }
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    metadata: Metadata,
}

#[derive(Debug, Deserialize)]
struct PodList {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
struct ListMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Node {
    metadata: Metadata,
}

#[derive(Debug, Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: Value,
}

/// A client of the API server for this node.
pub(crate) struct Watcher {
    client: reqwest::Client,
    base: String,
    token_file: PathBuf,
    cache: Arc<PodCache>,
}

/// What ended a watch.
enum WatchEnd {
    /// The server closed it (its timeout): resume from the version seen.
    Closed(String),
    /// The version is too old (410): list again.
    Expired,
}

impl Watcher {
    /// The watcher and its cache, from the config and the in-cluster environment.
    pub(crate) fn new(config: &KubernetesConfig) -> Result<Watcher, KubernetesError> {
        let node = if config.node_name.is_empty() {
            std::env::var("NODE_NAME").unwrap_or_default()
        } else {
            config.node_name.clone()
        };
        if node.is_empty() {
            return Err(KubernetesError::NoNode);
        }
        let base = if config.api_url.is_empty() {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| KubernetesError::NoServer)?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_string());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        } else {
            config.api_url.trim_end_matches('/').to_string()
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(WATCH_SECONDS + 60))
            .user_agent(concat!("owl-agent/", env!("CARGO_PKG_VERSION")));
        if base.starts_with("https://") && config.ca_file.exists() {
            let pem = std::fs::read(&config.ca_file).map_err(|e| KubernetesError::Ca {
                path: config.ca_file.clone(),
                message: e.to_string(),
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| KubernetesError::Ca {
                path: config.ca_file.clone(),
                message: e.to_string(),
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Watcher {
            client: builder.build()?,
            base,
            token_file: config.token_file.clone(),
            cache: Arc::new(PodCache::new(node)),
        })
    }

    pub(crate) fn cache(&self) -> Arc<PodCache> {
        self.cache.clone()
    }

    /// Keeps the cache current until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        let mut node_read: Option<Instant> = None;
        loop {
            if node_read.is_none_or(|at| at.elapsed() >= NODE_REFRESH) {
                match self.node_labels().await {
                    Ok(labels) => {
                        self.cache.set_node_labels(labels);
                        node_read = Some(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, node = %self.cache.node, "cannot read the node's labels")
                    }
                }
            }
            let result = tokio::select! {
                result = self.list_and_watch(&stop, &mut node_read) => result,
                () = stop.cancelled() => return,
            };
            match result {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "kubernetes pod watch failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.get(url).header("Accept", "application/json");
        // Bound service account tokens are rotated on disk: read it for every request.
        if let Ok(token) = std::fs::read_to_string(&self.token_file) {
            let token = token.trim();
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
        }
        request
    }

    async fn node_labels(&self) -> Result<BTreeMap<String, String>, String> {
        let url = format!("{}/api/v1/nodes/{}", self.base, self.cache.node);
        let response = self
            .request(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url}: {status}"));
        }
        let node: Node = response.json().await.map_err(|e| e.to_string())?;
        Ok(node.metadata.labels)
    }

    fn pods_url(&self) -> String {
        format!(
            "{}/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
            self.base,
            percent_encode(&self.cache.node)
        )
    }

    /// One list, then watches until one fails or expires (`Ok` to list again at once).
    async fn list_and_watch(
        &self,
        stop: &CancellationToken,
        node_read: &mut Option<Instant>,
    ) -> Result<(), String> {
        let url = self.pods_url();
        let response = self
            .request(&url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url}: {status}"));
        }
        let list: PodList = response.json().await.map_err(|e| format!("pod list: {e}"))?;
        let mut version = list.metadata.resource_version.unwrap_or_default();
        tracing::debug!(pods = list.items.len(), %version, "listed this node's pods");
        self.cache.replace(list.items);
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            match self.watch(&version).await? {
                WatchEnd::Closed(seen) => version = seen,
                WatchEnd::Expired => return Ok(()),
            }
            if node_read.is_none_or(|at| at.elapsed() >= NODE_REFRESH)
                && let Ok(labels) = self.node_labels().await
            {
                self.cache.set_node_labels(labels);
                *node_read = Some(Instant::now());
            }
        }
    }

    async fn watch(&self, version: &str) -> Result<WatchEnd, String> {
        let url = format!(
            "{}&watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            self.pods_url(),
            percent_encode(version)
        );
        let mut response = self.request(&url).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status == reqwest::StatusCode::GONE {
            return Ok(WatchEnd::Expired);
        }
        if !status.is_success() {
            return Err(format!("GET {url}: {status}"));
        }
        let mut seen = version.to_string();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = memchr::memchr(b'\n', &pending) {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: WatchEvent = match serde_json::from_slice(&line) {
                    Ok(event) => event,
                    Err(e) => return Err(format!("watch event: {e}")),
                };
                match event.kind.as_str() {
                    // A Status object: 410 when the version is too old.
                    "ERROR" => {
                        let code = event.object.get("code").and_then(Value::as_u64);
                        return match code {
                            Some(410) => Ok(WatchEnd::Expired),
                            _ => Err(format!("watch error: {}", event.object)),
                        };
                    }
                    kind => {
                        let pod: Pod =
                            serde_json::from_value(event.object).map_err(|e| format!("watch event: {e}"))?;
                        if let Some(v) = &pod.metadata.resource_version {
                            seen.clone_from(v);
                        }
                        if kind != "BOOKMARK" {
                            self.cache.event(kind, pod);
                        }
                    }
                }
            }
        }
        Ok(WatchEnd::Closed(seen))
    }
}

/// Percent-encodes what a query value must not carry raw.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, ns: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: Metadata {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: Some(uid.into()),
                resource_version: None,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        }
    }

    fn info(ns: &str, name: &str, uid: Option<&str>) -> PodInfo {
        PodInfo {
            pod: name.into(),
            namespace: ns.into(),
            uid: uid.map(str::to_string),
            fields: Map::new(),
        }
    }

    #[test]
    fn labels_map_to_service_environment_and_the_node_region() {
        let cache = PodCache::new("node-1".into());
        cache.set_node_labels([("topology.kubernetes.io/region".to_string(), "CN".to_string())].into());
        cache.replace(vec![
            pod(
                "u1",
                "shop",
                "web-1",
                &[("app.kubernetes.io/name", "checkout"), ("environment", "staging")],
            ),
            pod("u2", "shop", "job-1", &[("app", "nightly")]),
        ]);
        let web = cache.lookup(&info("shop", "web-1", Some("u1"))).unwrap();
        assert_eq!(web.service.as_deref(), Some("checkout"));
        assert_eq!(web.environment.as_deref(), Some("staging"));
        assert_eq!(web.region.as_deref(), Some("CN"));
        assert_eq!(web.fields["kubernetes.labels.app.kubernetes.io/name"], "checkout");
        assert_eq!(web.fields["kubernetes.node"], "node-1");
        // By name, for the /var/log/containers layout.
        let job = cache.lookup(&info("shop", "job-1", None)).unwrap();
        assert_eq!(job.service.as_deref(), Some("nightly"));
        assert!(cache.lookup(&info("shop", "other", None)).is_none());
        // A node label change reaches every pod.
        cache.set_node_labels([("topology.kubernetes.io/region".to_string(), "US".to_string())].into());
        assert_eq!(
            cache
                .lookup(&info("shop", "job-1", None))
                .unwrap()
                .region
                .as_deref(),
            Some("US")
        );
    }

    #[test]
    fn a_deleted_pod_is_kept_for_its_last_lines() {
        let cache = PodCache::new("node-1".into());
        cache.replace(vec![pod("u1", "shop", "web-1", &[("app", "web")])]);
        cache.event("DELETED", pod("u1", "shop", "web-1", &[]));
        assert!(cache.lookup(&info("shop", "web-1", Some("u1"))).is_some());
        let mut state = cache.state.write().unwrap();
        PodCache::expire(
            &mut state,
            Instant::now() + GONE_GRACE + Duration::from_secs(1),
            &|_| false,
        );
        assert!(state.by_uid.is_empty() && state.by_name.is_empty());
    }

    #[test]
    fn node_names_are_encoded_in_the_selector() {
        assert_eq!(
            percent_encode("ip-10-0-0-1.ec2.internal"),
            "ip-10-0-0-1.ec2.internal"
        );
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }
}
