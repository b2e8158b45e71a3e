//! Who the Kubernetes API says a bearer token belongs to: a TokenReview's answer, as the kube
//! crate reads it and the controller's agent check takes it.
//!
//! Here because both sides share it and neither depends on the other: the kube crate asks the
//! API server, the controller decides what the answer lets an agent do.

use std::collections::BTreeMap;

/// The `status` of a TokenReview (authentication.k8s.io/v1), in the fields the controller reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewedToken {
    /// The API server recognised the token (signature, expiry, bound object alive).
    pub authenticated: bool,
    /// `user.username`: for a service account `system:serviceaccount:NAMESPACE:NAME`.
    pub username: String,
    /// `user.extra`: for a token bound to a pod, `authentication.kubernetes.io/pod-name`,
    /// `…/pod-uid` and (Kubernetes 1.30 and later) `…/node-name`.
    pub extra: BTreeMap<String, Vec<String>>,
    /// The audiences the token was found valid for (a subset of those asked for).
    pub audiences: Vec<String>,
    /// Why the token was not recognised, as the API server words it.
    pub error: Option<String>,
}

/// `user.extra` key naming the node of the pod a token is bound to (Kubernetes 1.30 and later).
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
/// `user.extra` key naming the pod a token is bound to.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
