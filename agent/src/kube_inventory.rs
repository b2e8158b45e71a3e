//! Pods from the Kubernetes API: the watch of this node's pods, with their uids and workloads.
//!
//! An address belongs to the pod the API says holds it now (a live pod on the pod network,
//! the newest if two claim it). When the API moves an address from one pod to another, the
//! agent ends its window first ([`Inventory::reassigns`]), so the old pod's flows stay its own
//! and the new pod's start from the moment it owns the address. Which pod is behind each
//! node-side interface follows from the routes to the owners' addresses, found again when the
//! snapshot or the node's links change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use outflow_kube::{PodWatch, Snapshot};

use crate::inventory::{
    interfaces_by_route, Inventory, PodDetails, PodInterface, PodRef, RoutedInterfaces,
};
use crate::netlink::Link;

/// Pods from a running watch.
pub struct KubeInventory {
    watch: Arc<PodWatch>,
    /// The snapshot in use and its generation.
    applied: (u64, Arc<Snapshot>),
    /// Who holds each address in the snapshot in use.
    owners: HashMap<IpAddr, PodRef>,
    /// The pod behind each node-side interface, by the routes to the owners' addresses.
    routed: RoutedInterfaces,
}

impl KubeInventory {
    /// Reads pods from `watch`.
    pub fn new(watch: Arc<PodWatch>) -> KubeInventory {
        let mut inv = KubeInventory {
            watch,
            applied: (0, Arc::default()),
            owners: HashMap::new(),
            routed: RoutedInterfaces::default(),
        };
        inv.apply();
        inv
    }

    fn apply(&mut self) {
        let (generation, snapshot) = self.watch.snapshot();
        self.owners = owners(&snapshot);
        self.applied = (generation, snapshot);
    }
}

fn owners(s: &Snapshot) -> HashMap<IpAddr, PodRef> {
    s.pods
        .values()
        .filter(|p| p.holds_addresses())
        .flat_map(|p| p.addresses.iter().copied())
        .filter_map(|ip| s.owner_of(ip).map(|p| (ip, pod_ref(p))))
        .collect()
}

fn pod_ref(p: &outflow_kube::PodInfo) -> PodRef {
    PodRef {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
    }
}

impl Inventory for KubeInventory {
    fn refresh(&mut self, node_links: &[Link]) {
        if self.watch.snapshot().0 != self.applied.0 {
            self.apply();
        }
        self.routed
            .refresh(&self.owners, self.applied.0, node_links);
    }

    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
        self.owners.get(&ip)
    }

    fn pod_on_interface(&self, ifindex: u32) -> Option<&PodRef> {
        self.routed.pod_on(ifindex)
    }

    fn pods(&self) -> Vec<(PodRef, Vec<IpAddr>)> {
        let mut all: Vec<(PodRef, Vec<IpAddr>)> = self
            .applied
            .1
            .pods
            .values()
            .filter(|p| p.holds_addresses())
            .map(|p| {
                let mut ips: Vec<IpAddr> = p
                    .addresses
                    .iter()
                    .copied()
                    .filter(|ip| {
                        self.owners
                            .get(ip)
                            .is_some_and(|o| o.name == p.name && o.namespace == p.namespace)
                    })
                    .collect();
                ips.sort();
                (pod_ref(p), ips)
            })
            .collect();
        all.sort();
        all
    }

    fn details(&self, pod: &PodRef) -> PodDetails {
        self.applied
            .1
            .pods
            .values()
            .filter(|p| p.holds_addresses())
            .find(|p| p.namespace == pod.namespace && p.name == pod.name)
            .map(|p| PodDetails {
                uid: Some(p.uid.clone()),
                workload: p.workload.clone(),
            })
            .unwrap_or_default()
    }

    fn is_host(&self, ip: IpAddr) -> bool {
        self.applied.1.host_addresses().any(|h| h == ip)
    }

    fn reassigns(&self) -> bool {
        let (generation, latest) = self.watch.snapshot();
        if generation == self.applied.0 {
            return false;
        }
        let next = owners(&latest);
        self.owners
            .iter()
            .any(|(ip, pod)| next.get(ip) != Some(pod))
    }

    fn status(&self) -> Result<(), String> {
        self.watch.status()
    }

    /// Found the way the node reaches the pod's addresses, as for an inventory file.
    fn interfaces_of(&self, pod: &PodRef) -> Result<Vec<PodInterface>, String> {
        interfaces_by_route(
            pod,
            &self.owners,
            "holds no address on this node by the Kubernetes API (not on this node, finished, \
             on the host network, or not yet given an address)",
        )
    }
}
