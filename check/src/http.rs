//! One HTTP(S) request over an established connection: the TLS handshake and the certificate's
//! names, then the status line.
//!
//! The certificate is checked against the machine's trust store, but a failure does not stop
//! the handshake: an untrusted or misnamed certificate (a TLS-inspecting firewall's, a
//! self-signed one) is evidence to report, not a reason to see nothing. Nothing past the status
//! line is read. A proxy (CONNECT, HTTP_PROXY) is left to later.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outflow_core::wire::check::{CheckTarget, HttpCheck, Protocol, TlsCheck};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::dns::ms;

/// The most of a response read to find its status line.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Runs the request of `target` over `stream`, connected to `addr`.
pub fn request(
    target: &CheckTarget,
    addr: IpAddr,
    stream: TcpStream,
    timeout: Duration,
) -> HttpCheck {
    let start = Instant::now();
    let mut check = HttpCheck {
        addr,
        tls: None,
        status: None,
        error: None,
        latency_ms: 0.0,
    };
    if let Err(e) = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
    {
        check.error = Some(e.to_string());
        return check;
    }
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: outflow-check/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path.as_deref().unwrap_or("/"),
        host_header(target),
        env!("CARGO_PKG_VERSION"),
    );
    let result = match target.protocol {
        Protocol::Https => https(target, stream, &head, &mut check.tls),
        _ => exchange(stream, &head),
    };
    match result {
        Ok(status) => check.status = Some(status),
        Err(e) => check.error = Some(e),
    }
    check.latency_ms = ms(start.elapsed());
    check
}

fn host_header(target: &CheckTarget) -> String {
    let default = match target.protocol {
        Protocol::Https => 443,
        _ => 80,
    };
    let host = match target.host.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => format!("[{a}]"),
        _ => target.host.clone(),
    };
    if target.port == default {
        host
    } else {
        format!("{host}:{}", target.port)
    }
}

/// Writes the request and reads up to the status line.
fn exchange(mut io: impl Read + Write, head: &str) -> Result<u16, String> {
    io.write_all(head.as_bytes())
        .and_then(|()| io.flush())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(_) if response.code.is_some() => return Ok(response.code.unwrap_or_default()),
            Ok(_) => {}
            // Too many headers still gave a status code.
            Err(httparse::Error::TooManyHeaders) if response.code.is_some() => {
                return Ok(response.code.unwrap_or_default())
            }
            Err(e) => return Err(format!("the answer is not HTTP: {e}")),
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(format!(
                "no status line in the first {MAX_HEAD_BYTES} bytes"
            ));
        }
        match io.read(&mut chunk) {
            Ok(0) => {
                return Err(if buf.is_empty() {
                    "the server closed the connection without answering".to_string()
                } else {
                    "the server closed the connection mid-answer".to_string()
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no answer within the timeout".to_string())
            }
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
}

/// The handshake, then the request inside it.
fn https(
    target: &CheckTarget,
    mut stream: TcpStream,
    head: &str,
    tls: &mut Option<TlsCheck>,
) -> Result<u16, String> {
    let verifier = Arc::new(Recording::new());
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut check = TlsCheck {
        is_established: false,
        version: None,
        cert_names: Vec::new(),
        is_trusted: false,
        error: None,
    };
    let handshake = loop {
        if !conn.is_handshaking() {
            break Ok(());
        }
        if let Err(e) = conn.complete_io(&mut stream) {
            break Err(e);
        }
    };
    if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
        check.cert_names = cert_names(leaf);
    }
    let verdict = verifier.verdict();
    check.is_trusted = verdict.as_ref().is_some_and(Result::is_ok);
    check.error = verdict.and_then(Result::err);
    match handshake {
        Ok(()) => {
            check.is_established = true;
            check.version = conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace('_', "."));
        }
        Err(e) => {
            let error = format!("TLS handshake failed: {e}");
            check.error = Some(error.clone());
            *tls = Some(check);
            return Err(error);
        }
    }
    *tls = Some(check);
    exchange(rustls::Stream::new(&mut conn, &mut stream), head)
}

/// Why a certificate is not trusted, in words rather than rustls's enum names.
fn untrusted_because(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "issued by a CA this machine does not trust".to_string(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "not issued for this name".to_string()
            }
            C::Expired | C::ExpiredContext { .. } => "expired".to_string(),
            C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".to_string(),
            C::Revoked => "revoked".to_string(),
            C::Other(o)
                if matches!(
                    o.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) =>
            {
                "self-signed (a CA certificate presented as the server's)".to_string()
            }
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}

/// ring's provider: the workspace builds rustls with ring, as aws-lc-rs needs cmake. rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange, which a reachability check
/// does not need (the server picks a classical group it also offers).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The subject alternative DNS names of a certificate.
fn cert_names(der: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(der)
        .map(|c| c.valid_dns_names().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Checks the chain as rustls would, records the outcome, and lets the handshake go on.
#[derive(Debug)]
struct Recording {
    inner: Result<Arc<WebPkiServerVerifier>, String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verdict: Mutex<Option<Result<(), String>>>,
}

impl Recording {
    fn new() -> Recording {
        let provider = provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("no trust store on this machine: {e}"));
        Recording {
            inner,
            provider,
            verdict: Mutex::new(None),
        }
    }

    fn verdict(&self) -> Option<Result<(), String>> {
        self.verdict.lock().ok()?.clone()
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Ok(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|e| format!("certificate not trusted: {}", untrusted_because(&e))),
            Err(e) => Err(e.clone()),
        };
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(verdict);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader-writer that answers with fixed bytes and swallows what is written.
    struct Canned(std::io::Cursor<Vec<u8>>);
    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn answer(bytes: &[u8]) -> Result<u16, String> {
        exchange(
            Canned(std::io::Cursor::new(bytes.to_vec())),
            "GET / HTTP/1.1\r\n\r\n",
        )
    }

    #[test]
    fn the_status_line_is_the_answer() {
        assert_eq!(
            answer(b"HTTP/1.1 503 Service Unavailable\r\nServer: x\r\n\r\nbody"),
            Ok(503)
        );
    }

    #[test]
    fn a_closed_or_garbled_answer_says_so() {
        assert!(answer(b"").unwrap_err().contains("without answering"));
        assert!(answer(b"HTTP/1.1 20").unwrap_err().contains("mid-answer"));
        assert!(answer(b"SSH-2.0-OpenSSH\r\n")
            .unwrap_err()
            .contains("not HTTP"));
    }

    #[test]
    fn the_host_header_keeps_a_port_that_is_not_the_default() {
        let t = crate::target::parse("http://[fd00::1]:8080/").unwrap();
        assert_eq!(host_header(&t), "[fd00::1]:8080");
        let t = crate::target::parse("https://web.example.com/").unwrap();
        assert_eq!(host_header(&t), "web.example.com");
    }
}
