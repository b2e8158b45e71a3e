//! Parses and validates what `outflow check` is asked to reach.
//!
//! A target is a name (`web.example.com`: HTTPS on 443), `name:port` (80 speaks HTTP, 443
//! HTTPS, any other port only TCP), an address (`10.0.0.5`, `[fd00::1]:8080`) or an `http://`
//! or `https://` URL. Everything is checked here, before anything is sent: a check runs inside
//! an agent, so a target is data to validate, never something to pass to a shell.

use std::net::IpAddr;

use outflow_core::wire::check::{CheckTarget, Protocol};

/// A target that cannot be checked, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Nothing given.
    #[error("the target is empty; give a name, name:port or URL (e.g. web.example.com:443)")]
    Empty,
    /// A scheme other than http and https.
    #[error("target {target:?}: scheme {scheme:?} is not checked; use http:// or https://, or name:port for TCP only")]
    Scheme {
        /// The target as given.
        target: String,
        /// The scheme.
        scheme: String,
    },
    /// A port that is not 1-65535.
    #[error("target {target:?}: port {port:?} is not a number from 1 to 65535")]
    Port {
        /// The target as given.
        target: String,
        /// The port text.
        port: String,
    },
    /// A host that is neither an address nor a DNS name.
    #[error("target {target:?}: {host:?} is not a DNS name or an IP address (letters, digits, '-' and '.', labels of 1-63 characters)")]
    Host {
        /// The target as given.
        target: String,
        /// The host text.
        host: String,
    },
    /// Credentials in a URL: a check must not carry secrets into logs and results.
    #[error("target {target:?}: credentials in the URL are not sent by a check; leave out the user:password@ part")]
    Credentials {
        /// The target as given.
        target: String,
    },
}

/// Parses a target; `TargetError` names what is wrong.
pub fn parse(target: &str) -> Result<CheckTarget, TargetError> {
    let given = target.trim();
    if given.is_empty() {
        return Err(TargetError::Empty);
    }
    let (scheme, rest) = match given.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, given),
    };
    let protocol = match scheme.as_deref() {
        None => None,
        Some("http") => Some(Protocol::Http),
        Some("https") => Some(Protocol::Https),
        Some(other) => {
            return Err(TargetError::Scheme {
                target: given.to_string(),
                scheme: other.to_string(),
            })
        }
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) if protocol.is_some() => (&rest[..i], Some(&rest[i..])),
        Some(_) => {
            return Err(TargetError::Host {
                target: given.to_string(),
                host: rest.to_string(),
            })
        }
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(TargetError::Credentials {
            target: given.to_string(),
        });
    }
    let (host, port) = split_host_port(authority);
    let port =
        match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                TargetError::Port {
                    target: given.to_string(),
                    port: p.to_string(),
                }
            })?),
        };
    let host = valid_host(host).ok_or_else(|| TargetError::Host {
        target: given.to_string(),
        host: host.to_string(),
    })?;
    let (protocol, port) = match (protocol, port) {
        (Some(Protocol::Http), p) => (Protocol::Http, p.unwrap_or(80)),
        (Some(_), p) => (Protocol::Https, p.unwrap_or(443)),
        (None, None) | (None, Some(443)) => (Protocol::Https, 443),
        (None, Some(80)) => (Protocol::Http, 80),
        (None, Some(p)) => (Protocol::Tcp, p),
    };
    let path = match protocol {
        Protocol::Tcp => None,
        _ => Some(
            path.filter(|p| p.starts_with('/'))
                .map_or_else(|| format!("/{}", path.unwrap_or_default()), str::to_string),
        ),
    };
    Ok(CheckTarget {
        host,
        port,
        protocol,
        path,
    })
}

/// `host:port`, `[v6]:port`, `[v6]`, a bare v6 address or a bare host.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        // More than one colon and no brackets: an IPv6 address without a port.
        Some((host, _)) if host.contains(':') => (authority, None),
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// The host in canonical form (an address as written by `IpAddr`, a name lowercased without a
/// trailing dot), or `None` when it is neither.
fn valid_host(host: &str) -> Option<String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let is_label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(is_label))
        .then(|| name.to_ascii_lowercase())
}

/// Whether the host is an address, so no DNS is asked.
pub fn host_addr(target: &CheckTarget) -> Option<IpAddr> {
    target.host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str) -> (String, u16, Protocol, Option<String>) {
        let t = parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        (t.host, t.port, t.protocol, t.path)
    }

    #[test]
    fn a_bare_name_is_https_on_443() {
        assert_eq!(
            ok("Web.Example.com."),
            (
                "web.example.com".into(),
                443,
                Protocol::Https,
                Some("/".into())
            )
        );
    }

    #[test]
    fn name_port_speaks_http_on_80_and_only_tcp_elsewhere() {
        assert_eq!(ok("web:80").2, Protocol::Http);
        assert_eq!(
            ok("db.svc:5432"),
            ("db.svc".into(), 5432, Protocol::Tcp, None)
        );
    }

    #[test]
    fn urls_keep_scheme_port_and_path() {
        assert_eq!(
            ok("http://web.example.com:8080/health?x=1"),
            (
                "web.example.com".into(),
                8080,
                Protocol::Http,
                Some("/health?x=1".into())
            )
        );
        assert_eq!(ok("HTTPS://api.example.com").1, 443);
    }

    #[test]
    fn addresses_v4_and_v6_with_and_without_ports() {
        assert_eq!(ok("10.0.0.5:22").0, "10.0.0.5");
        assert_eq!(
            ok("[fd00::1]:8080"),
            ("fd00::1".into(), 8080, Protocol::Tcp, None)
        );
        assert_eq!(ok("fd00::1").1, 443);
        assert_eq!(ok("http://[fd00::1]/").0, "fd00::1");
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        assert_eq!(parse("  "), Err(TargetError::Empty));
        assert!(matches!(parse("ftp://x"), Err(TargetError::Scheme { .. })));
        assert!(matches!(parse("x:0"), Err(TargetError::Port { .. })));
        assert!(matches!(parse("x:99999"), Err(TargetError::Port { .. })));
        assert!(matches!(parse("x:http"), Err(TargetError::Port { .. })));
        assert!(matches!(parse("a b"), Err(TargetError::Host { .. })));
        assert!(matches!(parse("-x.com"), Err(TargetError::Host { .. })));
        assert!(matches!(parse("x;rm -rf /"), Err(TargetError::Host { .. })));
        assert!(matches!(parse("x/path"), Err(TargetError::Host { .. })));
        assert!(matches!(
            parse("http://u:p@x/"),
            Err(TargetError::Credentials { .. })
        ));
        assert!(matches!(
            parse(&"a".repeat(64)),
            Err(TargetError::Host { .. })
        ));
        let msg = parse("x:0").unwrap_err().to_string();
        assert!(msg.contains("1 to 65535"), "{msg}");
    }
}
