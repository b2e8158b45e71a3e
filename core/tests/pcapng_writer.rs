//! The pcapng outflow writes, read back by Wireshark's tools (tshark, capinfos) and by outflow:
//! interface names and filters, direction flags, packet comments, names from DNS answers, the
//! capture's statistics. tshark must be installed (`cargo xtask setup`); in CI its absence fails.

mod wireshark;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use etherparse::PacketBuilder;
use outflow_core::capfile::{
    CaptureReader, Direction, InterfaceInfo, InterfaceStats, LinkType, PcapngWriter, SectionInfo,
    WriteError,
};
use wireshark::tool;

const T0: u64 = 1_790_000_000_000_000_000;

fn syn(ack: bool) -> Vec<u8> {
    let (src, dst, sport, dport) = if ack {
        ([203, 0, 113, 7], [10, 244, 1, 10], 443, 40_000)
    } else {
        ([10, 244, 1, 10], [203, 0, 113, 7], 40_000, 443)
    };
    let mut t = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 64_240)
        .syn();
    if ack {
        t = t.ack(2);
    }
    let mut out = Vec::new();
    t.write(&mut out, &[]).expect("frame");
    out
}

/// A file as a capture of one pod would be: two interfaces, a handshake, a lost SYN.
fn write_sample(path: &Path) {
    let file = std::fs::File::create(path).expect("create");
    let mut w = PcapngWriter::new(
        std::io::BufWriter::new(file),
        &SectionInfo {
            application: "outflow 0.1.0".into(),
            os: Some("Linux".into()),
            comment: Some("cluster aks-1, node node-1, pod default/web-1".into()),
        },
    )
    .expect("section");
    let pod = w
        .add_interface(&InterfaceInfo {
            name: "default/web-1@node-1".into(),
            description: Some("veth3a4f on node-1".into()),
            link: LinkType::Ethernet,
            snaplen: 262_144,
            filter: Some("tcp port 443".into()),
        })
        .expect("idb");
    let uplink = w
        .add_interface(&InterfaceInfo {
            name: "eth0@node-1".into(),
            description: None,
            link: LinkType::Ethernet,
            snaplen: 128,
            filter: None,
        })
        .expect("idb");
    w.write_names([
        ("203.0.113.7".parse::<IpAddr>().unwrap(), "api.example.com"),
        ("203.0.113.7".parse::<IpAddr>().unwrap(), "api.example.com"), // once only
    ])
    .expect("nrb");
    let (s, sa) = (syn(false), syn(true));
    w.write_packet(
        pod,
        T0,
        Direction::Inbound,
        &s,
        s.len() as u32,
        Some("SYN unanswered"),
    )
    .expect("epb");
    w.write_packet(
        pod,
        T0 + 1_000_000_000,
        Direction::Inbound,
        &s,
        s.len() as u32,
        None,
    )
    .expect("epb");
    w.write_packet(
        uplink,
        T0 + 1_500_000_000,
        Direction::Outbound,
        &sa,
        sa.len() as u32,
        None,
    )
    .expect("epb");
    w.write_stats(
        pod,
        &InterfaceStats {
            start_ns: T0 - 1_000,
            end_ns: T0 + 2_000_000_000,
            accepted: 2,
            os_dropped: 3,
            if_dropped: 0,
            delivered: 2,
        },
    )
    .expect("isb");
    w.into_inner().expect("flush");
}

fn sample(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("outflow-{}-{name}.pcapng", std::process::id()));
    write_sample(&path);
    path
}

#[test]
fn tshark_reads_interfaces_directions_comments_and_names() {
    let path = sample("tshark");
    let file = path.to_str().unwrap();
    let Some(rows) = tool(
        "tshark",
        &[
            "-r",
            file,
            "-N",
            "n",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.interface_description",
            "-e",
            "frame.packet_flags_direction",
            "-e",
            "frame.comment",
            "-e",
            "ip.dst_host",
            "-e",
            "ip.src_host",
        ],
    ) else {
        return;
    };
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0][0], "default/web-1@node-1");
    assert_eq!(rows[0][1], "veth3a4f on node-1");
    assert_eq!(rows[2][0], "eth0@node-1");
    // 1 inbound, 2 outbound.
    let direction = |r: &[&str]| u32::from_str_radix(r[2].trim_start_matches("0x"), 16).ok();
    assert_eq!(direction(&rows[0]), Some(1), "{rows:?}");
    assert_eq!(direction(&rows[2]), Some(2), "{rows:?}");
    assert_eq!(rows[0][3], "SYN unanswered");
    assert_eq!(rows[1][3], "", "no comment on the retransmission");
    assert_eq!(
        rows[0][4], "api.example.com",
        "the name-resolution block names the address"
    );
    assert_eq!(rows[2][5], "api.example.com");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn capinfos_sees_the_section_interfaces_filter_and_statistics() {
    let path = sample("capinfos");
    let Some(info) = tool("capinfos", &[path.to_str().unwrap()]) else {
        return;
    };
    for expected in [
        "Number of packets:   3",
        "Capture application: outflow 0.1.0",
        "Capture comment:     cluster aks-1, node node-1, pod default/web-1",
        "Description = veth3a4f on node-1",
        "Number of interfaces in file: 2",
        "Name = default/web-1@node-1",
        "Capture length = 262144",
        "Capture length = 128",
        "Filter string = tcp port 443",
        "Number of stat entries = 1",
        "Time precision = nanoseconds (9)",
        "Number of resolved IPv4 addresses in file: 1",
    ] {
        assert!(
            info.contains(expected),
            "capinfos lacks {expected:?}:\n{info}"
        );
    }
    let _ = std::fs::remove_file(&path);
}

/// editcap rewrites the file: to pcapng again, keeping the comments and names, and to pcap.
#[test]
fn editcap_rewrites_it_to_pcapng_and_pcap() {
    let path = sample("editcap");
    let file = path.to_str().unwrap();
    let again = path.with_extension("again.pcapng");
    let pcap = path.with_extension("pcap");
    let (again_s, pcap_s) = (again.to_str().unwrap(), pcap.to_str().unwrap());
    if tool("editcap", &["-F", "pcapng", file, again_s]).is_none() {
        return;
    }
    // pcap holds one link type per file: only the first interface's packets (both Ethernet).
    tool("editcap", &["-F", "pcap", file, pcap_s]).expect("editcap");
    let fields = |f: &str| {
        tool(
            "tshark",
            &[
                "-r",
                f,
                "-T",
                "fields",
                "-e",
                "frame.comment",
                "-e",
                "ip.dst_host",
            ],
        )
        .expect("tshark")
    };
    assert_eq!(
        fields(file),
        fields(again_s),
        "the rewrite keeps comments and names"
    );
    let count = |f: &str| {
        tool("capinfos", &["-c", "-M", f])
            .expect("capinfos")
            .lines()
            .find_map(|l| {
                l.strip_prefix("Number of packets:")?
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
    };
    assert_eq!(count(file), Some(3));
    assert_eq!(count(again_s), Some(3));
    assert_eq!(count(pcap_s), Some(3), "every packet in the pcap too");
    for p in [&path, &again, &pcap] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn outflow_reads_back_what_it_wrote() {
    let path = sample("outflow");
    let mut r = CaptureReader::new(std::fs::File::open(&path).expect("open")).expect("pcapng");
    let mut seen = Vec::new();
    while r.advance().expect("records") {
        let p = r.packet().expect("packet");
        seen.push((p.iface, p.ts_ns, p.direction, p.data.len()));
    }
    assert_eq!(
        seen,
        vec![
            (0, T0, Direction::Inbound, syn(false).len()),
            (0, T0 + 1_000_000_000, Direction::Inbound, syn(false).len()),
            (1, T0 + 1_500_000_000, Direction::Outbound, syn(true).len()),
        ]
    );
    let names: Vec<Option<String>> = r.interfaces().iter().map(|i| i.name.clone()).collect();
    assert_eq!(
        names,
        vec![
            Some("default/web-1@node-1".to_string()),
            Some("eth0@node-1".to_string())
        ]
    );
    assert!(!r.truncated_tail());
    let _ = std::fs::remove_file(&path);
}

/// The statistics block, read by hand: its timestamp in the format's high-then-low words and
/// its kernel-drop count (isb_osdrop, option 7). Wireshark's tools do not print either.
#[test]
fn the_statistics_block_holds_the_end_time_and_the_kernel_drops() {
    let path = sample("isb");
    let bytes = std::fs::read(&path).expect("read");
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut at = 0;
    let mut found = false;
    while at + 12 <= bytes.len() {
        let (kind, len) = (be32(at), be32(at + 4) as usize);
        assert!(len >= 12 && len % 4 == 0, "block at {at}: length {len}");
        if kind == 5 {
            let ts = (u64::from(be32(at + 12)) << 32) | u64::from(be32(at + 16));
            assert_eq!(ts, T0 + 2_000_000_000);
            // Options from +20: code (u16), length (u16), value padded to 4.
            let mut opt = at + 20;
            let mut os_drop = None;
            while opt + 4 <= at + len - 4 {
                let code = u16::from_be_bytes([bytes[opt], bytes[opt + 1]]);
                let olen = u16::from_be_bytes([bytes[opt + 2], bytes[opt + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if code == 7 {
                    os_drop = Some(u64::from_be_bytes(
                        bytes[opt + 4..opt + 12].try_into().unwrap(),
                    ));
                }
                opt += 4 + olen.div_ceil(4) * 4;
            }
            assert_eq!(os_drop, Some(3));
            found = true;
        }
        at += len;
    }
    assert!(found, "an interface statistics block");
    let _ = std::fs::remove_file(&path);
}

/// A destination with room for `room` bytes, then "no space left on device".
struct Full {
    room: usize,
}

impl std::io::Write for Full {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_destination_is_an_io_error_that_keeps_its_cause() {
    use std::error::Error;
    let info = SectionInfo {
        application: "outflow test".into(),
        os: None,
        comment: None,
    };
    let mut w = PcapngWriter::new(Full { room: 4096 }, &info).expect("the header fits");
    let iface = w
        .add_interface(&InterfaceInfo {
            name: "default/web@node-1".into(),
            description: None,
            link: LinkType::Ethernet,
            snaplen: 0,
            filter: None,
        })
        .expect("the interface fits");
    let frame = syn(false);
    let e = (0..1000)
        .find_map(|i| {
            w.write_packet(
                iface,
                i,
                Direction::Outbound,
                &frame,
                frame.len() as u32,
                None,
            )
            .err()
        })
        .expect("the destination fills up");
    let io = e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("no I/O cause in {e:?}"));
    assert_eq!(io.raw_os_error(), Some(28), "{io}");
    assert!(matches!(e, WriteError::Io(_)), "{e:?}");

    let mut w = PcapngWriter::new(Vec::new(), &info).unwrap();
    let e = w
        .write_packet(3, 0, Direction::Outbound, &frame, frame.len() as u32, None)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "packet for interface 3, which this file has not declared"
    );
}
