//! Who an address is in the cluster: `service shop/web`, `pod shop/db-0 (statefulset/db)`,
//! `node aks-nodepool1-1`, or one of the platform's well-known addresses. The controller keeps one
//! cluster-wide index (not one per agent) and names each connection's destination at ingest, so a
//! record keeps the name its address had when the traffic happened.
//!
//! The index is kept per object the way kube's reflector keeps a store: watch events replace an
//! object's addresses, and a relist of a kind replaces that kind's objects whole when the list is
//! complete, so objects deleted while a watch was away leave. Changes are applied incrementally
//! (no rebuild of the whole map per event): a cluster of 100,000 pods changes all the time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

use crate::pod::PodInfo;

/// The kinds the index is made of, in the order their names win when two claim one address: a
/// Service's own address, a node's, a pod's, then an address a Service's endpoints list (an
/// endpoint that is a pod is named as the pod, which says more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamedKind {
    /// `spec.clusterIPs`, `spec.externalIPs`, `status.loadBalancer.ingress[].ip`.
    Service,
    /// `status.addresses` (InternalIP, ExternalIP).
    Node,
    /// `status.podIPs` of pods that hold them (not host-network, not finished).
    Pod,
    /// `endpoints[].addresses`, named as the slice's Service.
    EndpointSlice,
}

/// An object's identity within its kind: namespace and name.
type ObjectKey = (NamedKind, String, String);

/// An object's addresses and the name each is known by.
type Names = Vec<(IpAddr, String)>;

/// Addresses to names, built from watch events of the four kinds.
#[derive(Debug, Default)]
pub struct NameIndex {
    objects: HashMap<ObjectKey, Names>,
    /// Every claim on an address, the winning one first.
    by_address: HashMap<IpAddr, BTreeMap<ObjectKey, String>>,
    /// Relists under way: what each kind's complete list will be.
    relists: HashMap<NamedKind, HashMap<ObjectKey, Names>>,
    /// Nodes whose `spec.providerID` is `azure://…`: the cluster runs on Azure, and Azure's
    /// well-known addresses get their names.
    azure: BTreeSet<String>,
    /// The Azure nodes of a relist of Nodes under way.
    pending_azure: BTreeSet<String>,
    /// The kinds whose first list has arrived.
    listed: Vec<NamedKind>,
}

/// The name of `ip` when it is one of the platform's well-known addresses (the engine labels
/// the same Azure addresses in its records: `outflow_core::category`).
pub fn platform_name(ip: IpAddr, azure: bool) -> Option<&'static str> {
    use outflow_core::category::{AZURE_IMDS, AZURE_WIRESERVER};
    if ip == AZURE_IMDS {
        return Some(if azure {
            "azure instance metadata (IMDS)"
        } else {
            "instance metadata service"
        });
    }
    if !azure {
        return None;
    }
    if ip == AZURE_WIRESERVER {
        return Some("azure DNS and wireserver (168.63.129.16)");
    }
    match ip {
        IpAddr::V4(v4) if v4.octets() == [169, 254, 10, 10] => Some("AKS LocalDNS (VNet DNS)"),
        IpAddr::V4(v4) if v4.octets() == [169, 254, 10, 11] => Some("AKS LocalDNS (cluster DNS)"),
        _ => None,
    }
}

impl NameIndex {
    /// The name of `ip`: an object's, else the platform's, else none.
    pub fn name_of(&self, ip: IpAddr) -> Option<String> {
        self.by_address
            .get(&ip)
            .and_then(|claims| claims.values().next().cloned())
            .or_else(|| platform_name(ip, !self.azure.is_empty()).map(String::from))
    }

    /// Whether every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.listed.len() == 4
    }

    /// How many objects name at least one address.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether nothing is named yet.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Applies one Service event.
    pub fn apply_service(&mut self, event: Event<Service>) {
        self.apply(NamedKind::Service, event, service_names, |_| false);
    }

    /// Applies one Node event.
    pub fn apply_node(&mut self, event: Event<Node>) {
        self.apply(NamedKind::Node, event, node_names, node_on_azure);
    }

    /// Applies one Pod event.
    pub fn apply_pod(&mut self, event: Event<Pod>) {
        self.apply(NamedKind::Pod, event, pod_names, |_| false);
    }

    /// Applies one EndpointSlice event.
    pub fn apply_endpoint_slice(&mut self, event: Event<EndpointSlice>) {
        self.apply(NamedKind::EndpointSlice, event, slice_names, |_| false);
    }

    fn apply<K: kube::Resource>(
        &mut self,
        kind: NamedKind,
        event: Event<K>,
        names: fn(&K) -> Names,
        on_azure: fn(&K) -> bool,
    ) {
        let key = |o: &K| {
            let m = o.meta();
            (
                kind,
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
            )
        };
        match event {
            Event::Apply(o) => {
                let k = key(&o);
                if kind == NamedKind::Node {
                    if on_azure(&o) {
                        self.azure.insert(k.2.clone());
                    } else {
                        self.azure.remove(&k.2);
                    }
                }
                self.set(k, names(&o));
            }
            Event::Delete(o) => {
                let k = key(&o);
                if kind == NamedKind::Node {
                    self.azure.remove(&k.2);
                }
                self.set(k, Vec::new());
            }
            Event::Init => {
                self.relists.insert(kind, HashMap::new());
            }
            Event::InitApply(o) => {
                let (k, n) = (key(&o), names(&o));
                if on_azure(&o) {
                    self.pending_azure.insert(k.2.clone());
                }
                self.relists.entry(kind).or_default().insert(k, n);
            }
            Event::InitDone => {
                let fresh = self.relists.remove(&kind).unwrap_or_default();
                let stale: Vec<ObjectKey> = self
                    .objects
                    .keys()
                    .filter(|k| k.0 == kind && !fresh.contains_key(*k))
                    .cloned()
                    .collect();
                for k in stale {
                    self.set(k, Vec::new());
                }
                for (k, n) in fresh {
                    self.set(k, n);
                }
                if kind == NamedKind::Node {
                    self.azure = std::mem::take(&mut self.pending_azure);
                }
                if !self.listed.contains(&kind) {
                    self.listed.push(kind);
                }
            }
        }
    }

    /// Replaces the addresses `key` names (none: the object is gone).
    fn set(&mut self, key: ObjectKey, names: Names) {
        if let Some(old) = self.objects.remove(&key) {
            for (ip, _) in old {
                if let Some(claims) = self.by_address.get_mut(&ip) {
                    claims.remove(&key);
                    if claims.is_empty() {
                        self.by_address.remove(&ip);
                    }
                }
            }
        }
        if names.is_empty() {
            return;
        }
        for (ip, name) in &names {
            self.by_address
                .entry(*ip)
                .or_default()
                .insert(key.clone(), name.clone());
        }
        self.objects.insert(key, names);
    }
}

fn node_on_azure(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .is_some_and(|p| p.starts_with("azure://"))
}

/// The addresses among `ips` that parse (the API validates them; a replayed object may not).
fn parse_all<'a, I>(ips: I) -> Vec<IpAddr>
where
    I: IntoIterator<Item = &'a String>,
{
    ips.into_iter().filter_map(|ip| ip.parse().ok()).collect()
}

fn service_names(svc: &Service) -> Names {
    let meta = &svc.metadata;
    let name = format!(
        "service {}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    );
    let mut out = Names::new();
    if let Some(spec) = &svc.spec {
        // `None` is a headless Service: its name is on its endpoints.
        let cluster = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter());
        out.extend(parse_all(cluster).into_iter().map(|ip| (ip, name.clone())));
        out.extend(
            parse_all(spec.external_ips.iter().flatten())
                .into_iter()
                .map(|ip| (ip, name.clone())),
        );
    }
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let lb = format!("{name} (load balancer)");
    out.extend(
        parse_all(ingress.into_iter().flatten().filter_map(|i| i.ip.as_ref()))
            .into_iter()
            .map(|ip| (ip, lb.clone())),
    );
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn node_names(node: &Node) -> Names {
    let name = format!("node {}", node.metadata.name.as_deref().unwrap_or_default());
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    let ips = addresses
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .map(|a| &a.address);
    parse_all(ips)
        .into_iter()
        .map(|ip| (ip, name.clone()))
        .collect()
}

fn pod_names(pod: &Pod) -> Names {
    let Some(p) = PodInfo::from_pod(pod) else {
        return Names::new();
    };
    if !p.holds_addresses() {
        return Names::new();
    }
    let name = match &p.workload {
        Some(w) => format!("pod {}/{} ({w})", p.namespace, p.name),
        None => format!("pod {}/{}", p.namespace, p.name),
    };
    p.addresses.iter().map(|ip| (*ip, name.clone())).collect()
}

fn slice_names(slice: &EndpointSlice) -> Names {
    let meta = &slice.metadata;
    let Some(service) = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/service-name"))
    else {
        return Names::new();
    };
    let name = format!(
        "service {}/{service} (endpoint)",
        meta.namespace.as_deref().unwrap_or_default()
    );
    let ips = slice.endpoints.iter().flat_map(|e| e.addresses.iter());
    parse_all(ips)
        .into_iter()
        .map(|ip| (ip, name.clone()))
        .collect()
}
