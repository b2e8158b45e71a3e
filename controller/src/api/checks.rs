//! What a report must be before it is stored: nothing an agent says is trusted. Times are
//! placed by the controller's clock, and every string and list an agent sends is bounded, so a
//! hostile report cannot fill the store, the metrics or the page.

use outflow_core::wire::{NodeReport, Scope};

use super::error::ApiError;

/// How far ahead of the controller's clock a window may end: clocks of nodes and controller
/// differ by seconds under NTP, not minutes.
pub const MAX_CLOCK_SKEW_NS: u64 = 5 * 60 * 1_000_000_000;

/// Refuses a window the controller's clock cannot place: ending in the future (a node's clock
/// is wrong), or older than the retention (it would be deleted at once).
pub(super) fn check_window(r: &NodeReport, now: u64, retention_ns: u64) -> Result<(), ApiError> {
    if r.window_end_ns > now.saturating_add(MAX_CLOCK_SKEW_NS) {
        return Err(ApiError::BadRequest(format!(
            "report: the window ends {}s after the controller's clock: the node's clock is \
             wrong (check chrony/NTP on node {:.253})",
            (r.window_end_ns - now) / 1_000_000_000,
            r.node
        )));
    }
    if r.window_end_ns < now.saturating_sub(retention_ns) {
        return Err(ApiError::BadRequest(format!(
            "report: the window ended {}s ago, longer than the retention ({}s): nothing of it \
             would be kept",
            (now - r.window_end_ns) / 1_000_000_000,
            retention_ns / 1_000_000_000
        )));
    }
    Ok(())
}

pub(super) fn check_report(r: &NodeReport) -> Result<(), ApiError> {
    if r.report_id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > 64)
    {
        return Err(ApiError::BadRequest(
            "report: report_id must be 1 to 64 characters".into(),
        ));
    }
    if r.node.is_empty() || r.node.len() > 253 {
        return Err(ApiError::BadRequest(
            "report: node must be 1 to 253 characters".into(),
        ));
    }
    if r.window_end_ns < r.window_start_ns {
        return Err(ApiError::BadRequest(
            "report: window_end_ns is before window_start_ns".into(),
        ));
    }
    if r.window_end_ns > i64::MAX as u64 {
        return Err(ApiError::BadRequest(
            "report: window_end_ns is out of range".into(),
        ));
    }
    if r.pods.len() > MAX_NODE_PODS {
        return Err(ApiError::BadRequest(format!(
            "report: {} pods on one node; a node holds at most {MAX_NODE_PODS}",
            r.pods.len()
        )));
    }
    check_records(r)?;
    for p in &r.pods {
        // Kubernetes' own limits: a namespace is a DNS label, a pod name a DNS subdomain.
        if p.namespace.is_empty() || p.namespace.len() > 63 || p.pod.is_empty() || p.pod.len() > 253
        {
            return Err(ApiError::BadRequest(format!(
                "report: pod {:.80}/{:.80}: a namespace is 1 to 63 characters, a pod name 1 to 253",
                p.namespace, p.pod
            )));
        }
        if p.addresses.len() > 16 || p.interfaces.len() > 16 {
            return Err(ApiError::BadRequest(format!(
                "report: pod {}/{} lists more than 16 addresses or interfaces",
                p.namespace, p.pod
            )));
        }
    }
    Ok(())
}

/// Most pods one report may list (Kubernetes allows 110 per node by default, 250 on AKS at most;
/// the margin is for standalone labs).
const MAX_NODE_PODS: usize = 5_000;

/// A string of at most `max` bytes, or a 400 naming `what`.
fn bounded(what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::BadRequest(format!(
            "report: {what} is {} bytes, at most {max} are accepted",
            value.len()
        )));
    }
    Ok(())
}

/// At most `max` strings of at most `each` bytes.
fn bounded_list<'a>(
    what: &str,
    values: impl ExactSizeIterator<Item = &'a String>,
    max: usize,
    each: usize,
) -> Result<(), ApiError> {
    if values.len() > max {
        return Err(ApiError::BadRequest(format!(
            "report: {} {what}, at most {max} are accepted",
            values.len()
        )));
    }
    values.into_iter().try_for_each(|v| bounded(what, v, each))
}

/// Kubernetes' own limits on a record's pod: a namespace is a DNS label, a pod name a DNS
/// subdomain, a workload `kind/name`.
fn check_scope(s: &Scope) -> Result<(), ApiError> {
    bounded(
        "a record's namespace",
        s.namespace.as_deref().unwrap_or_default(),
        63,
    )?;
    bounded("a record's pod", s.pod.as_deref().unwrap_or_default(), 253)?;
    bounded(
        "a record's pod_uid",
        s.pod_uid.as_deref().unwrap_or_default(),
        64,
    )?;
    bounded(
        "a record's workload",
        s.workload.as_deref().unwrap_or_default(),
        317,
    )
}

/// A DNS name in text, escapes included, stays well within this.
const NAME: usize = 1024;
/// A sentence of a finding.
const SENTENCE: usize = 4096;

fn check_records(r: &NodeReport) -> Result<(), ApiError> {
    for c in &r.connections {
        check_scope(&c.scope)?;
        let c = &c.record;
        bounded("a connection's proto", &c.proto, 8)?;
        bounded(
            "a connection's label",
            c.label.as_deref().unwrap_or_default(),
            64,
        )?;
        bounded(
            "a connection's egress",
            c.egress.as_deref().unwrap_or_default(),
            64,
        )?;
        bounded_list("names of a connection", c.names.iter(), 64, NAME)?;
        bounded_list(
            "ICMP codes of a connection",
            c.unreachable_codes.keys(),
            32,
            64,
        )?;
        bounded_list(
            "HTTP statuses of a connection",
            c.http_statuses.keys(),
            64,
            16,
        )?;
        if c.proxy_connects.len() > 64 || c.icmp_from.len() > 64 {
            return Err(ApiError::BadRequest(
                "report: a connection lists more than 64 proxy targets or ICMP senders".into(),
            ));
        }
    }
    for d in &r.dns {
        check_scope(&d.scope)?;
        let d = &d.record;
        bounded("a DNS lookup's name", &d.name, NAME)?;
        bounded("a DNS lookup's qtype", &d.qtype, 16)?;
        bounded(
            "a DNS lookup's resolved_as",
            d.resolved_as.as_deref().unwrap_or_default(),
            NAME,
        )?;
        if d.servers.len() > 64 || d.answers.len() > 256 {
            return Err(ApiError::BadRequest(
                "report: a DNS lookup lists more than 64 servers or 256 answers".into(),
            ));
        }
    }
    for f in &r.findings {
        check_scope(&f.scope)?;
        let f = &f.record;
        bounded("a finding's kind", &f.kind, 64)?;
        bounded("a finding's message", &f.message, SENTENCE)?;
        bounded(
            "a finding's target",
            f.target.as_deref().unwrap_or_default(),
            NAME,
        )?;
        bounded_list(
            "evidence lines of a finding",
            f.evidence.iter(),
            64,
            SENTENCE,
        )?;
        bounded_list(
            "next checks of a finding",
            f.next_checks.iter(),
            64,
            SENTENCE,
        )?;
    }
    Ok(())
}
