//! `cargo xtask syn-gen`: TCP SYNs at a fixed rate, for the live benchmark's event-rate check.
//!
//! hping3 either sleeps between packets (and tops out far below the rates asked) or floods with
//! no rate at all; this sends through a raw socket in 1 ms batches, so the rate is what is asked
//! (a late batch is caught up by the next ones).
//! Source ports cycle, so each SYN is a new connection the destination answers with a RST.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::flag;
use etherparse::TcpHeader;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// `syn-gen --src IP --dst IP [--port P] [--rate PER_SECOND] [--seconds N]`; says on stderr how
/// many SYNs it sent.
pub fn run(args: &[String]) -> Result<()> {
    let src: Ipv4Addr = flag(args, "--src", Ipv4Addr::LOCALHOST)?;
    let dst: Ipv4Addr = flag(args, "--dst", Ipv4Addr::LOCALHOST)?;
    let port: u16 = flag(args, "--port", 9)?;
    let rate: u64 = flag(args, "--rate", 50_000)?;
    let seconds: u64 = flag(args, "--seconds", 4)?;
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))
        .context("a raw socket needs root (CAP_NET_RAW)")?;
    let to = SockAddr::from(SocketAddrV4::new(dst, 0));
    let per_ms = (rate / 1000).max(1);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut sport = 1024u16;
    let mut buf = Vec::with_capacity(40);
    let mut tick = start;
    while Instant::now() < end {
        for _ in 0..per_ms {
            let mut tcp = TcpHeader::new(sport, port, 1, 64_240);
            tcp.syn = true;
            tcp.checksum = tcp.calc_checksum_ipv4_raw(src.octets(), dst.octets(), &[])?;
            buf.clear();
            tcp.write(&mut buf)?;
            if socket.send_to(&buf, &to).is_ok() {
                sent += 1;
            }
            sport = if sport == u16::MAX { 1024 } else { sport + 1 };
        }
        tick += Duration::from_millis(1);
        // Sleeping, not spinning: the machine has two cores and the agent needs one.
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    eprintln!("syn-gen: {sent} SYNs sent");
    Ok(())
}
