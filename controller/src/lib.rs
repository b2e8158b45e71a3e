//! outflow-controller: collects the agents' window reports into SQLite and serves them.
//!
//! `api` holds the axum routes, `store` the SQLite tables. The embedded mode of `outflow up`
//! runs the same `AppState` in the agent's process and hands reports over without HTTP.

pub mod api;
pub mod captures;
mod clock;
pub mod metrics;
pub mod probes;
pub mod serve;
pub mod store;
pub mod view;

pub use api::{app, AppState};
pub use serve::{serve, ConnectionLimits};
pub use store::Store;
