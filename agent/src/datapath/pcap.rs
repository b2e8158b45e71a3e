//! The libpcap datapath: where eBPF cannot load (no CAP_BPF, an old kernel) or is not wanted.
//!
//! One non-blocking capture per pod interface, each with a kernel (classic BPF) filter that
//! keeps what the eBPF programs send to user space: TCP SYN, FIN and RST, ICMP and ICMPv6
//! destination-unreachable, and DNS. Nothing counts the other packets, so connection records
//! carry outcomes and timings but no byte or packet totals.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};

use outflow_core::capfile::{Direction, LinkType, Packet};
use outflow_core::engine::Traffic;
use outflow_core::wire::DatapathStats;
use pcap::{Active, Capture, Precision};

use super::{AttachError, Datapath};

/// What reaches user space. `tcp[tcpflags]` reads IPv4 only, so IPv6 TCP flags are read at
/// their offset behind a bare IPv6 header (40 + 13).
pub const CONTROL_FILTER: &str = "(tcp and tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0) \
    or (ip6 and ip6[6] == 6 and ip6[53] & 0x07 != 0) \
    or (icmp and icmp[icmptype] == icmp-unreach) \
    or (icmp6 and ip6[6] == 58 and ip6[40] == 1) \
    or port 53";

/// Bytes kept of each packet: headers and a DNS message of the size the eBPF path sends.
const SNAPLEN: i32 = 768;
/// Kernel buffer per interface. Only control packets and DNS land in it.
const BUFFER_BYTES: i32 = 1 << 20;

struct Handle {
    ifindex: u32,
    capture: Capture<Active>,
    /// libpcap's counters at the last report: (received, dropped).
    reported: (u32, u32),
}

/// Captures on pod interfaces.
pub struct PcapDatapath {
    handles: HashMap<String, Handle>,
    reason: String,
    /// Counters of handles closed since the last report.
    closed: (u64, u64),
}

impl PcapDatapath {
    /// A datapath with no interface yet. `reason` says why this datapath runs.
    pub fn new(reason: String) -> PcapDatapath {
        PcapDatapath {
            handles: HashMap::new(),
            reason,
            closed: (0, 0),
        }
    }

    fn open(ifname: &str) -> Result<Capture<Active>, pcap::Error> {
        let mut cap = Capture::from_device(ifname)?
            .promisc(false)
            .immediate_mode(true)
            .snaplen(SNAPLEN)
            .buffer_size(BUFFER_BYTES)
            .precision(Precision::Nano)
            .open()?;
        cap.filter(CONTROL_FILTER, true)?;
        cap.setnonblock()
    }

    fn counters(h: &mut Handle) -> (u64, u64) {
        let Ok(s) = h.capture.stats() else {
            return (0, 0);
        };
        let now = (s.received, s.dropped.wrapping_add(s.if_dropped));
        let delta = (
            now.0.wrapping_sub(h.reported.0) as u64,
            now.1.wrapping_sub(h.reported.1) as u64,
        );
        h.reported = now;
        delta
    }
}

impl Datapath for PcapDatapath {
    fn kind(&self) -> &'static str {
        "pcap"
    }

    fn attach(&mut self, ifname: &str, ifindex: u32) -> Result<(), AttachError> {
        if self
            .handles
            .get(ifname)
            .is_some_and(|h| h.ifindex == ifindex)
        {
            return Ok(());
        }
        self.detach(ifname);
        let capture = Self::open(ifname).map_err(|e| AttachError {
            ifname: ifname.to_string(),
            message: format!("libpcap: {e}"),
        })?;
        let handle = Handle {
            ifindex,
            capture,
            reported: (0, 0),
        };
        self.handles.insert(ifname.to_string(), handle);
        Ok(())
    }

    fn detach(&mut self, ifname: &str) {
        if let Some(mut h) = self.handles.remove(ifname) {
            let (packets, drops) = Self::counters(&mut h);
            self.closed.0 += packets;
            self.closed.1 += drops;
        }
    }

    fn attached(&self) -> Vec<(String, u32)> {
        self.handles
            .iter()
            .map(|(n, h)| (n.clone(), h.ifindex))
            .collect()
    }

    fn wait_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.handles.values().map(|h| h.capture.as_fd()).collect()
    }

    fn read_packets(&mut self, f: &mut dyn FnMut(&Packet<'_>)) {
        for h in self.handles.values_mut() {
            let ifindex = h.ifindex;
            // Bounded per call so one busy interface cannot starve the loop.
            for _ in 0..64 {
                let read = h.capture.dispatch(Some(256), |p| {
                    let ts = &p.header.ts;
                    let packet = Packet {
                        ts_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_usec as u64,
                        iface: ifindex,
                        link: LinkType::Ethernet,
                        // A single device's Ethernet frames carry no direction; the engine
                        // does not need one.
                        direction: Direction::Unknown,
                        orig_len: p.header.len,
                        data: p.data,
                    };
                    f(&packet);
                });
                match read {
                    Ok(n) if n > 0 => continue,
                    // Nothing waiting, or the interface went (the next link sync detaches).
                    _ => break,
                }
            }
        }
    }

    fn read_traffic(
        &mut self,
        _idle_before_ns: u64,
        _on_packet: &mut dyn FnMut(&Packet<'_>),
    ) -> Vec<Traffic> {
        Vec::new()
    }

    fn take_stats(&mut self) -> DatapathStats {
        let (mut packets, mut drops) = std::mem::take(&mut self.closed);
        for h in self.handles.values_mut() {
            let (p, d) = Self::counters(h);
            packets += p;
            drops += d;
        }
        DatapathStats {
            kind: self.kind().to_string(),
            reason: self.reason.clone(),
            interfaces: self.handles.len() as u64,
            packets,
            events: packets,
            event_drops: drops,
            ..DatapathStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn eth4() -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 0, 0, 2], [203, 0, 113, 7], 64)
    }

    fn eth6() -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv6([0xfd; 16], [0x20; 16], 64)
    }

    fn tcp(b: etherparse::PacketBuilderStep<etherparse::IpHeaders>, flags: &str) -> Vec<u8> {
        let mut t = b.tcp(40000, 443, 1, 64_000);
        for f in flags.chars() {
            t = match f {
                'S' => t.syn(),
                'A' => t.ack(2),
                'F' => t.fin(),
                'R' => t.rst(),
                _ => t,
            };
        }
        let mut out = Vec::new();
        t.write(&mut out, &[0; 100]).expect("build");
        out
    }

    fn udp(b: etherparse::PacketBuilderStep<etherparse::IpHeaders>, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        b.udp(40000, dport)
            .write(&mut out, &[0; 30])
            .expect("build");
        out
    }

    /// The kernel filter keeps exactly what the engine needs, for IPv4 and IPv6 alike: the
    /// same set the eBPF programs send up.
    #[test]
    fn the_control_filter_keeps_handshakes_resets_dns_and_unreachables_only() {
        let dead = Capture::dead(pcap::Linktype::ETHERNET).expect("dead handle");
        let prog = dead.compile(CONTROL_FILTER, true).expect("filter compiles");
        for (what, frame, kept) in [
            ("v4 SYN", tcp(eth4(), "S"), true),
            ("v4 SYN-ACK", tcp(eth4(), "SA"), true),
            ("v4 RST", tcp(eth4(), "RA"), true),
            ("v4 FIN", tcp(eth4(), "FA"), true),
            ("v4 data", tcp(eth4(), "A"), false),
            ("v6 SYN", tcp(eth6(), "S"), true),
            ("v6 RST", tcp(eth6(), "R"), true),
            ("v6 data", tcp(eth6(), "A"), false),
            ("v4 DNS", udp(eth4(), 53), true),
            ("v6 DNS", udp(eth6(), 53), true),
            ("v4 other UDP", udp(eth4(), 443), false),
        ] {
            assert_eq!(prog.filter(&frame), kept, "{what}");
        }
        let mut unreach = Vec::new();
        eth4()
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Host,
            ))
            .write(&mut unreach, &[0; 28])
            .expect("build");
        assert!(prog.filter(&unreach), "ICMP unreachable");
        let mut echo = Vec::new();
        eth4()
            .icmpv4_echo_request(1, 1)
            .write(&mut echo, &[])
            .expect("build");
        assert!(!prog.filter(&echo), "ICMP echo");
        let mut unreach6 = Vec::new();
        eth6()
            .icmpv6(etherparse::Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::Prohibited,
            ))
            .write(&mut unreach6, &[0; 48])
            .expect("build");
        assert!(prog.filter(&unreach6), "ICMPv6 unreachable");
    }
}
