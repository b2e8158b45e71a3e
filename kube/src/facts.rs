//! What the cluster tells of its own network: every node's pod ranges, the ServiceCIDRs, and
//! the addresses of the `kubernetes` and `kube-dns` Services. Kept from the same watch events
//! that name destinations, with the same relist rule (a complete list replaces a kind whole).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::watcher::Event;
use kube::ResourceExt;

use outflow_core::wire::cluster::ClusterProfile;

/// Objects of one kind by `namespace/name`, each with what it tells, relisted whole.
#[derive(Debug)]
struct Kept<V> {
    now: BTreeMap<String, V>,
    relist: Option<BTreeMap<String, V>>,
    listed: bool,
}

impl<V> Default for Kept<V> {
    fn default() -> Self {
        Kept {
            now: BTreeMap::new(),
            relist: None,
            listed: false,
        }
    }
}

impl<V> Kept<V> {
    /// Applies an event; `tell` is what an object says (`None`: nothing worth keeping).
    fn apply<K: kube::Resource>(&mut self, event: &Event<K>, tell: impl Fn(&K) -> Option<V>) {
        let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        match event {
            Event::Apply(o) => match tell(o) {
                Some(v) => {
                    self.now.insert(key(o), v);
                }
                None => {
                    self.now.remove(&key(o));
                }
            },
            Event::Delete(o) => {
                self.now.remove(&key(o));
            }
            Event::Init => self.relist = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                if let Some(v) = tell(o) {
                    self.relist.get_or_insert_default().insert(key(o), v);
                }
            }
            Event::InitDone => {
                self.now = self.relist.take().unwrap_or_default();
                self.listed = true;
            }
        }
    }
}

/// The cluster's network as its objects tell it.
#[derive(Debug, Default)]
pub struct NetworkFacts {
    node_pod_cidrs: Kept<Vec<IpNet>>,
    node_addresses: Kept<Vec<IpAddr>>,
    service_cidrs: Kept<Vec<IpNet>>,
    /// `default/kubernetes` and `kube-system/kube-dns`, by key.
    services: Kept<Vec<IpAddr>>,
    /// Whether the API serves ServiceCIDRs (`None`: not asked yet).
    serves_service_cidrs: Option<bool>,
    cluster_domain: Option<String>,
}

const API_SERVICE: &str = "default/kubernetes";
const DNS_SERVICE: &str = "kube-system/kube-dns";

fn parse_nets<'a>(all: impl IntoIterator<Item = &'a String>) -> Vec<IpNet> {
    all.into_iter().filter_map(|c| c.parse().ok()).collect()
}

impl NetworkFacts {
    /// Applies a Node event: its `spec.podCIDRs` (or the older `spec.podCIDR`) and InternalIPs.
    pub fn apply_node(&mut self, event: &Event<Node>) {
        self.node_addresses.apply(event, |n| {
            let all = n.status.as_ref()?.addresses.as_ref()?;
            let ips: Vec<IpAddr> = all
                .iter()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect();
            (!ips.is_empty()).then_some(ips)
        });
        self.node_pod_cidrs.apply(event, |n| {
            let spec = n.spec.as_ref()?;
            let mut nets = parse_nets(spec.pod_cidrs.iter().flatten());
            if nets.is_empty() {
                nets = parse_nets(spec.pod_cidr.iter());
            }
            (!nets.is_empty()).then_some(nets)
        });
    }

    /// Applies a Service event; only the API server's and the cluster DNS's are kept.
    pub fn apply_service(&mut self, event: &Event<Service>) {
        let wanted = |s: &Service| {
            let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
            key == API_SERVICE || key == DNS_SERVICE
        };
        // Only the two Services matter: the others are not looked at further.
        if let Event::Apply(s) | Event::Delete(s) | Event::InitApply(s) = event {
            if !wanted(s) {
                return;
            }
        }
        self.services.apply(event, |s| {
            let spec = s.spec.as_ref()?;
            // `clusterIP` is also the first of `clusterIPs`.
            let mut ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|ip| ip.parse().ok())
                .collect();
            ips.sort();
            ips.dedup();
            Some(ips)
        });
    }

    /// Applies a ServiceCIDR event.
    pub fn apply_service_cidr(&mut self, event: &Event<ServiceCIDR>) {
        self.serves_service_cidrs = Some(true);
        self.service_cidrs.apply(event, |s| {
            let nets = parse_nets(s.spec.as_ref()?.cidrs.iter().flatten());
            (!nets.is_empty()).then_some(nets)
        });
    }

    /// Records whether the API serves ServiceCIDRs at all (Kubernetes before 1.33 does not).
    pub fn set_serves_service_cidrs(&mut self, serves: bool) {
        self.serves_service_cidrs = Some(serves);
    }

    /// Sets the cluster DNS domain (from the controller pod's resolver).
    pub fn set_cluster_domain(&mut self, domain: Option<String>) {
        self.cluster_domain = domain;
    }

    /// What the cluster tells now, with a note for each thing it does not.
    pub fn profile(&self) -> ClusterProfile {
        let mut pod_cidrs: Vec<IpNet> = self
            .node_pod_cidrs
            .now
            .values()
            .flatten()
            .copied()
            .collect();
        pod_cidrs.sort();
        pod_cidrs.dedup();
        let mut service_cidrs: Vec<IpNet> =
            self.service_cidrs.now.values().flatten().copied().collect();
        service_cidrs.sort();
        service_cidrs.dedup();
        let mut node_addresses: Vec<IpAddr> = self
            .node_addresses
            .now
            .values()
            .flatten()
            .copied()
            .collect();
        node_addresses.sort();
        node_addresses.dedup();
        let of = |key: &str| self.services.now.get(key).cloned().unwrap_or_default();
        let cluster_dns = of(DNS_SERVICE);
        let mut service_addresses = of(API_SERVICE);
        service_addresses.extend(&cluster_dns);
        let mut notes = Vec::new();
        if self.node_pod_cidrs.listed && pod_cidrs.is_empty() {
            notes.push(
                "no node has spec.podCIDRs (pods take VNet addresses, as with Azure CNI): pod \
                 ranges come from the profile's podCIDRs"
                    .to_string(),
            );
        }
        if self.serves_service_cidrs == Some(false) {
            notes.push(
                "the API serves no ServiceCIDRs (Kubernetes before 1.33): the service range comes \
                 from the profile's serviceCIDRs; the kubernetes and kube-dns Service addresses \
                 count as services either way"
                    .to_string(),
            );
        }
        if self.services.listed && cluster_dns.is_empty() {
            notes
                .push("no kube-system/kube-dns Service: the cluster DNS address is unknown".into());
        }
        if self.cluster_domain.is_none() {
            notes.push(
                "the cluster domain is not in the controller's resolver search list (not in a \
                 pod?): it comes from the profile's clusterDomain"
                    .to_string(),
            );
        }
        ClusterProfile {
            pod_cidrs,
            service_cidrs,
            service_addresses,
            node_addresses,
            cluster_dns,
            cluster_domain: self.cluster_domain.clone(),
            notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidrs: &[&str]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDRs": cidrs, "podCIDR": cidrs.first()},
        }))
        .unwrap()
    }

    fn service(ns: &str, name: &str, ip: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "clusterIPs": [ip]},
        }))
        .unwrap()
    }

    #[test]
    fn a_relist_drops_the_nodes_that_left() {
        let mut f = NetworkFacts::default();
        f.apply_node(&Event::Init);
        f.apply_node(&Event::InitApply(node("a", &["10.244.0.0/24"])));
        f.apply_node(&Event::InitApply(node(
            "b",
            &["10.244.1.0/24", "fd00:10:244:1::/64"],
        )));
        f.apply_node(&Event::InitDone);
        assert_eq!(f.profile().pod_cidrs.len(), 3);
        f.apply_node(&Event::Init);
        f.apply_node(&Event::InitApply(node("b", &["10.244.1.0/24"])));
        f.apply_node(&Event::InitDone);
        let cidrs: Vec<String> = f
            .profile()
            .pod_cidrs
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(cidrs, ["10.244.1.0/24"]);
        // Nodes without addresses in status tell none.
        assert!(f.profile().node_addresses.is_empty());
    }

    #[test]
    fn only_the_api_and_dns_services_are_kept() {
        let mut f = NetworkFacts::default();
        f.apply_service(&Event::Init);
        f.apply_service(&Event::InitApply(service(
            "default",
            "kubernetes",
            "10.0.0.1",
        )));
        f.apply_service(&Event::InitApply(service(
            "kube-system",
            "kube-dns",
            "10.0.0.10",
        )));
        f.apply_service(&Event::InitApply(service("shop", "web", "10.0.7.7")));
        f.apply_service(&Event::InitDone);
        let p = f.profile();
        assert_eq!(p.cluster_dns, ["10.0.0.10".parse::<IpAddr>().unwrap()]);
        let addresses: Vec<String> = p.service_addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["10.0.0.1", "10.0.0.10"]);
        f.apply_service(&Event::Delete(service(
            "kube-system",
            "kube-dns",
            "10.0.0.10",
        )));
        let p = f.profile();
        assert!(p.cluster_dns.is_empty());
        assert!(
            p.notes.iter().any(|n| n.contains("kube-dns")),
            "{:?}",
            p.notes
        );
    }
}
