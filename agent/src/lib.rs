//! outflow-agent: watches every pod's traffic on a node and reports per pod what works and what
//! fails.
//!
//! The datapath (eBPF TC programs on the pods' host-side interfaces) counts traffic in the
//! kernel and sends control packets and DNS to the engine of `outflow-core`; the inventory says
//! which pod holds an address; every interval the engine's window report becomes a node report
//! for the controller. Nothing here decides outcomes: that is the engine's job.

pub mod capture;
pub mod capture_tasks;
pub mod clock;
pub mod cluster_profile;
pub mod datapath;
pub mod http;
pub mod inventory;
pub mod kube_inventory;
pub mod netlink;
pub mod netns;
pub mod readiness;
pub mod run;
pub mod scope;
pub mod ship;

pub use readiness::Readiness;
pub use run::{run, AgentConfig};
