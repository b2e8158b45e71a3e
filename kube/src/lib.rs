//! outflow's Kubernetes API access: the pods of one node from a watch, indexed by address.
//!
//! Thin on purpose: the kube client and kube-runtime's watcher do the API's HTTP, list and
//! watch protocol; this crate turns Pod objects into what the agent attributes traffic to.

mod index;
mod pod;
mod watch;

pub use index::{PodIndex, Snapshot};
pub use pod::PodInfo;
pub use watch::{client, AccessError, ClusterAccess, PodWatch};
