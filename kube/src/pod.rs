//! What the agent needs of a Pod object: who it is, what runs it, which addresses it holds.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// One pod of this node as the API last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.uid`: names this pod and no other, even after a pod of the same name returns.
    pub uid: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// What runs it, as `kind/name` (`deployment/web`, `statefulset/db`, `cronjob/backup`), from
    /// the controlling owner reference.
    pub workload: Option<String>,
    /// `status.podIPs` (else `status.podIP`).
    pub addresses: Vec<IpAddr>,
    /// `spec.hostNetwork`: its addresses are the node's, so its traffic is the node's own.
    pub host_network: bool,
    /// Succeeded or Failed: its sandbox is gone and its addresses may already be another pod's.
    pub finished: bool,
    /// `metadata.creationTimestamp` in seconds: the newer of two pods claiming one address is
    /// the one that holds it now.
    pub created: i64,
}

impl PodInfo {
    /// The pod as the agent sees it; `None` for an object without a name, namespace or uid
    /// (the API never sends one; a replayed or hand-made object might).
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let mut addresses: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().filter_map(|ip| ip.ip.parse().ok()).collect())
            .unwrap_or_default();
        if addresses.is_empty() {
            addresses.extend(
                status
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        let phase = status.and_then(|s| s.phase.as_deref());
        Some(PodInfo {
            uid: meta.uid.clone()?,
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            workload: workload_of(pod),
            addresses,
            host_network: pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false),
            finished: matches!(phase, Some("Succeeded" | "Failed")),
            created: meta
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0),
        })
    }

    /// Whether its addresses are its own: a pod network pod whose sandbox still runs.
    pub fn holds_addresses(&self) -> bool {
        !self.host_network && !self.finished
    }
}

/// The workload behind a pod, from its controlling owner and the names controllers give.
///
/// The agent may read pods only, not ReplicaSets or Jobs, so the step above the owner is taken
/// from names: a Deployment's ReplicaSet is `<deployment>-<pod-template-hash>` (the hash is the
/// pod's own label), a CronJob's Job is `<cronjob>-<minutes since the epoch>`.
fn workload_of(pod: &Pod) -> Option<String> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => match hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
            Some(deployment) => ("deployment", deployment),
            None => ("replicaset", owner.name.as_str()),
        },
        "Job" => match owner.name.rsplit_once('-') {
            // A CronJob's schedule time: minutes since the epoch, eight digits since 1989.
            Some((cronjob, t)) if t.len() >= 8 && t.bytes().all(|b| b.is_ascii_digit()) => {
                ("cronjob", cronjob)
            }
            _ => ("job", owner.name.as_str()),
        },
        "StatefulSet" => ("statefulset", owner.name.as_str()),
        "DaemonSet" => ("daemonset", owner.name.as_str()),
        // A static pod's mirror is owned by its Node; other controllers keep their own kind.
        "Node" => return None,
        other => return Some(format!("{}/{}", other.to_ascii_lowercase(), owner.name)),
    };
    Some(format!("{kind}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a Pod")
    }

    fn owned(kind: &str, name: &str, labels: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": "p", "namespace": "shop", "uid": "u1", "labels": labels,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Other", "name": "not-the-controller", "uid": "x"},
                    {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "o",
                     "controller": true}
                ]
            }
        }))
    }

    #[test]
    fn the_workload_is_the_controller_above_the_owner() {
        let hash = serde_json::json!({"pod-template-hash": "7d9f8c6b5"});
        let cases = [
            (
                owned("ReplicaSet", "web-7d9f8c6b5", hash.clone()),
                Some("deployment/web"),
            ),
            (
                owned("ReplicaSet", "bare-rs", hash),
                Some("replicaset/bare-rs"),
            ),
            (
                owned("StatefulSet", "db", serde_json::json!({})),
                Some("statefulset/db"),
            ),
            (
                owned("DaemonSet", "fluentd", serde_json::json!({})),
                Some("daemonset/fluentd"),
            ),
            (
                owned("Job", "backup-29437260", serde_json::json!({})),
                Some("cronjob/backup"),
            ),
            (
                owned("Job", "migrate-v2", serde_json::json!({})),
                Some("job/migrate-v2"),
            ),
            (
                owned("Node", "aks-nodepool1-0", serde_json::json!({})),
                None,
            ),
            (
                owned("Rollout", "canary", serde_json::json!({})),
                Some("rollout/canary"),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                workload_of(&p).as_deref(),
                want,
                "{:?}",
                p.metadata.owner_references
            );
        }
    }

    #[test]
    fn addresses_come_from_pod_ips_and_finished_pods_hold_none() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                         "creationTimestamp": "2026-12-01T10:00:00Z"},
            "spec": {"containers": [], "nodeName": "n"},
            "status": {"phase": "Running", "podIP": "10.244.1.10",
                       "podIPs": [{"ip": "10.244.1.10"}, {"ip": "fd00::a"}]}
        }));
        let info = PodInfo::from_pod(&p).expect("complete");
        assert_eq!(
            info.addresses,
            [
                "10.244.1.10".parse::<IpAddr>().unwrap(),
                "fd00::a".parse().unwrap()
            ]
        );
        assert!(info.holds_addresses());
        assert_eq!(info.created, 1_796_119_200);
        let mut done = p.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!PodInfo::from_pod(&done).unwrap().holds_addresses());
        let mut host = p;
        host.spec.as_mut().unwrap().host_network = Some(true);
        assert!(!PodInfo::from_pod(&host).unwrap().holds_addresses());
    }
}
