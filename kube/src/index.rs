//! The node's pods, kept the way kube's reflector keeps a store: events change a working copy,
//! and a relist builds a new one that replaces it whole when the list is complete, so a pod
//! deleted while the watch was down leaves with the old copy.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;

use crate::pod::PodInfo;

/// An unchanging view of the node's pods, shared with readers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Pods by uid.
    pub pods: BTreeMap<String, PodInfo>,
    /// Which pod holds each address now.
    owners: HashMap<IpAddr, String>,
}

impl Snapshot {
    fn new(pods: BTreeMap<String, PodInfo>) -> Snapshot {
        let mut owners: HashMap<IpAddr, String> = HashMap::new();
        for p in pods.values().filter(|p| p.holds_addresses()) {
            for ip in &p.addresses {
                // Two live pods claiming one address: the CNI gave it to the newer one after the
                // older one's sandbox went, and the older one's Pod object is only late to go.
                let newer = match owners.get(ip).and_then(|uid| pods.get(uid)) {
                    Some(held) => (p.created, &p.uid) > (held.created, &held.uid),
                    None => true,
                };
                if newer {
                    owners.insert(*ip, p.uid.clone());
                }
            }
        }
        Snapshot { pods, owners }
    }

    /// The pod holding `ip` now, if a pod on this node does.
    pub fn owner_of(&self, ip: IpAddr) -> Option<&PodInfo> {
        self.owners.get(&ip).and_then(|uid| self.pods.get(uid))
    }

    /// The addresses of this node's host-network pods: the node's own.
    pub fn host_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.pods
            .values()
            .filter(|p| p.host_network)
            .flat_map(|p| p.addresses.iter().copied())
    }
}

/// Applies watch events; publishes a snapshot whenever the view is complete.
#[derive(Debug, Default)]
pub struct PodIndex {
    current: BTreeMap<String, PodInfo>,
    /// The relist under way, if any.
    relist: Option<BTreeMap<String, PodInfo>>,
    /// The first complete list has arrived.
    synced: bool,
}

impl PodIndex {
    /// Takes one event; returns the new snapshot when what readers see has changed.
    pub fn apply(&mut self, event: Event<Pod>) -> Option<Arc<Snapshot>> {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                None
            }
            Event::InitApply(pod) => {
                if let (Some(buf), Some(info)) = (self.relist.as_mut(), PodInfo::from_pod(&pod)) {
                    buf.insert(info.uid.clone(), info);
                }
                None
            }
            Event::InitDone => {
                self.current = self.relist.take().unwrap_or_default();
                self.synced = true;
                Some(self.snapshot())
            }
            Event::Apply(pod) => {
                let info = PodInfo::from_pod(&pod)?;
                if self.current.get(&info.uid) == Some(&info) {
                    return None;
                }
                self.current.insert(info.uid.clone(), info);
                self.synced.then(|| self.snapshot())
            }
            Event::Delete(pod) => {
                let uid = pod.metadata.uid.as_ref()?;
                self.current.remove(uid)?;
                self.synced.then(|| self.snapshot())
            }
        }
    }

    /// Whether a complete list has arrived.
    pub fn synced(&self) -> bool {
        self.synced
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::new(Snapshot::new(self.current.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, ip: &str, created: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "uid": uid,
                         "creationTimestamp": created},
            "status": {"phase": phase, "podIP": ip}
        }))
        .expect("a Pod")
    }

    fn owner(s: &Snapshot, ip: &str) -> Option<String> {
        s.owner_of(ip.parse().unwrap()).map(|p| p.name.clone())
    }

    #[test]
    fn a_relist_replaces_the_view_whole_and_only_when_complete() {
        let mut index = PodIndex::default();
        assert!(index.apply(Event::Init).is_none());
        index.apply(Event::InitApply(pod(
            "a",
            "web-a",
            "10.0.0.1",
            "2026-12-01T10:00:00Z",
            "Running",
        )));
        index.apply(Event::InitApply(pod(
            "b",
            "web-b",
            "10.0.0.2",
            "2026-12-01T10:00:00Z",
            "Running",
        )));
        let first = index.apply(Event::InitDone).expect("complete");
        assert_eq!(owner(&first, "10.0.0.2").as_deref(), Some("web-b"));
        // web-b is deleted while the watch is down: the relist no longer has it.
        index.apply(Event::Init);
        index.apply(Event::InitApply(pod(
            "a",
            "web-a",
            "10.0.0.1",
            "2026-12-01T10:00:00Z",
            "Running",
        )));
        assert!(index
            .apply(Event::Apply(pod(
                "c",
                "x",
                "10.0.0.3",
                "2026-12-01T10:00:00Z",
                "Running"
            )))
            .is_some());
        let second = index.apply(Event::InitDone).expect("complete");
        assert_eq!(owner(&second, "10.0.0.2"), None);
        assert_eq!(owner(&second, "10.0.0.1").as_deref(), Some("web-a"));
    }

    #[test]
    fn a_reused_address_belongs_to_the_live_and_newer_pod() {
        let mut index = PodIndex::default();
        index.apply(Event::Init);
        index.apply(Event::InitApply(pod(
            "old",
            "job-old",
            "10.0.0.9",
            "2026-12-01T10:00:00Z",
            "Running",
        )));
        index.apply(Event::InitDone);
        let done = index
            .apply(Event::Apply(pod(
                "old",
                "job-old",
                "10.0.0.9",
                "2026-12-01T10:00:00Z",
                "Succeeded",
            )))
            .expect("changed");
        assert_eq!(
            owner(&done, "10.0.0.9"),
            None,
            "a finished pod holds no address"
        );
        let reused = index
            .apply(Event::Apply(pod(
                "new",
                "web-new",
                "10.0.0.9",
                "2026-12-01T10:05:00Z",
                "Running",
            )))
            .expect("changed");
        assert_eq!(owner(&reused, "10.0.0.9").as_deref(), Some("web-new"));
        // Both live (the old object is late to show its end): the newer one holds it.
        let both = index
            .apply(Event::Apply(pod(
                "old",
                "job-old",
                "10.0.0.9",
                "2026-12-01T10:00:00Z",
                "Running",
            )))
            .expect("changed");
        assert_eq!(owner(&both, "10.0.0.9").as_deref(), Some("web-new"));
        let gone = index
            .apply(Event::Delete(pod(
                "new",
                "web-new",
                "10.0.0.9",
                "2026-12-01T10:05:00Z",
                "Running",
            )))
            .expect("changed");
        assert_eq!(owner(&gone, "10.0.0.9").as_deref(), Some("job-old"));
    }

    #[test]
    fn nothing_is_published_before_the_first_complete_list() {
        let mut index = PodIndex::default();
        assert!(index
            .apply(Event::Apply(pod(
                "a",
                "a",
                "10.0.0.1",
                "2026-12-01T10:00:00Z",
                "Running"
            )))
            .is_none());
        assert!(!index.synced());
    }
}
