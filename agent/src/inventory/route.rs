//! A pod's node-side interfaces found by how the node routes its addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{PodInterface, PodRef};
use crate::netlink::{self, Link};

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
            Err(e) => why.push(e.to_string()),
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

/// Why an address leads to no interface of its pod's own, and where to capture instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The node does not route the address at all.
    #[error("the node has no route to {ip}")]
    NoRoute {
        /// The pod's address.
        ip: IpAddr,
    },
    /// The route's interface vanished between the two lookups.
    #[error("the route to {ip} leaves through interface {oif}, which is gone")]
    Gone {
        /// The pod's address.
        ip: IpAddr,
        /// The route's interface index.
        oif: u32,
    },
    /// Behind a bridge, and the pod's Ethernet address is not known yet.
    #[error(
        "{ip} is behind bridge {bridge}, and the node has not yet seen its Ethernet address: \
         let the pod send a packet, or capture on the bridge (-i {bridge} 'host {ip}')"
    )]
    UnseenBehindBridge {
        /// The pod's address.
        ip: IpAddr,
        /// The bridge.
        bridge: String,
    },
    /// Behind a bridge, and no port has learnt the pod's Ethernet address yet.
    #[error(
        "{ip} is behind bridge {bridge}, but no port of it has learnt the pod's address \
         yet: capture on the bridge (-i {bridge} 'host {ip}')"
    )]
    UnlearntBehindBridge {
        /// The pod's address.
        ip: IpAddr,
        /// The bridge.
        bridge: String,
    },
    /// The route's interface carries other traffic too (the uplink, a tunnel).
    #[error(
        "{ip} is reached through {ifname}, which other traffic shares: capture there with \
         -i {ifname} 'host {ip}'"
    )]
    Shared {
        /// The pod's address.
        ip: IpAddr,
        /// The shared interface.
        ifname: String,
    },
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
) -> Result<PodInterface, RouteError> {
    let oif = oif.ok_or(RouteError::NoRoute { ip })?;
    let link = links
        .iter()
        .find(|l| l.index == oif)
        .ok_or(RouteError::Gone { ip, oif })?;
    let pod_mac = neighbours
        .iter()
        .find(|n| n.index == oif && n.ip == Some(ip))
        .and_then(|n| n.mac);
    let ports: Vec<&netlink::Neighbour> = neighbours
        .iter()
        .filter(|n| n.bridge == Some(oif))
        .collect();
    if !ports.is_empty() {
        let bridge = || link.name.clone();
        let mac = pod_mac.ok_or_else(|| RouteError::UnseenBehindBridge {
            ip,
            bridge: bridge(),
        })?;
        let port = ports
            .iter()
            .find(|n| n.mac == Some(mac))
            .and_then(|n| links.iter().find(|l| l.index == n.index))
            .ok_or_else(|| RouteError::UnlearntBehindBridge {
                ip,
                bridge: bridge(),
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
    Err(RouteError::Shared {
        ip,
        ifname: link.name.clone(),
    })
}
