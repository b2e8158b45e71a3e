//! Pods from an inventory file.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    by_pod, interfaces_by_route, Inventory, PodDetails, PodInterface, PodRef, RoutedInterfaces,
};
use crate::netlink::Link;

/// Pods from a file: `pods: [{namespace, name, ips: [...], workload}]` (YAML or JSON);
/// `workload` (`deployment/web`) is optional and names what runs the pod, as the Kubernetes
/// API would.
#[derive(Debug, Default)]
pub struct FileInventory {
    pods: HashMap<IpAddr, PodRef>,
    workloads: HashMap<PodRef, String>,
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
    /// `kind/name` of what runs the pod (`deployment/coredns`).
    #[serde(default)]
    workload: Option<String>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// An inventory file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file cannot be read.
    #[error("cannot read inventory {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not an inventory.
    #[error(
        "{}not an inventory: expected `pods: [{{namespace: NS, name: NAME, ips: [10.244.1.5]}}]`",
        path.as_ref().map(|p| format!("inventory {}: ", p.display())).unwrap_or_default()
    )]
    Parse {
        /// The file, when it came from one.
        path: Option<PathBuf>,
        /// What the YAML reader found wrong, and where.
        #[source]
        source: serde_yaml_ng::Error,
    },
}

impl FileInventory {
    /// Reads an inventory file.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|source| InventoryError::Parse {
            path: Some(path.to_path_buf()),
            source,
        })
    }

    /// Parses an inventory.
    pub fn parse(text: &str) -> Result<Self, InventoryError> {
        Self::from_yaml(text).map_err(|source| InventoryError::Parse { path: None, source })
    }

    fn from_yaml(text: &str) -> Result<Self, serde_yaml_ng::Error> {
        let file: InventoryFile = serde_yaml_ng::from_str(text)?;
        let mut pods = HashMap::new();
        let mut workloads = HashMap::new();
        for p in file.pods {
            let pod = PodRef {
                namespace: p.namespace,
                name: p.name,
            };
            for ip in p.ips {
                pods.insert(ip, pod.clone());
            }
            if let Some(w) = p.workload {
                workloads.insert(pod, w);
            }
        }
        Ok(FileInventory {
            pods,
            workloads,
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

    fn details(&self, pod: &PodRef) -> PodDetails {
        PodDetails {
            uid: None,
            workload: self.workloads.get(pod).cloned(),
        }
    }
}
