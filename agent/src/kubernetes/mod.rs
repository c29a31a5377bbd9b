//! Pod metadata from the paths the kubelet and the container runtime give log files, so a node
//! agent knows whose lines it reads without asking the API server:
//!
//! - `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log` (and the kubelet's rotated
//!   `<restart>.log.<timestamp>`);
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` (the symlinks).
//!
//! The fields go to the record's `extra` as `kubernetes.namespace`, `kubernetes.pod`,
//! `kubernetes.pod_uid`, `kubernetes.container`, `kubernetes.restart_count` and
//! `kubernetes.container_id`; the pod is the record's instance unless the input names one.
//!
//! With `agent.kubernetes.api = true`, `api` adds the pod's labels and the node's (see there).

pub(crate) mod api;

use std::path::Path;

use serde_json::{Map, Value};

/// What a log file's path says about its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodInfo {
    /// The pod's name.
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
    /// Its uid (the `/var/log/pods` layout has it).
    pub uid: Option<String>,
    /// The fields for `extra`.
    pub fields: Map<String, Value>,
}

impl PodInfo {
    /// The metadata of `path`, if it has one of the two layouts.
    pub(crate) fn of(path: &Path) -> Option<PodInfo> {
        let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
        pods_layout(&parts).or_else(|| containers_layout(&parts))
    }
}

fn info(
    namespace: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
    extra: &[(&str, Value)],
) -> Option<PodInfo> {
    if [namespace, pod, container].iter().any(|s| s.is_empty()) {
        return None;
    }
    let mut fields = Map::new();
    fields.insert("kubernetes.namespace".into(), Value::from(namespace));
    fields.insert("kubernetes.pod".into(), Value::from(pod));
    fields.insert("kubernetes.container".into(), Value::from(container));
    for (key, value) in extra {
        fields.insert(format!("kubernetes.{key}"), value.clone());
    }
    Some(PodInfo {
        pod: pod.to_string(),
        namespace: namespace.to_string(),
        uid: uid.map(str::to_string),
        fields,
    })
}

/// `.../pods/<namespace>_<pod>_<uid>/<container>/<restart>.log[.<timestamp>]`.
fn pods_layout(parts: &[&str]) -> Option<PodInfo> {
    let [.., pods, dir, container, file] = parts else {
        return None;
    };
    if *pods != "pods" {
        return None;
    }
    let mut ids = dir.splitn(3, '_');
    let (namespace, pod, uid) = (ids.next()?, ids.next()?, ids.next()?);
    let (restart, _) = file.split_once(".log")?;
    let restart: u64 = restart.parse().ok()?;
    info(
        namespace,
        pod,
        Some(uid),
        container,
        &[
            ("pod_uid", Value::from(uid)),
            ("restart_count", Value::from(restart)),
        ],
    )
}

/// `.../containers/<pod>_<namespace>_<container>-<id>.log`.
fn containers_layout(parts: &[&str]) -> Option<PodInfo> {
    let [.., containers, file] = parts else {
        return None;
    };
    if *containers != "containers" {
        return None;
    }
    let stem = file.strip_suffix(".log")?;
    let mut ids = stem.splitn(3, '_');
    let (pod, namespace, rest) = (ids.next()?, ids.next()?, ids.next()?);
    let (container, id) = rest.rsplit_once('-')?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    info(
        namespace,
        pod,
        None,
        container,
        &[("container_id", Value::from(id))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_give_the_pod() {
        let pods = PodInfo::of(Path::new(
            "/var/log/pods/shop_web-7d4f8b-x2x9z_8f14e45f-ceea-467a-9575-0e1d2a3b4c5d/nginx/2.log",
        ))
        .unwrap();
        assert_eq!(pods.pod, "web-7d4f8b-x2x9z");
        assert_eq!(pods.fields["kubernetes.namespace"], "shop");
        assert_eq!(pods.fields["kubernetes.container"], "nginx");
        assert_eq!(pods.fields["kubernetes.restart_count"], 2);
        assert_eq!(
            pods.fields["kubernetes.pod_uid"],
            "8f14e45f-ceea-467a-9575-0e1d2a3b4c5d"
        );
        let rotated = PodInfo::of(Path::new(
            "/var/log/pods/shop_web-1_uid/nginx/0.log.20251207-103000",
        ))
        .unwrap();
        assert_eq!(rotated.fields["kubernetes.restart_count"], 0);

        let id = "a".repeat(64);
        let containers = PodInfo::of(Path::new(&format!(
            "/var/log/containers/web-1_shop_istio-proxy-{id}.log"
        )))
        .unwrap();
        assert_eq!(containers.pod, "web-1");
        assert_eq!(containers.fields["kubernetes.container"], "istio-proxy");
        assert_eq!(containers.fields["kubernetes.container_id"], id.as_str());

        for other in [
            "/var/log/app/app.log",
            "/var/log/pods/bad/nginx/0.log",
            "/var/log/pods/a_b_c/nginx/current.log",
            "/var/log/containers/web-1_shop_nginx-123.log",
            "/var/log/containers/plain.log",
        ] {
            assert_eq!(PodInfo::of(Path::new(other)), None, "{other}");
        }
    }
}
