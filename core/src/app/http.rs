//! Cleartext HTTP/1.x: request targets, Host headers, response statuses, proxy CONNECTs.
//!
//! Requests and responses are paired in order (HTTP/1.1 answers in request order). `httparse`
//! parses the start line and headers; a head cut by snaplen or split across segments still yields
//! what was parsed before the cut.

use std::collections::VecDeque;

use super::event::AppEvent;
use super::SeqTracker;

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];
/// Requests waiting for a response, at most; more are not paired.
const MAX_PENDING: usize = 32;

/// Whether a client payload starts an HTTP/1.x request.
pub fn is_request(payload: &[u8]) -> bool {
    METHODS.iter().any(|m| payload.starts_with(m))
}

/// State of one HTTP flow.
#[derive(Debug, Default)]
pub struct HttpFlow {
    client_seq: SeqTracker,
    server_seq: SeqTracker,
    /// Requests sent and not answered yet: the CONNECT target, if it was a CONNECT.
    pending: VecDeque<Option<String>>,
}

impl HttpFlow {
    /// Feeds a payload. Returns false when a CONNECT tunnel was established.
    pub fn on_payload(
        &mut self,
        from_client: bool,
        seq: u32,
        payload: &[u8],
        out: &mut Vec<AppEvent>,
    ) -> bool {
        if from_client {
            if !self.client_seq.accept(seq, payload.len()) || !is_request(payload) {
                return true;
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            // A partial head still fills the fields parsed so far.
            let _ = req.parse(payload);
            let connect = req.method == Some("CONNECT");
            let target = req.path.map(str::to_string);
            let host = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::to_string);
            let name = if connect { target.clone() } else { host };
            if let Some(name) = name {
                out.push(AppEvent::Name(strip_port(&name).to_string()));
            }
            if self.pending.len() < MAX_PENDING {
                self.pending.push_back(if connect { target } else { None });
            }
            true
        } else {
            if !self.server_seq.accept(seq, payload.len()) || !payload.starts_with(b"HTTP/1.") {
                return true;
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let _ = resp.parse(payload);
            let Some(code) = resp.code else { return true };
            if (100..200).contains(&code) {
                return true; // 100 Continue: the real answer follows.
            }
            match self.pending.pop_front() {
                Some(Some(target)) => {
                    out.push(AppEvent::Connect {
                        target,
                        status: Some(code),
                    });
                    !(200..300).contains(&code)
                }
                _ => {
                    out.push(AppEvent::HttpStatus(code));
                    true
                }
            }
        }
    }

    /// Reports CONNECTs the proxy never answered.
    pub fn on_end(&mut self, out: &mut Vec<AppEvent>) {
        for target in self.pending.drain(..).flatten() {
            out.push(AppEvent::Connect {
                target,
                status: None,
            });
        }
    }
}

/// `host:port` → `host`; IPv6 literals in brackets keep their address.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_and_response_status_are_reported() {
        let mut h = HttpFlow::default();
        let mut out = Vec::new();
        h.on_payload(
            true,
            1,
            b"GET / HTTP/1.1\r\nHost: api.example.com:8080\r\n\r\n",
            &mut out,
        );
        h.on_payload(
            false,
            1,
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                AppEvent::Name("api.example.com".into()),
                AppEvent::HttpStatus(403)
            ]
        );
    }

    #[test]
    fn connect_status_is_attributed_to_the_target() {
        let mut h = HttpFlow::default();
        let mut out = Vec::new();
        h.on_payload(
            true,
            1,
            b"CONNECT db.example.com:443 HTTP/1.1\r\nHost: db.example.com:443\r\n\r\n",
            &mut out,
        );
        let open = h.on_payload(
            false,
            1,
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            &mut out,
        );
        assert!(open);
        assert_eq!(
            out[1],
            AppEvent::Connect {
                target: "db.example.com:443".into(),
                status: Some(407)
            }
        );
    }

    #[test]
    fn retransmitted_response_is_counted_once() {
        let mut h = HttpFlow::default();
        let mut out = Vec::new();
        h.on_payload(true, 1, b"GET / HTTP/1.1\r\n\r\n", &mut out);
        h.on_payload(false, 100, b"HTTP/1.1 500 Oops\r\n\r\n", &mut out);
        h.on_payload(false, 100, b"HTTP/1.1 500 Oops\r\n\r\n", &mut out);
        assert_eq!(out, vec![AppEvent::HttpStatus(500)]);
    }

    #[test]
    fn unanswered_connect_is_reported_at_the_end() {
        let mut h = HttpFlow::default();
        let mut out = Vec::new();
        h.on_payload(true, 1, b"CONNECT x.example:443 HTTP/1.1\r\n\r\n", &mut out);
        h.on_end(&mut out);
        assert_eq!(
            out.last(),
            Some(&AppEvent::Connect {
                target: "x.example:443".into(),
                status: None
            })
        );
    }
}
