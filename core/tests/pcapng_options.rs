//! pcapng files with unusual but valid options, as other tools write them: vendor (custom) and
//! local-use options, an `if_tzone` of four bytes, option lists without `opt_endofopt`, every EPB
//! option, statistics and name-resolution blocks, both byte orders. Wireshark's tools read them;
//! outflow must read the same packets with the same times, directions and interface names.
//! tshark must be installed (`cargo xtask setup`); in CI its absence fails.

mod wireshark;

use std::path::PathBuf;

use etherparse::PacketBuilder;
use outflow_core::capfile::{CaptureReader, Direction};
use wireshark::tool;

/// 2026-09-21T12:00:00Z in microseconds (the default `if_tsresol`).
const T0_US: u64 = 1_790_000_000_000_000;

/// Writes pcapng blocks in one byte order.
struct Blocks {
    big: bool,
    out: Vec<u8>,
}

impl Blocks {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u64(&self, v: u64) -> [u8; 8] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// One option: code, length, value, padding to 32 bits.
    fn opt(&self, code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend(self.u16(code));
        o.extend(self.u16(value.len() as u16));
        o.extend(value);
        o.resize(o.len().next_multiple_of(4), 0);
        o
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        assert_eq!(body.len() % 4, 0, "block bodies are padded");
        let len = 12 + body.len() as u32;
        let (kind, len_bytes) = (self.u32(kind), self.u32(len));
        self.out.extend(kind);
        self.out.extend(len_bytes);
        self.out.extend(body);
        self.out.extend(len_bytes);
    }

    fn section(&mut self, options: &[Vec<u8>]) {
        let mut body = Vec::new();
        body.extend(self.u32(0x1a2b_3c4d));
        body.extend(self.u16(1));
        body.extend(self.u16(0));
        body.extend(self.u64(u64::MAX));
        options.iter().for_each(|o| body.extend(o));
        self.block(0x0a0d_0d0a, &body);
    }

    fn interface(&mut self, options: &[Vec<u8>]) {
        let mut body = Vec::new();
        body.extend(self.u16(1));
        body.extend(self.u16(0));
        body.extend(self.u32(262_144));
        options.iter().for_each(|o| body.extend(o));
        self.block(1, &body);
    }

    fn packet(&mut self, iface: u32, ts: u64, data: &[u8], options: &[Vec<u8>]) {
        let mut body = Vec::new();
        body.extend(self.u32(iface));
        body.extend(self.u32((ts >> 32) as u32));
        body.extend(self.u32(ts as u32));
        body.extend(self.u32(data.len() as u32));
        body.extend(self.u32(data.len() as u32));
        body.extend(data);
        body.resize(body.len().next_multiple_of(4), 0);
        options.iter().for_each(|o| body.extend(o));
        self.block(6, &body);
    }

    fn end(&self) -> Vec<u8> {
        self.opt(0, &[])
    }

    /// A custom option (RFC draft §3.5.1): a Private Enterprise Number, then the value.
    fn custom(&self, code: u16, value: &[u8]) -> Vec<u8> {
        let mut v = self.u32(32_473).to_vec();
        v.extend(value);
        self.opt(code, &v)
    }
}

fn frame(sport: u16, syn_ack: bool) -> Vec<u8> {
    let mut t = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 244, 1, 10], [203, 0, 113, 7], 64)
        .tcp(sport, 443, 1, 64_240)
        .syn();
    if syn_ack {
        t = t.ack(2);
    }
    let mut out = Vec::new();
    t.write(&mut out, &[]).expect("frame");
    out
}

/// A capture with every kind of unusual option in one section.
fn unusual(big: bool) -> Vec<u8> {
    let mut b = Blocks {
        big,
        out: Vec::new(),
    };
    let shb = vec![
        b.opt(2, b"x86_64"),
        b.opt(3, b"Linux 6.1"),
        b.opt(4, b"a vendor's capture tool"),
        b.custom(2988, b"vendor string"),
        b.custom(2989, &[1, 2, 3]),
        b.opt(0x8123, &[9; 7]),
        // no opt_endofopt: the block simply ends.
    ];
    b.section(&shb);
    let tzone = b.u32(0).to_vec();
    let offset = b.u64(0).to_vec();
    let idb0 = vec![
        b.opt(2, b"eth0"),
        b.opt(9, &[6]),
        b.opt(10, &tzone),
        b.opt(11, b"\0tcp port 443"),
        b.opt(12, b"Linux 6.1"),
        b.opt(13, &[4]),
        b.opt(14, &offset),
        b.opt(15, b"virtio_net"),
        b.custom(19372, b"not copied"),
        b.end(),
    ];
    b.interface(&idb0);
    // A second interface in nanoseconds whose option list has no end marker.
    let idb1 = vec![b.opt(9, &[9]), b.opt(2, b"veth3a4f")];
    b.interface(&idb1);
    let inbound = b.u32(1).to_vec();
    let outbound = b.u32(2).to_vec();
    let drops = b.u64(3).to_vec();
    let packet_id = b.u64(77).to_vec();
    let queue = b.u32(1).to_vec();
    let epb_all = vec![
        b.opt(1, b"first SYN"),
        b.opt(2, &outbound),
        b.opt(3, &[2, 0xde, 0xad, 0xbe, 0xef]),
        b.opt(4, &drops),
        b.opt(5, &packet_id),
        b.opt(6, &queue),
        b.opt(7, &[0, 1, 2, 3, 4, 5, 6, 7, 8]),
        b.custom(2989, &[0xff; 5]),
        b.end(),
    ];
    b.packet(0, T0_US, &frame(40_000, false), &epb_all);
    // A name resolution block and an interface statistics block between packets.
    let mut nrb = Vec::new();
    nrb.extend(b.u16(1));
    nrb.extend(b.u16(4 + 16));
    nrb.extend([203, 0, 113, 7]);
    nrb.extend(b"api.example.com\0");
    nrb.extend(b.u16(0));
    nrb.extend(b.u16(0));
    nrb.extend(b.opt(2, b"resolver"));
    nrb.extend(b.end());
    b.block(4, &nrb);
    let mut isb = Vec::new();
    isb.extend(b.u32(0));
    isb.extend(b.u32(0));
    isb.extend(b.u32(0));
    let ifrecv = b.u64(2).to_vec();
    isb.extend(b.opt(4, &ifrecv));
    isb.extend(b.custom(2988, b"stats"));
    b.block(5, &isb);
    // The answer on the nanosecond interface, with flags but no end marker.
    b.packet(
        1,
        (T0_US + 1_500) * 1_000,
        &frame(40_000, true),
        &[b.opt(2, &inbound)],
    );
    b.packet(0, T0_US + 2_000_000, &frame(40_001, false), &[]);
    b.out
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outflow-pcapng-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write capture");
    path
}

/// What outflow reads: (seconds.micros, interface name, direction) per packet.
fn read_with_outflow(bytes: &[u8]) -> Vec<(u64, String, Direction)> {
    let mut reader = CaptureReader::new(bytes).expect("a valid pcapng opens");
    let mut out = Vec::new();
    while reader.advance().expect("a valid pcapng reads to its end") {
        let p = reader.packet().expect("packet");
        let name = reader.interfaces()[p.iface as usize]
            .name
            .clone()
            .unwrap_or_default();
        out.push((p.ts_ns / 1_000, name, p.direction));
    }
    assert!(!reader.truncated_tail(), "the file is whole");
    out
}

fn expected() -> Vec<(u64, String, Direction)> {
    vec![
        (T0_US, "eth0".into(), Direction::Outbound),
        (T0_US + 1_500, "veth3a4f".into(), Direction::Inbound),
        (T0_US + 2_000_000, "eth0".into(), Direction::Unknown),
    ]
}

#[test]
fn unusual_options_are_read_in_both_byte_orders() {
    for big in [false, true] {
        assert_eq!(
            read_with_outflow(&unusual(big)),
            expected(),
            "big-endian: {big}"
        );
    }
}

#[test]
fn tshark_reads_the_same_packets_from_the_same_files() {
    for (big, name) in [(false, "little.pcapng"), (true, "big.pcapng")] {
        let path = write(name, &unusual(big));
        let path = path.to_str().expect("utf-8 path");
        let Some(fields) = tool(
            "tshark",
            &[
                "-r",
                path,
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.interface_name",
                "-e",
                "tcp.srcport",
            ],
        ) else {
            return;
        };
        let rows: Vec<Vec<&str>> = fields
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .collect();
        assert_eq!(rows.len(), 3, "tshark reads three packets: {fields}");
        let ours = read_with_outflow(&unusual(big));
        for (row, (us, iface, _)) in rows.iter().zip(&ours) {
            let theirs: f64 = row[0].parse().expect("epoch");
            assert!(
                (theirs - *us as f64 / 1e6).abs() < 1e-5,
                "time {} vs {us}",
                row[0]
            );
            assert_eq!(row[1], iface);
        }
    }
}

#[test]
fn a_broken_option_list_ends_the_options_not_the_capture() {
    // An option claiming more bytes than its block holds: the options end there, packets go on.
    let mut b = Blocks {
        big: false,
        out: Vec::new(),
    };
    b.section(&[b.opt(4, b"tool")]);
    let mut bad = b.opt(2, b"eth0");
    bad.extend(b.u16(9));
    bad.extend(b.u16(200));
    b.interface(&[bad]);
    b.packet(0, T0_US, &frame(40_000, false), &[]);
    let got = read_with_outflow(&b.out);
    assert_eq!(got, vec![(T0_US, "eth0".into(), Direction::Unknown)]);
}
