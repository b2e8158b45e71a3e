//! Any sequence of frames, of any supported link type, through the whole engine.
//! Input: records of [link selector: u8][length: u16 BE][bytes].
#![no_main]

use libfuzzer_sys::fuzz_target;
use outflow_core::capfile::{Direction, LinkType, Packet};
use outflow_core::{Engine, Profile};

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::RawIp,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Null,
    LinkType::Ipv6,
];

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(&Profile::default());
    engine.enable_dedup();
    let mut rest = data;
    let mut ts = 0u64;
    while rest.len() >= 3 {
        let link = LINKS[rest[0] as usize % LINKS.len()];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let frame = &rest[3..3 + len];
        rest = &rest[3 + len..];
        // Large steps of packet time exercise the SYN and DNS timeouts.
        ts += 1 + (len as u64) * 50_000_000;
        engine.observe(&Packet {
            ts_ns: ts,
            iface: (len % 3) as u32,
            link,
            direction: Direction::Unknown,
            orig_len: len as u32,
            data: frame,
        });
    }
    let _ = engine.finish();
});
