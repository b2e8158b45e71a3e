//! Mutation fuzzing of the packet, DNS and capture-file paths on the stable toolchain.
//!
//! Valid frames, DNS messages and a capture file are mutated at random (byte flips, truncation,
//! length fields set to extremes) with a fixed seed, so a failure reproduces. The engine must count
//! what it cannot use and never panic or hang. The same inputs seed the `fuzz/` targets for longer
//! coverage-guided runs.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::capfile::{CaptureReader, LinkType};
use crate::decode::tcp_flags::{ACK, SYN};
use crate::testutil::{dns_query, dns_response, icmp_unreachable, tcp, udp, Frame};
use crate::{Engine, Profile};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Frame> {
    let q = dns_query(
        7,
        "web.example.com.default.svc.cluster.local",
        RecordType::A,
    );
    let r = dns_response(
        7,
        "web.example.com",
        RecordType::A,
        ResponseCode::NoError,
        &["198.51.100.80"],
    );
    let syn = tcp("10.244.1.10", 40000, "203.0.113.7", 443, SYN, 1, 0, b"");
    let mut tcp_dns = (r.len() as u16).to_be_bytes().to_vec();
    tcp_dns.extend_from_slice(&r);
    vec![
        syn.clone(),
        tcp(
            "203.0.113.7",
            443,
            "10.244.1.10",
            40000,
            SYN | ACK,
            1,
            2,
            b"",
        ),
        tcp(
            "10.244.1.10",
            40000,
            "203.0.113.7",
            80,
            ACK,
            2,
            2,
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        tcp(
            "203.0.113.7",
            80,
            "10.244.1.10",
            40000,
            ACK,
            2,
            30,
            b"HTTP/1.1 407 Proxy\r\n\r\n",
        ),
        tcp(
            "10.244.1.10",
            40001,
            "203.0.113.7",
            443,
            ACK,
            2,
            2,
            &[0x16, 3, 1, 0, 40, 1, 0, 0, 36, 3, 3],
        ),
        tcp("10.0.0.10", 53, "10.244.1.10", 40002, ACK, 9, 9, &tcp_dns),
        udp("10.244.1.10", 33000, "10.0.0.10", 53, &q),
        udp("10.0.0.10", 53, "10.244.1.10", 33000, &r),
        udp("fd00::10", 33000, "fd00::53", 53, &q),
        icmp_unreachable("10.244.1.1", "10.244.1.10", 13, &syn),
    ]
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        if data.is_empty() {
            return;
        }
        let i = rng.below(data.len());
        match rng.below(4) {
            0 => data[i] ^= 1 << rng.below(8),
            1 => data[i] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
            2 => data.truncate(i),
            _ => {
                if i + 1 < data.len() {
                    data[i] = 0xff;
                    data[i + 1] = 0xff;
                }
            }
        }
    }
}

#[test]
fn mutated_frames_never_panic_the_engine() {
    let seeds = seeds();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut engine = Engine::new(&Profile::default());
    let links = [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
    ];
    for i in 0..40_000u64 {
        let mut f = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut f.data);
        f.link = if rng.below(4) == 0 {
            links[rng.below(links.len())]
        } else {
            LinkType::Ethernet
        };
        if f.link == LinkType::RawIp && f.data.len() > 14 {
            f.data.drain(..14);
        }
        f.ts_ns = i * 1_000_000;
        engine.observe(&f.packet());
    }
    let report = engine.finish();
    assert_eq!(report.capture.packets, 40_000);
    assert!(
        report.capture.truncated_frames + report.capture.undecodable + report.capture.dns_malformed
            > 0
    );
}

#[test]
fn dns_compression_loop_and_overlong_lengths_are_errors() {
    // Header with one question whose name is a pointer to itself (offset 12).
    let looped = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    assert!(crate::dns::message::parse(&looped).is_err());
    // A label claiming 63 bytes with 3 present.
    let short = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a', b'b', b'c'];
    assert!(crate::dns::message::parse(&short).is_err());
    let mut rng = Rng(99);
    let base = dns_response(
        1,
        "a.b.example.com",
        RecordType::A,
        ResponseCode::NoError,
        &["1.2.3.4"],
    );
    for _ in 0..20_000 {
        let mut m = base.clone();
        mutate(&mut rng, &mut m);
        let _ = crate::dns::message::parse(&m);
    }
}

#[test]
fn mutated_capture_files_end_in_an_error_or_a_count_never_a_panic() {
    let mut file = Vec::new();
    {
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        let mut w = PcapWriter::new(&mut file).unwrap();
        for (i, f) in seeds().iter().enumerate() {
            let ts = std::time::Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))
                .unwrap();
        }
    }
    let mut rng = Rng(7);
    for _ in 0..5_000 {
        let mut bytes = file.clone();
        mutate(&mut rng, &mut bytes);
        let Ok(mut reader) = CaptureReader::new(bytes.as_slice()) else {
            continue;
        };
        let mut engine = Engine::new(&Profile::default());
        let mut n = 0;
        while let Ok(true) = reader.advance() {
            engine.observe(&reader.packet().unwrap());
            n += 1;
            assert!(
                n <= 64,
                "a 10-packet file cannot yield more than a few packets"
            );
        }
        engine.finish();
    }
}
