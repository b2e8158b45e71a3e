//! Generates a large capture of realistic mixed pod egress, with its ground truth.
//!
//! Pods (10.244.0.0/16) open TLS-like connections to public servers (handshake, a request, a
//! response of 1–24 full-size segments with delayed ACKs, FIN close), and some attempts fail the
//! ways a cluster fails: SYNs into a blackhole (retransmitted at +1 s and +3 s), RSTs from a closed
//! port, ICMP admin-prohibited from a router. Half the connections are preceded by a DNS lookup
//! walking the Kubernetes search list (three NXDOMAIN expansions, then the answer); a few lookups
//! fail on every expansion. Every count the analysis should report is tallied as the packets are
//! made. The VXLAN mix is the same traffic as a node's uplink in an overlay carries it: each frame
//! inside VXLAN (VNI 1, UDP 4789) between two nodes, the outer source port a hash of the inner
//! flow as the kernel picks it.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Result;
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

/// How the generated traffic is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Ethernet frames as a pod's interface sees them.
    Plain,
    /// The same frames inside VXLAN between two nodes.
    Vxlan,
}

impl Mix {
    /// The name in file names and tables.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Plain => "mixed",
            Mix::Vxlan => "vxlan-mixed",
        }
    }
}

/// What the analysis must find.
#[derive(Debug, Default, Clone, Copy)]
pub struct Truth {
    pub packets: u64,
    pub bytes: u64,
    pub tcp_conversations: u64,
    pub established: u64,
    pub unanswered: u64,
    pub refused: u64,
    pub unreachable: u64,
    pub dns_ok: u64,
    pub dns_nxdomain: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Tcp {
        c2s: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u16,
    },
    Icmp,
    Dns {
        response: bool,
        expansion: u8,
        nx: bool,
    },
}

#[derive(Clone, Copy)]
struct P {
    ts: u64,
    conn: u32,
    kind: Kind,
}

struct Conn {
    client: [u8; 4],
    sport: u16,
    server: [u8; 4],
    dport: u16,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;
const MS: u64 = 1_000_000;
const SEARCH: [&str; 3] = [
    "default.svc.cluster.local",
    "svc.cluster.local",
    "cluster.local",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough to spread traffic.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Services a pod talks to, out of a pool of [`SERVICES`]: pods call a handful of dependencies
/// again and again, they do not look up a new name for every connection.
const SERVICES_PER_POD: u32 = 16;
const SERVICES: u32 = 199;

/// The service connection `idx` goes to: one of its pod's own few.
fn service(idx: u32) -> u32 {
    let pod = idx % 1600;
    (pod * 31 + (idx / 1600) % SERVICES_PER_POD) % SERVICES
}

fn conn(idx: u32, kind: u64) -> Conn {
    let ci = idx % 1600;
    let client = [10, 244, (ci / 200) as u8, (ci % 200 + 10) as u8];
    let sport = 32768 + ((idx / 1600) % 28000) as u16;
    let (server, dport) = match kind {
        0..=86 => ([198, 51, 100, (service(idx) + 1) as u8], 443),
        87..=91 => ([198, 51, 100, 200], 443),
        92..=95 => ([192, 168, 50, 5], 8080),
        _ => ([203, 0, 113, 7], 443),
    };
    Conn {
        client,
        sport,
        server,
        dport,
    }
}

/// Writes about `target` packets to `path` and returns the ground truth.
pub fn generate(path: &Path, target: u64, mix: Mix) -> Result<Truth> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut truth = Truth::default();
    let mut packets: Vec<P> = Vec::with_capacity(target as usize + 64);
    let duration = 120_000 * MS;
    let mut conns = Vec::new();
    let mut idx = 0u32;
    while (packets.len() as u64) < target {
        let kind = rng.below(100);
        let c = conn(idx, kind);
        let mut t = rng.below(duration * 8 / 10);
        if rng.below(2) == 0 {
            let nx = rng.below(25) == 0;
            for e in 0..4u8 {
                packets.push(P {
                    ts: t,
                    conn: idx,
                    kind: Kind::Dns {
                        response: false,
                        expansion: e,
                        nx,
                    },
                });
                packets.push(P {
                    ts: t + MS,
                    conn: idx,
                    kind: Kind::Dns {
                        response: true,
                        expansion: e,
                        nx,
                    },
                });
                t += 2 * MS;
            }
            if nx {
                truth.dns_nxdomain += 1;
            } else {
                truth.dns_ok += 1;
            }
        }
        let isn = rng.next() as u32;
        let sisn = rng.next() as u32;
        let tcp = |c2s, flags, seq, ack, len| Kind::Tcp {
            c2s,
            flags,
            seq,
            ack,
            len,
        };
        let mut push = |ts: u64, kind: Kind| {
            packets.push(P {
                ts,
                conn: idx,
                kind,
            })
        };
        truth.tcp_conversations += 1;
        match kind {
            0..=86 => {
                truth.established += 1;
                let rtt = (5 + rng.below(40)) * MS;
                push(t, tcp(true, SYN, isn, 0, 0));
                t += rtt;
                push(t, tcp(false, SYN | ACK, sisn, isn.wrapping_add(1), 0));
                let (mut cs, mut ss) = (isn.wrapping_add(1), sisn.wrapping_add(1));
                push(t + 10_000, tcp(true, ACK, cs, ss, 0));
                push(t + 20_000, tcp(true, ACK, cs, ss, 300));
                cs = cs.wrapping_add(300);
                t += rtt;
                let segments = 1 + rng.below(24);
                for s in 0..segments {
                    t += 50_000;
                    push(t, tcp(false, ACK, ss, cs, 1448));
                    ss = ss.wrapping_add(1448);
                    if s % 2 == 1 || s + 1 == segments {
                        push(t + 5_000, tcp(true, ACK, cs, ss, 0));
                    }
                }
                t += MS;
                push(t, tcp(true, FIN | ACK, cs, ss, 0));
                push(t + rtt, tcp(false, FIN | ACK, ss, cs.wrapping_add(1), 0));
                push(
                    t + rtt + 10_000,
                    tcp(true, ACK, cs.wrapping_add(1), ss.wrapping_add(1), 0),
                );
            }
            87..=91 => {
                truth.unanswered += 1;
                for back_off in [0, 1000, 3000] {
                    push(t + back_off * MS, tcp(true, SYN, isn, 0, 0));
                }
            }
            92..=95 => {
                truth.refused += 1;
                push(t, tcp(true, SYN, isn, 0, 0));
                push(t + MS, tcp(false, RST | ACK, 0, isn.wrapping_add(1), 0));
            }
            _ => {
                truth.unreachable += 1;
                push(t, tcp(true, SYN, isn, 0, 0));
                push(t + MS / 2, Kind::Icmp);
            }
        }
        conns.push(c);
        idx += 1;
    }
    packets.sort_by_key(|p| p.ts);
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header)?;
    let mut buf = Vec::with_capacity(2048);
    let mut inner = Vec::with_capacity(2048);
    let payload = [0u8; 1448];
    let t0 = 1_764_000_000u64 * 1_000_000_000;
    for p in &packets {
        buf.clear();
        render(&conns[p.conn as usize], p, &payload, &mut buf)?;
        if mix == Mix::Vxlan {
            std::mem::swap(&mut buf, &mut inner);
            buf.clear();
            vxlan(&inner, &mut buf)?;
        }
        truth.packets += 1;
        truth.bytes += buf.len() as u64;
        let ts = std::time::Duration::from_nanos(t0 + p.ts);
        writer.write_packet(&PcapPacket::new(ts, buf.len() as u32, &buf))?;
    }
    Ok(truth)
}

const NODE_A: [u8; 4] = [10, 224, 0, 4];
const NODE_B: [u8; 4] = [10, 224, 0, 5];

/// Wraps an Ethernet frame in VXLAN between the nodes: pods' packets leave node A, answers
/// come back from node B.
fn vxlan(frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let from_pod = frame.get(26..28) == Some(&[10, 244]);
    let (src, dst, smac, dmac) = if from_pod {
        (NODE_A, NODE_B, POD_MAC, GW_MAC)
    } else {
        (NODE_B, NODE_A, GW_MAC, POD_MAC)
    };
    // The kernel's source port: a hash of the inner flow, so one flow keeps one outer port.
    let flow = frame.get(26..38).unwrap_or_default();
    let hash = flow.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    });
    let mut payload = Vec::with_capacity(8 + frame.len());
    payload.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]);
    payload.extend_from_slice(frame);
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, 64)
        .udp(49152 + (hash % 16384) as u16, 4789)
        .write(out, &payload)?;
    Ok(())
}

const POD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const DNS_SERVER: [u8; 4] = [10, 0, 0, 10];

fn render(c: &Conn, p: &P, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    match p.kind {
        Kind::Tcp {
            c2s,
            flags,
            seq,
            ack,
            len,
        } => {
            let (src, dst, sp, dp, smac, dmac) = if c2s {
                (c.client, c.server, c.sport, c.dport, POD_MAC, GW_MAC)
            } else {
                (c.server, c.client, c.dport, c.sport, GW_MAC, POD_MAC)
            };
            let mut b = PacketBuilder::ethernet2(smac, dmac)
                .ipv4(src, dst, 64)
                .tcp(sp, dp, seq, 64240);
            if flags & SYN != 0 {
                b = b.syn();
            }
            if flags & ACK != 0 {
                b = b.ack(ack);
            }
            if flags & RST != 0 {
                b = b.rst();
            }
            if flags & FIN != 0 {
                b = b.fin();
            }
            b.write(out, &payload[..len as usize])?;
        }
        Kind::Icmp => {
            let mut quoted = Vec::new();
            PacketBuilder::ipv4(c.client, c.server, 64)
                .tcp(c.sport, c.dport, 1, 64240)
                .syn()
                .write(&mut quoted, &[])?;
            PacketBuilder::ethernet2(GW_MAC, POD_MAC)
                .ipv4([10, 244, 0, 1], c.client, 64)
                .icmpv4_raw(3, 13, [0; 4])
                .write(out, &quoted[..28])?;
        }
        Kind::Dns {
            response,
            expansion,
            nx,
        } => {
            // Failing lookups are for a misspelt name, as they are in life.
            let domain = if nx { "exmaple.com" } else { "example.com" };
            let host = format!("svc{}.{domain}", service(p.conn));
            let name = match expansion {
                3 => host,
                e => format!("{host}.{}", SEARCH[e as usize]),
            };
            let id = (p.conn as u16)
                .wrapping_mul(4)
                .wrapping_add(expansion as u16);
            let failed = nx || expansion < 3;
            let msg = dns_message(id, &name, response, failed, (service(p.conn) + 1) as u8);
            // Unique per lookup for 64k lookups; pairs with the same client and name are rarer still.
            let sport = 1024 + (p.conn % 64000) as u16;
            let b = if response {
                PacketBuilder::ethernet2(GW_MAC, POD_MAC)
                    .ipv4(DNS_SERVER, c.client, 64)
                    .udp(53, sport)
            } else {
                PacketBuilder::ethernet2(POD_MAC, GW_MAC)
                    .ipv4(c.client, DNS_SERVER, 64)
                    .udp(sport, 53)
            };
            b.write(out, &msg)?;
        }
    }
    Ok(())
}

/// A DNS A query or its response (NXDOMAIN, or one A record: the service's address).
fn dns_message(id: u16, name: &str, response: bool, nx: bool, last_octet: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    m.extend_from_slice(&id.to_be_bytes());
    let flags: u16 = if response {
        0x8180 | if nx { 3 } else { 0 }
    } else {
        0x0100
    };
    m.extend_from_slice(&flags.to_be_bytes());
    let answers: u16 = if response && !nx { 1 } else { 0 };
    for count in [1, answers, 0, 0] {
        m.extend_from_slice(&count.to_be_bytes());
    }
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if answers == 1 {
        m.extend_from_slice(&[
            0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, last_octet,
        ]);
    }
    m
}
