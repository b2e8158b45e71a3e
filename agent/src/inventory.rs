//! Which pod an address belongs to.
//!
//! Behind one small trait, so the Kubernetes API can take over later: standalone, each named
//! network namespace whose veth peer is on this node is a pod (`/run/netns/NAME` → pod
//! `default/NAME`), or an inventory file says which addresses belong to which pod.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::netlink::{self, Link};
use crate::netns;

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
    pub fn inventory(&self) -> anyhow::Result<Box<dyn Inventory>> {
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

/// Pods from named network namespaces whose veth peer is on this node.
#[derive(Debug, Default)]
pub struct NetnsInventory {
    /// The namespace playing the node, which is not a pod.
    node_netns: Option<String>,
    pods: HashMap<IpAddr, PodRef>,
    /// Veths per pod.
    interfaces: HashMap<PodRef, Vec<PodInterface>>,
    /// The pod behind each node-side veth, by index.
    by_index: HashMap<u32, PodRef>,
}

impl NetnsInventory {
    /// An inventory that ignores `node_netns` (itself).
    pub fn new(node_netns: Option<String>) -> Self {
        NetnsInventory {
            node_netns,
            pods: HashMap::new(),
            interfaces: HashMap::new(),
            by_index: HashMap::new(),
        }
    }
}

impl Inventory for NetnsInventory {
    fn refresh(&mut self, node_links: &[Link]) {
        let mut pods = HashMap::new();
        let mut interfaces: HashMap<PodRef, Vec<PodInterface>> = HashMap::new();
        let mut by_index = HashMap::new();
        for name in netns::names() {
            if Some(&name) == self.node_netns.as_ref() {
                continue;
            }
            // Which of the node's veths lead into this namespace: indexes alone are only unique
            // within a namespace, and identical namespaces built alike share them.
            let nsid = std::fs::File::open(netns::path_of(&name))
                .and_then(|f| netlink::nsid_of(std::os::fd::AsFd::as_fd(&f)));
            let Ok(Some(nsid)) = nsid else {
                continue; // no veth between this namespace and the node
            };
            // A namespace can vanish between listing and entering: it is simply not a pod now.
            let Ok((links, addrs)) =
                netns::run_in(&name, || Ok((netlink::links()?, netlink::addresses()?)))
            else {
                continue;
            };
            // A veth pair names each other's index: both must match, since indexes are only
            // unique within a namespace.
            let pairs: Vec<(u32, u32, PodInterface)> = links
                .iter()
                .filter(|l| l.peer_index != 0)
                .filter_map(|l| {
                    node_links
                        .iter()
                        .find(|n| {
                            n.peer_netnsid == Some(nsid)
                                && n.index == l.peer_index
                                && n.peer_index == l.index
                        })
                        .map(|n| {
                            let iface = PodInterface {
                                node_side: n.name.clone(),
                                pod_mac: l.mac,
                            };
                            (l.index, n.index, iface)
                        })
                })
                .collect();
            let pod = PodRef {
                namespace: "default".to_string(),
                name: name.clone(),
            };
            for (index, ip) in addrs {
                if pairs.iter().any(|(i, _, _)| *i == index) {
                    pods.insert(ip, pod.clone());
                }
            }
            for (_, node_index, _) in &pairs {
                by_index.insert(*node_index, pod.clone());
            }
            if !pairs.is_empty() {
                interfaces.insert(pod, pairs.into_iter().map(|(_, _, i)| i).collect());
            }
        }
        self.pods = pods;
        self.interfaces = interfaces;
        self.by_index = by_index;
    }

    fn pod_on_interface(&self, ifindex: u32) -> Option<&PodRef> {
        self.by_index.get(&ifindex)
    }

    fn interfaces_of(&self, pod: &PodRef) -> Result<Vec<PodInterface>, String> {
        match self.interfaces.get(pod) {
            Some(i) if !i.is_empty() => Ok(i.clone()),
            _ => Err(format!(
                "pod {}/{} has no interface on this node (pods are named network namespaces \
                 whose veth leads to the node; `ip netns list` shows them)",
                pod.namespace, pod.name
            )),
        }
    }

    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
        self.pods.get(&ip)
    }

    fn pods(&self) -> Vec<(PodRef, Vec<IpAddr>)> {
        // A pod with a veth but no address yet is still a pod on this node.
        let mut all = by_pod(&self.pods);
        for pod in self.interfaces.keys() {
            all.entry(pod.clone()).or_default();
        }
        all.into_iter().collect()
    }
}

/// Addresses grouped by pod, each list sorted.
fn by_pod(pods: &HashMap<IpAddr, PodRef>) -> std::collections::BTreeMap<PodRef, Vec<IpAddr>> {
    let mut all: std::collections::BTreeMap<PodRef, Vec<IpAddr>> = Default::default();
    for (ip, pod) in pods {
        all.entry(pod.clone()).or_default().push(*ip);
    }
    for ips in all.values_mut() {
        ips.sort();
    }
    all
}

/// Pods from a file: `pods: [{namespace, name, ips: [...]}]` (YAML or JSON).
#[derive(Debug, Default)]
pub struct FileInventory {
    pods: HashMap<IpAddr, PodRef>,
    routed: RoutedInterfaces,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    pods: Vec<PodEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodEntry {
    #[serde(default = "default_namespace")]
    namespace: String,
    name: String,
    ips: Vec<IpAddr>,
}

fn default_namespace() -> String {
    "default".to_string()
}

impl FileInventory {
    /// Reads an inventory file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read inventory {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("inventory {}: {e}", path.display()))
    }

    /// Parses an inventory.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: InventoryFile = serde_yaml_ng::from_str(text).map_err(|e| {
            format!("{e} (expected `pods: [{{namespace: NS, name: NAME, ips: [10.244.1.5]}}]`)")
        })?;
        let mut pods = HashMap::new();
        for p in file.pods {
            for ip in p.ips {
                pods.insert(
                    ip,
                    PodRef {
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                    },
                );
            }
        }
        Ok(FileInventory {
            pods,
            routed: RoutedInterfaces::default(),
        })
    }
}

impl Inventory for FileInventory {
    fn refresh(&mut self, node_links: &[Link]) {
        // The file never changes: only the node's links and what its neighbours learnt do.
        self.routed.refresh(&self.pods, 0, node_links);
    }

    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
        self.pods.get(&ip)
    }

    fn pod_on_interface(&self, ifindex: u32) -> Option<&PodRef> {
        self.routed.pod_on(ifindex)
    }

    fn pods(&self) -> Vec<(PodRef, Vec<IpAddr>)> {
        by_pod(&self.pods).into_iter().collect()
    }

    /// Found the way the node reaches the pod's addresses: the route's interface, and behind a
    /// bridge the port the pod's Ethernet address was learnt on.
    fn interfaces_of(&self, pod: &PodRef) -> Result<Vec<PodInterface>, String> {
        interfaces_by_route(pod, &self.pods, "is not in the inventory file")
    }
}

/// Which pod each node-side interface leads to, found by how the node routes the pods'
/// addresses (as `interfaces_of` does), for an inventory that knows addresses, not interfaces.
///
/// Looked up at `refresh`, never per packet, and only again when the owners or the node's links
/// changed, or while an owned address has no interface yet (a bridge that has not learnt the
/// pod's Ethernet address).
#[derive(Debug, Default)]
pub(crate) struct RoutedInterfaces {
    /// What the last lookup was made from: the owners' generation and the node's links.
    made_from: Option<(u64, Vec<Link>)>,
    /// Every owned address found its interface at the last lookup.
    complete: bool,
    by_index: HashMap<u32, PodRef>,
}

impl RoutedInterfaces {
    /// Looks again if `owners` (at `generation`) or `node_links` changed since the last time.
    pub(crate) fn refresh(
        &mut self,
        owners: &HashMap<IpAddr, PodRef>,
        generation: u64,
        node_links: &[Link],
    ) {
        let same = self
            .made_from
            .as_ref()
            .is_some_and(|(g, l)| *g == generation && l.as_slice() == node_links);
        if same && self.complete {
            return;
        }
        let neighbours = match netlink::neighbours() {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list neighbours: pods by address only");
                self.by_index.clear();
                self.made_from = None;
                return;
            }
        };
        let (by_index, complete) = by_route(owners, node_links, &neighbours, |ip| {
            netlink::route_oif(ip).ok().flatten()
        });
        self.by_index = by_index;
        self.complete = complete;
        self.made_from = Some((generation, node_links.to_vec()));
    }

    /// The pod behind interface `ifindex`.
    pub(crate) fn pod_on(&self, ifindex: u32) -> Option<&PodRef> {
        self.by_index.get(&ifindex)
    }
}

/// The pod behind each node-side interface that the route to one of its addresses leads to
/// (`route_oif` looks the route up), and whether every address found one. An interface that
/// leads to two pods is neither's.
pub(crate) fn by_route(
    owners: &HashMap<IpAddr, PodRef>,
    node_links: &[Link],
    neighbours: &[netlink::Neighbour],
    route_oif: impl Fn(IpAddr) -> Option<u32>,
) -> (HashMap<u32, PodRef>, bool) {
    let mut by_index: HashMap<u32, PodRef> = HashMap::new();
    let mut shared = Vec::new();
    let mut complete = true;
    for (ip, pod) in owners {
        let found = interface_for(*ip, route_oif(*ip), node_links, neighbours)
            .ok()
            .and_then(|i| node_links.iter().find(|l| l.name == i.node_side));
        let Some(link) = found else {
            complete = false;
            continue;
        };
        match by_index.get(&link.index) {
            Some(other) if other != pod => shared.push(link.index),
            Some(_) => {}
            None => {
                by_index.insert(link.index, pod.clone());
            }
        }
    }
    for index in shared {
        by_index.remove(&index);
    }
    (by_index, complete)
}

/// A pod's node-side interfaces, found by how the node routes each of the addresses `owners`
/// gives it; `unknown` says why there are none when it has none.
pub(crate) fn interfaces_by_route(
    pod: &PodRef,
    owners: &HashMap<IpAddr, PodRef>,
    unknown: &str,
) -> Result<Vec<PodInterface>, String> {
    let mut ips: Vec<IpAddr> = owners
        .iter()
        .filter(|(_, p)| *p == pod)
        .map(|(ip, _)| *ip)
        .collect();
    if ips.is_empty() {
        return Err(format!("pod {}/{} {unknown}", pod.namespace, pod.name));
    }
    ips.sort();
    let io = |e: std::io::Error| format!("looking up the pod's interface: {e}");
    let links = netlink::links().map_err(io)?;
    let neighbours = netlink::neighbours().map_err(io)?;
    let mut found: Vec<PodInterface> = Vec::new();
    let mut why = Vec::new();
    for ip in ips {
        let oif = netlink::route_oif(ip).map_err(io)?;
        match interface_for(ip, oif, &links, &neighbours) {
            Ok(i) if !found.contains(&i) => found.push(i),
            Ok(_) => {}
            Err(e) => why.push(e),
        }
    }
    if found.is_empty() {
        return Err(format!(
            "pod {}/{}: {}",
            pod.namespace,
            pod.name,
            why.join("; ")
        ));
    }
    Ok(found)
}

/// The node-side interface of the pod at `ip`, given the interface the node routes `ip` out of
/// and the neighbour tables. A route through a veth into another namespace (Azure CNI, Calico,
/// Cilium) is the pod's own; a route through a bridge (kubenet, the bridge plugin) leads to the
/// bridge port the pod's Ethernet address was learnt on. Anything else is shared with other
/// pods, so it is not offered as the pod's.
pub fn interface_for(
    ip: IpAddr,
    oif: Option<u32>,
    links: &[Link],
    neighbours: &[netlink::Neighbour],
) -> Result<PodInterface, String> {
    let oif = oif.ok_or_else(|| format!("the node has no route to {ip}"))?;
    let link = links.iter().find(|l| l.index == oif).ok_or_else(|| {
        format!("the route to {ip} leaves through interface {oif}, which is gone")
    })?;
    let pod_mac = neighbours
        .iter()
        .find(|n| n.index == oif && n.ip == Some(ip))
        .and_then(|n| n.mac);
    let ports: Vec<&netlink::Neighbour> = neighbours
        .iter()
        .filter(|n| n.bridge == Some(oif))
        .collect();
    if !ports.is_empty() {
        let mac = pod_mac.ok_or_else(|| {
            format!(
                "{ip} is behind bridge {}, and the node has not yet seen its Ethernet address: \
                 let the pod send a packet, or capture on the bridge (-i {} 'host {ip}')",
                link.name, link.name
            )
        })?;
        let port = ports
            .iter()
            .find(|n| n.mac == Some(mac))
            .and_then(|n| links.iter().find(|l| l.index == n.index))
            .ok_or_else(|| {
                format!(
                    "{ip} is behind bridge {}, but no port of it has learnt the pod's address \
                     yet: capture on the bridge (-i {} 'host {ip}')",
                    link.name, link.name
                )
            })?;
        return Ok(PodInterface {
            node_side: port.name.clone(),
            pod_mac: Some(mac),
        });
    }
    if link.peer_netnsid.is_some() {
        return Ok(PodInterface {
            node_side: link.name.clone(),
            pod_mac,
        });
    }
    Err(format!(
        "{ip} is reached through {}, which other traffic shares: capture there with \
         -i {} 'host {ip}'",
        link.name, link.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let e = interface_for(ip, Some(4), &links, &neigh[1..]).unwrap_err();
        assert!(
            e.contains("behind bridge cbr0") && e.contains("-i cbr0 'host 10.244.1.5'"),
            "{e}"
        );
    }

    #[test]
    fn a_shared_interface_or_no_route_is_refused_with_what_to_do() {
        let ip: IpAddr = "10.244.1.5".parse().unwrap();
        let links = [link(1, "eth0", None)];
        let e = interface_for(ip, Some(1), &links, &[]).unwrap_err();
        assert!(
            e.contains("through eth0") && e.contains("-i eth0 'host 10.244.1.5'"),
            "{e}"
        );
        let e = interface_for(ip, None, &links, &[]).unwrap_err();
        assert_eq!(e, "the node has no route to 10.244.1.5");
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
        assert!(e.contains("expected `pods:"), "{e}");
        let e = FileInventory::parse("pod: []\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
