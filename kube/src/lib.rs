//! outflow's Kubernetes API access: the pods of one node from a watch, indexed by address; the
//! cluster's Services, EndpointSlices, Nodes and pods naming destinations; the controller's token
//! in a Secret; who an agent's token belongs to (TokenReview); the way to the controller through
//! the API server's proxy.
//!
//! Thin on purpose: the kube client and kube-runtime's watcher do the API's HTTP, list and
//! watch protocol; this crate turns Pod objects into what the agent attributes traffic to.

mod background;
mod cluster;
mod facts;
mod index;
mod names;
mod pod;
mod proxy;
mod secret;
mod token_review;
mod watch;

pub use cluster::ClusterNames;
pub use facts::NetworkFacts;
pub use index::{PodIndex, Snapshot};
pub use names::{platform_name, NameIndex, NamedKind};
pub use pod::PodInfo;
pub use proxy::{ServiceProxy, ServiceRef};
pub use secret::{ensure_token, ensure_token_blocking, read_token, TokenError, TOKEN_KEY};
pub use token_review::{TokenReviewError, TokenReviewer};
pub use watch::{client, AccessError, ClusterAccess, PodWatch};
