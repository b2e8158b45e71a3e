//! The query grammar the CLI and the controller's API share: how a pod is named and which
//! outcome values a record filter accepts.
//!
//! Both sides check with the same functions, so a value the CLI takes is one the API takes,
//! and a mistake is refused with the same words before any work starts, instead of matching
//! nothing and printing an empty table.

use crate::category::Category;
use crate::conn::Outcome;
use crate::dns::DnsOutcome;
use crate::report::Severity;

/// The namespace a bare pod name is in, as kubectl has it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A value a query refused, with what would have been taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A pod reference that is neither `NAME` nor `NAMESPACE/NAME`.
    #[error(
        "pod {value:?} {why}: give NAME (with -n NAMESPACE) or NAMESPACE/NAME, e.g. shop/web-1"
    )]
    BadPod {
        /// What was given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A category that is not one of the contract's.
    #[error("category {value:?} is not one of internal, peered, onprem, public")]
    BadCategory {
        /// What was given.
        value: String,
    },
    /// A category filter on records that have none.
    #[error(
        "DNS lookups have no destination category: leave out the category, or ask for connections"
    )]
    NoCategory,
    /// An outcome that records of this kind never have.
    #[error("outcome {value:?} is not one of {allowed} for {kind}")]
    BadOutcome {
        /// What was given.
        value: String,
        /// The records asked for.
        kind: RecordKind,
        /// The accepted spellings, comma-separated.
        allowed: String,
    },
}

/// A pod as a person names it: `NAME` or `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The namespace, when the reference named one.
    pub namespace: Option<String>,
    /// The pod's name.
    pub name: String,
}

impl PodRef {
    /// Parses `NAME` or `NAMESPACE/NAME`. Kubernetes names hold no slash, whitespace or control
    /// characters and are at most 253 bytes; pods named by network namespaces or an inventory
    /// follow the same rule, so one grammar names every pod.
    pub fn parse(value: &str) -> Result<PodRef, QueryError> {
        let bad = |why| QueryError::BadPod {
            value: value.to_string(),
            why,
        };
        let (namespace, name) = match value.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, value),
        };
        if name.contains('/') {
            return Err(bad("has more than one '/'"));
        }
        for part in namespace.into_iter().chain([name]) {
            if part.is_empty() {
                return Err(bad("has an empty part"));
            }
            if part.len() > 253 {
                return Err(bad("is longer than 253 bytes"));
            }
            if part.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad("holds whitespace or control characters"));
            }
        }
        Ok(PodRef {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        })
    }

    /// The namespace: the reference's own, else `namespace`, else `default`.
    pub fn namespace_or<'a>(&'a self, namespace: Option<&'a str>) -> &'a str {
        self.namespace
            .as_deref()
            .or(namespace)
            .unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// Which records a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Connection records; outcomes are [`Outcome`]s.
    Connection,
    /// DNS lookups; outcomes are [`DnsOutcome`]s.
    Dns,
    /// Findings; the "outcome" filter is the [`Severity`].
    Finding,
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordKind::Connection => "connections",
            RecordKind::Dns => "DNS lookups",
            RecordKind::Finding => "findings (their severity)",
        })
    }
}

impl RecordKind {
    /// The outcome values records of this kind can have, in the contract's spelling.
    pub fn outcomes(self) -> Vec<&'static str> {
        match self {
            RecordKind::Connection => Outcome::ALL.iter().map(|o| o.as_str()).collect(),
            RecordKind::Dns => DnsOutcome::ALL.iter().map(|o| o.as_str()).collect(),
            RecordKind::Finding => [Severity::Error, Severity::Warning, Severity::Info]
                .iter()
                .map(|s| s.as_str())
                .collect(),
        }
    }

    /// Checks a category filter: one of the contract's, on records that have a category.
    pub fn check_category(self, value: &str) -> Result<(), QueryError> {
        if !Category::ALL.iter().any(|c| c.as_str() == value) {
            return Err(QueryError::BadCategory {
                value: value.to_string(),
            });
        }
        if self == RecordKind::Dns {
            return Err(QueryError::NoCategory);
        }
        Ok(())
    }

    /// Checks an outcome filter: one of [`RecordKind::outcomes`], exactly.
    pub fn check_outcome(self, value: &str) -> Result<(), QueryError> {
        let allowed = self.outcomes();
        if allowed.contains(&value) {
            return Ok(());
        }
        Err(QueryError::BadOutcome {
            value: value.to_string(),
            kind: self,
            allowed: allowed.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_takes_the_given_namespace_or_default() {
        let p = PodRef::parse("web-1").unwrap();
        assert_eq!(p.namespace, None);
        assert_eq!(p.name, "web-1");
        assert_eq!(p.namespace_or(Some("shop")), "shop");
        assert_eq!(p.namespace_or(None), "default");
    }

    #[test]
    fn a_namespaced_name_keeps_its_own_namespace() {
        let p = PodRef::parse("shop/web-1").unwrap();
        assert_eq!(p.namespace.as_deref(), Some("shop"));
        assert_eq!(p.name, "web-1");
        assert_eq!(p.namespace_or(Some("other")), "shop");
    }

    #[test]
    fn malformed_pod_references_are_refused_with_the_grammar() {
        for bad in ["a/b/c", "/web", "shop/", "", "we b", "shop/web\n"] {
            let e = PodRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("NAMESPACE/NAME"), "{bad:?}: {e}");
        }
        let long = "x".repeat(254);
        assert!(PodRef::parse(&long).is_err());
    }

    #[test]
    fn categories_are_the_contracts_and_dns_lookups_have_none() {
        assert!(RecordKind::Connection.check_category("onprem").is_ok());
        assert!(RecordKind::Finding.check_category("public").is_ok());
        assert_eq!(
            RecordKind::Connection.check_category("galactic"),
            Err(QueryError::BadCategory {
                value: "galactic".into()
            })
        );
        assert_eq!(
            RecordKind::Dns.check_category("public"),
            Err(QueryError::NoCategory)
        );
    }

    #[test]
    fn each_kind_takes_only_its_own_outcomes() {
        assert!(RecordKind::Connection.check_outcome("unanswered").is_ok());
        assert!(RecordKind::Dns.check_outcome("nxdomain").is_ok());
        assert!(RecordKind::Finding.check_outcome("error").is_ok());
        let e = RecordKind::Finding.check_outcome("unanswered").unwrap_err();
        assert_eq!(
            e.to_string(),
            "outcome \"unanswered\" is not one of error, warning, info for findings (their severity)"
        );
        assert!(RecordKind::Connection.check_outcome("nxdomain").is_err());
        assert!(RecordKind::Dns.check_outcome("established").is_err());
        // A LIKE wildcard is not a way to match every row.
        assert!(RecordKind::Connection.check_outcome("%").is_err());
        assert!(RecordKind::Connection.check_outcome("Unanswered").is_err());
    }
}
