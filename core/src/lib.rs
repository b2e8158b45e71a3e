//! outflow-core: the engine that turns packets into connection outcomes, DNS lookups and findings.
//!
//! Pure and synchronous: no async runtime, no sockets, no file paths, and packet time as the only
//! clock, so a replayed capture and the live agent decide alike.
//!
//! ```no_run
//! use outflow_core::{capfile::CaptureReader, Engine, Profile};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut reader = CaptureReader::new(std::io::stdin().lock())?;
//! let mut engine = Engine::new(&Profile::default());
//! while reader.advance()? {
//!     engine.observe(&reader.packet().expect("advance returned true"));
//! }
//! let report = engine.finish();
//! # Ok(()) }
//! ```

pub mod app;
pub mod capfile;
pub mod category;
pub mod conn;
pub mod decode;
pub mod dedup;
pub mod dns;
pub mod engine;
mod error_chain;
pub mod findings;
pub mod icmp;
pub mod profile;
pub mod query;
pub mod report;
pub mod units;
pub mod wire;

pub use category::Category;
pub use conn::Outcome;
pub use dns::DnsOutcome;
pub use engine::{Config, Engine};
pub use error_chain::error_chain;
pub use profile::Profile;
pub use report::Report;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod robustness_tests;
#[cfg(test)]
pub mod testutil;
