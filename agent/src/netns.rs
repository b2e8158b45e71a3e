//! Named network namespaces (`/run/netns/NAME`): `outflow-check`'s, which enters them for its
//! checks the same way the agent does for its datapath and its looks into pods.

pub use outflow_check::netns::*;
