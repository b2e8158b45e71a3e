//! A TCP connect with a timeout, its result in outflow's words.
//!
//! The kernel reports an ICMP rejection of the SYN as an errno, and `EHOSTUNREACH` stands for
//! both host-unreachable and admin-prohibited (net/ipv4/icmp.c `icmp_err_convert`). For IPv4
//! the check also listens on a raw ICMP socket while it connects and names the code and the
//! sender from the ICMP error that quotes its own SYN; without CAP_NET_RAW it falls back to the
//! errno's name. A local `prohibit` route or an OUTPUT `REJECT` refuses before anything is sent
//! (`EACCES`, `EPERM`): `prohibited-locally`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use outflow_core::icmp::v4_rejection;
use outflow_core::wire::check::ConnectCheck;
use outflow_core::Outcome;
use socket2::{Domain, Protocol, Socket, Type};

use crate::dns::ms;

/// Connects to `addr:port`; on success also returns the stream, for HTTP.
pub fn connect(
    addr: IpAddr,
    port: u16,
    timeout: Duration,
) -> (ConnectCheck, Option<std::net::TcpStream>) {
    let start = Instant::now();
    let icmp = match addr {
        IpAddr::V4(_) => IcmpListener::open(),
        IpAddr::V6(_) => None,
    };
    let attempt = attempt(addr, port, timeout);
    let latency_ms = ms(start.elapsed());
    let (outcome, reason, stream) = match attempt {
        Ok((stream, _)) => (Outcome::Established, None, Some(stream)),
        Err((e, local)) => {
            let heard = match (icmp, local, addr) {
                (Some(l), Some(SocketAddr::V4(local)), IpAddr::V4(dst)) => {
                    l.rejection_of(local, SocketAddrV4::new(dst, port))
                }
                _ => None,
            };
            let (outcome, reason) = classify(&e, heard);
            (outcome, reason, None)
        }
    };
    (
        ConnectCheck {
            addr,
            port,
            outcome,
            reason,
            latency_ms,
        },
        stream,
    )
}

/// The outcome of a failed connect: the errno, refined by the ICMP error heard for it.
pub fn classify(e: &io::Error, heard: Option<(Ipv4Addr, u8)>) -> (Outcome, Option<String>) {
    use nix::errno::Errno;
    if let Some((from, code)) = heard {
        let name = v4_rejection(3, code).map_or("unreachable-other", |r| r.name());
        return (Outcome::Unreachable, Some(format!("{name} from {from}")));
    }
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ECONNREFUSED) => (Outcome::Refused, None),
        Some(Errno::ETIMEDOUT) | None if e.kind() == io::ErrorKind::TimedOut => {
            (Outcome::Unanswered, None)
        }
        Some(Errno::EHOSTUNREACH) => (
            Outcome::Unreachable,
            Some("host-unreachable or admin-prohibited".into()),
        ),
        Some(Errno::ENETUNREACH) => (Outcome::Unreachable, Some("net-unreachable".into())),
        Some(Errno::EACCES | Errno::EPERM) => {
            (Outcome::Unreachable, Some("prohibited-locally".into()))
        }
        _ => (Outcome::Unreachable, Some(e.to_string())),
    }
}

type Attempt = Result<(std::net::TcpStream, SocketAddr), (io::Error, Option<SocketAddr>)>;

/// Binds first, so the local port is known to match the ICMP quote, then connects.
fn attempt(addr: IpAddr, port: u16, timeout: Duration) -> Attempt {
    let target = SocketAddr::new(addr, port);
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| (e, None))?;
    let any: SocketAddr = match addr {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    socket.bind(&any.into()).map_err(|e| (e, None))?;
    let local = socket.local_addr().ok().and_then(|a| a.as_socket());
    socket
        .connect_timeout(&target.into(), timeout)
        .map_err(|e| (e, local))?;
    Ok((socket.into(), local.unwrap_or(any)))
}

/// A raw ICMP socket that has been receiving since before the connect.
struct IcmpListener(Socket);

impl IcmpListener {
    fn open() -> Option<IcmpListener> {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(IcmpListener(s))
    }

    /// The sender and code of a destination-unreachable quoting `local → dst`, if one came.
    fn rejection_of(&self, local: SocketAddrV4, dst: SocketAddrV4) -> Option<(Ipv4Addr, u8)> {
        use std::io::Read;
        let mut buf = [0u8; 1500];
        loop {
            let n = (&self.0).read(&mut buf).ok()?;
            if let Some(hit) = quoted_rejection(&buf[..n], local, dst) {
                return Some(hit);
            }
        }
    }
}

/// Reads an IPv4 packet holding an ICMP destination-unreachable (type 3) whose quoted header is
/// a TCP segment from `local` to `dst`: the ICMP sender and its code.
pub fn quoted_rejection(
    packet: &[u8],
    local: SocketAddrV4,
    dst: SocketAddrV4,
) -> Option<(Ipv4Addr, u8)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let from = Ipv4Addr::new(
        *packet.get(12)?,
        *packet.get(13)?,
        *packet.get(14)?,
        *packet.get(15)?,
    );
    let icmp = packet.get(ihl..)?;
    if *icmp.first()? != 3 {
        return None;
    }
    let code = *icmp.get(1)?;
    let quoted = icmp.get(8..)?;
    let qihl = usize::from(quoted.first()? & 0x0f) * 4;
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b = quoted.get(at..at + 4)?;
        Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let ports = quoted.get(qihl..qihl + 4)?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    let is_ours = *quoted.get(9)? == 6
        && addr(16)? == *dst.ip()
        && dport == dst.port()
        && sport == local.port()
        && (local.ip().is_unspecified() || addr(12)? == *local.ip());
    is_ours.then_some((from, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP 3/13 from 10.244.1.1 quoting a SYN 10.244.1.10:40000 → 203.0.113.7:80.
    fn prohibited() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 244, 1, 1, 10, 244, 1, 10,
        ];
        p.extend([3, 13, 0, 0, 0, 0, 0, 0]);
        p.extend([
            0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 244, 1, 10, 203, 0, 113, 7,
        ]);
        p.extend([0x9c, 0x40, 0, 80, 0, 0, 0, 1]);
        p
    }

    #[test]
    fn an_icmp_error_quoting_our_syn_names_its_code_and_sender() {
        let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 80);
        assert_eq!(
            quoted_rejection(&prohibited(), local, dst),
            Some((Ipv4Addr::new(10, 244, 1, 1), 13))
        );
        let other = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 40001);
        assert_eq!(quoted_rejection(&prohibited(), other, dst), None);
        assert_eq!(quoted_rejection(&prohibited()[..30], local, dst), None);
        let e = io::Error::from_raw_os_error(nix::errno::Errno::EHOSTUNREACH as i32);
        assert_eq!(
            classify(&e, Some((Ipv4Addr::new(10, 244, 1, 1), 13))),
            (
                Outcome::Unreachable,
                Some("admin-prohibited from 10.244.1.1".into())
            )
        );
    }

    #[test]
    fn errnos_map_to_outflow_outcomes() {
        use nix::errno::Errno;
        let of = |e: Errno| classify(&io::Error::from_raw_os_error(e as i32), None);
        assert_eq!(of(Errno::ECONNREFUSED), (Outcome::Refused, None));
        assert_eq!(of(Errno::ETIMEDOUT).0, Outcome::Unanswered);
        assert_eq!(
            of(Errno::EACCES),
            (Outcome::Unreachable, Some("prohibited-locally".into()))
        );
        assert_eq!(
            of(Errno::ENETUNREACH),
            (Outcome::Unreachable, Some("net-unreachable".into()))
        );
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
        assert_eq!(classify(&timed_out, None).0, Outcome::Unanswered);
    }
}
