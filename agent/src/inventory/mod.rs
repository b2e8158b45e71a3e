//! Which pod an address belongs to.
//!
//! Behind one small trait, so the Kubernetes API can take over later: standalone, each named
//! network namespace whose veth peer is on this node is a pod (`/run/netns/NAME` → pod
//! `default/NAME`), or an inventory file says which addresses belong to which pod.

mod file;
mod netns_pods;
mod route;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::netlink::Link;

pub use file::{FileInventory, InventoryError};
pub use netns_pods::NetnsInventory;
pub use route::{interface_for, RouteError};
pub(crate) use route::{interfaces_by_route, RoutedInterfaces};

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

/// A pod's veth: the node-side name and the pod-side address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// The node-side device.
    pub node_side: String,
    /// The pod-side end's Ethernet address: frames from it are what the pod sent.
    pub pod_mac: Option<[u8; 6]>,
}

/// Maps addresses to pods.
pub trait Inventory: Send {
    /// Looks again (pods come and go); `node_links` are the node's interfaces.
    fn refresh(&mut self, node_links: &[Link]);
    /// The pod holding this address.
    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef>;
    /// The pod behind this node-side interface (its index in the node's namespace), when the
    /// interface leads to that pod alone. Known from the last `refresh`; the uplink, a bridge
    /// and interfaces gone since are no pod's.
    fn pod_on_interface(&self, _ifindex: u32) -> Option<&PodRef> {
        None
    }
    /// Every pod on this node with its addresses, idle or not, sorted by pod.
    fn pods(&self) -> Vec<(PodRef, Vec<IpAddr>)>;
    /// The node-side interfaces leading to a pod, each with the pod-side end's Ethernet
    /// address where it is known; or why there is none, in words for the person who asked.
    /// Asked in the node's namespace (the calling thread's).
    fn interfaces_of(&self, pod: &PodRef) -> Result<Vec<PodInterface>, String>;
    /// What else is known of a pod: its uid and workload, where the source tells.
    fn details(&self, _pod: &PodRef) -> PodDetails {
        PodDetails::default()
    }
    /// Whether `ip` is the node's own (a host-network pod's): traffic from the node itself.
    fn is_host(&self, _ip: IpAddr) -> bool {
        false
    }
    /// Whether looking again would take an address from the pod that holds it now: the agent
    /// then ends the window first, so each pod keeps its own flows.
    fn reassigns(&self) -> bool {
        false
    }
    /// Ok when the pods are known; else why not yet (the agent is not ready until they are).
    fn status(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A pod's identity beyond its name, where the source knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDetails {
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `kind/name` of what runs it (`deployment/web`).
    pub workload: Option<String>,
}

/// Where the agent learns which pods are on its node.
#[derive(Clone)]
pub enum PodSource {
    /// Named network namespaces whose veth leads to the node (standalone); not this one.
    Netns(Option<String>),
    /// An inventory file.
    File(std::path::PathBuf),
    /// The Kubernetes API's watch of this node's pods.
    Kube(std::sync::Arc<outflow_kube::PodWatch>),
}

impl PodSource {
    /// A fresh inventory over this source.
    pub fn inventory(&self) -> Result<Box<dyn Inventory>, InventoryError> {
        Ok(match self {
            PodSource::Netns(node_netns) => Box::new(NetnsInventory::new(node_netns.clone())),
            PodSource::File(f) => Box::new(FileInventory::load(f)?),
            PodSource::Kube(w) => Box::new(crate::kube_inventory::KubeInventory::new(w.clone())),
        })
    }
}

impl std::fmt::Debug for PodSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodSource::Netns(ns) => write!(f, "Netns({ns:?})"),
            PodSource::File(p) => write!(f, "File({})", p.display()),
            PodSource::Kube(_) => write!(f, "Kube"),
        }
    }
}

/// Addresses grouped by pod, each list sorted.
pub(crate) fn by_pod(
    pods: &HashMap<IpAddr, PodRef>,
) -> std::collections::BTreeMap<PodRef, Vec<IpAddr>> {
    let mut all: std::collections::BTreeMap<PodRef, Vec<IpAddr>> = Default::default();
    for (ip, pod) in pods {
        all.entry(pod.clone()).or_default().push(*ip);
    }
    for ips in all.values_mut() {
        ips.sort();
    }
    all
}

#[cfg(test)]
mod tests {
    use super::route::by_route;
    use super::*;
    use crate::netlink;

    #[test]
    fn an_inventory_file_maps_each_address_to_its_pod() {
        let inv = FileInventory::parse(
            "pods:\n  - {namespace: shop, name: web-1, ips: [10.244.1.5, 'fd00::5']}\n  - {name: db, ips: [10.244.1.6]}\n",
        )
        .expect("valid");
        let web = inv.pod_of("fd00::5".parse().unwrap()).expect("known");
        assert_eq!(
            (web.namespace.as_str(), web.name.as_str()),
            ("shop", "web-1")
        );
        assert_eq!(
            inv.pod_of("10.244.1.6".parse().unwrap()).unwrap().namespace,
            "default"
        );
        assert!(inv.pod_of("10.244.1.7".parse().unwrap()).is_none());
        assert_eq!(inv.details(web).workload, None, "the workload is optional");
    }

    #[test]
    fn an_inventory_file_may_name_each_pods_workload() {
        let inv = FileInventory::parse(
            "pods:\n  - {namespace: kube-system, name: coredns-1, ips: [10.244.1.53], workload: deployment/coredns}\n",
        )
        .expect("valid");
        let dns = inv.pod_of("10.244.1.53".parse().unwrap()).expect("known");
        assert_eq!(
            inv.details(dns).workload.as_deref(),
            Some("deployment/coredns")
        );
    }

    fn link(index: u32, name: &str, peer_netnsid: Option<i32>) -> Link {
        Link {
            index,
            name: name.into(),
            peer_index: if peer_netnsid.is_some() { 2 } else { 0 },
            peer_netnsid,
            mac: None,
        }
    }

    const POD_MAC: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 0x11];

    fn neighbour(
        index: u32,
        ip: Option<&str>,
        mac: [u8; 6],
        bridge: Option<u32>,
    ) -> netlink::Neighbour {
        netlink::Neighbour {
            index,
            ip: ip.map(|i| i.parse().unwrap()),
            mac: Some(mac),
            bridge,
        }
    }

    #[test]
    fn a_route_through_a_veth_is_the_pods_own_interface() {
        // Azure CNI, Calico, Cilium: a /32 route per pod through its host-side veth.
        let ip: IpAddr = "10.244.1.5".parse().unwrap();
        let links = [link(1, "eth0", None), link(7, "azv5", Some(3))];
        let neigh = [neighbour(7, Some("10.244.1.5"), POD_MAC, None)];
        let i = interface_for(ip, Some(7), &links, &neigh).unwrap();
        assert_eq!(i.node_side, "azv5");
        assert_eq!(i.pod_mac, Some(POD_MAC));
        // No neighbour entry yet: still the pod's interface, directions then by libpcap's.
        let i = interface_for(ip, Some(7), &links, &[]).unwrap();
        assert_eq!((i.node_side.as_str(), i.pod_mac), ("azv5", None));
    }

    #[test]
    fn behind_a_bridge_the_pod_is_the_port_its_address_was_learnt_on() {
        // kubenet: the route is the bridge's; the forwarding database knows the port.
        let ip: IpAddr = "10.244.1.5".parse().unwrap();
        let links = [
            link(4, "cbr0", None),
            link(8, "veth-other", Some(2)),
            link(9, "veth-web", Some(3)),
        ];
        let other_mac = [2, 0, 0, 0, 0, 0x99];
        let neigh = [
            neighbour(4, Some("10.244.1.5"), POD_MAC, None),
            neighbour(8, None, other_mac, Some(4)),
            neighbour(9, None, POD_MAC, Some(4)),
        ];
        let i = interface_for(ip, Some(4), &links, &neigh).unwrap();
        assert_eq!(
            (i.node_side.as_str(), i.pod_mac),
            ("veth-web", Some(POD_MAC))
        );

        let e = interface_for(ip, Some(4), &links, &neigh[1..])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("behind bridge cbr0") && e.contains("-i cbr0 'host 10.244.1.5'"),
            "{e}"
        );
    }

    #[test]
    fn a_shared_interface_or_no_route_is_refused_with_what_to_do() {
        let ip: IpAddr = "10.244.1.5".parse().unwrap();
        let links = [link(1, "eth0", None)];
        let e = interface_for(ip, Some(1), &links, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("through eth0") && e.contains("-i eth0 'host 10.244.1.5'"),
            "{e}"
        );
        let e = interface_for(ip, None, &links, &[]).unwrap_err();
        assert_eq!(e, RouteError::NoRoute { ip });
        assert_eq!(e.to_string(), "the node has no route to 10.244.1.5");
    }

    #[test]
    fn each_pods_own_interface_names_it_by_index_and_shared_ones_name_no_pod() {
        let web = PodRef {
            namespace: "shop".into(),
            name: "web".into(),
        };
        let db = PodRef {
            namespace: "shop".into(),
            name: "db".into(),
        };
        let owners: HashMap<IpAddr, PodRef> = [
            ("10.244.1.5".parse().unwrap(), web.clone()),
            ("fd00::5".parse().unwrap(), web.clone()),
            ("10.244.1.6".parse().unwrap(), db.clone()),
            ("10.244.1.7".parse().unwrap(), db.clone()),
        ]
        .into();
        let links = [
            link(1, "eth0", None),
            link(7, "azv5", Some(3)),
            link(8, "azv6", Some(4)),
        ];
        // web's addresses both route through its veth; db's one through its own, one (a stale
        // route) through the uplink.
        let oif = |ip: IpAddr| match ip.to_string().as_str() {
            "10.244.1.5" | "fd00::5" => Some(7),
            "10.244.1.6" => Some(8),
            _ => Some(1),
        };
        let (by_index, complete) = by_route(&owners, &links, &[], oif);
        assert_eq!(by_index.get(&7), Some(&web));
        assert_eq!(by_index.get(&8), Some(&db));
        assert_eq!(by_index.get(&1), None, "the uplink is no pod's");
        assert!(!complete, "10.244.1.7 found no interface of its own");

        // Two pods routed through one veth: it cannot say which, so it names neither.
        let (by_index, _) = by_route(&owners, &links, &[], |_| Some(7));
        assert!(by_index.is_empty(), "{by_index:?}");
    }

    #[test]
    fn a_pod_missing_from_the_inventory_file_is_named() {
        let inv =
            FileInventory::parse("pods:\n  - {namespace: shop, name: web-1, ips: [10.244.1.5]}\n")
                .unwrap();
        let e = inv
            .interfaces_of(&PodRef {
                namespace: "shop".into(),
                name: "ghost".into(),
            })
            .unwrap_err();
        assert_eq!(e, "pod shop/ghost is not in the inventory file");
    }

    #[test]
    fn a_bad_inventory_file_says_what_was_expected() {
        let e = FileInventory::parse("pods:\n  - {name: web, ips: [10.244.1]}\n").unwrap_err();
        let e = outflow_core::error_chain(&e);
        assert!(e.contains("expected `pods:") && e.contains("line 2"), "{e}");
        let e = FileInventory::parse("pod: []\n").unwrap_err();
        assert!(
            outflow_core::error_chain(&e).contains("unknown field"),
            "{e}"
        );
    }
}
