//! The Rust mirror in `src/abi.rs` matches `include/outflow.h` as the C compiler lays it out.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use outflow_ebpf::abi::*;

/// Compiles and runs `tests/layout.c`, which prints `name value` lines.
fn c_layout() -> HashMap<String, usize> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("outflow-layout");
    let status = Command::new("cc")
        .arg("-I")
        .arg(dir.join("include"))
        .arg(dir.join("tests/layout.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling tests/layout.c failed");
    let out = Command::new(&exe).output().expect("layout program runs");
    String::from_utf8(out.stdout)
        .expect("ascii")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("number"))
        })
        .collect()
}

#[test]
fn rust_structs_match_the_c_header() {
    let c = c_layout();
    let rust: Vec<(&str, usize)> = vec![
        ("outflow_flow_key", size_of::<FlowKey>()),
        ("outflow_flow_key.saddr", offset_of!(FlowKey, saddr)),
        ("outflow_flow_key.daddr", offset_of!(FlowKey, daddr)),
        ("outflow_flow_key.sport", offset_of!(FlowKey, sport)),
        ("outflow_flow_key.dport", offset_of!(FlowKey, dport)),
        ("outflow_flow_key.ifindex", offset_of!(FlowKey, ifindex)),
        ("outflow_flow_key.proto", offset_of!(FlowKey, proto)),
        ("outflow_flow_key.family", offset_of!(FlowKey, family)),
        ("outflow_flow_key._pad", offset_of!(FlowKey, _pad)),
        ("outflow_flow_value", size_of::<FlowValue>()),
        ("outflow_flow_value.packets", offset_of!(FlowValue, packets)),
        ("outflow_flow_value.bytes", offset_of!(FlowValue, bytes)),
        ("outflow_flow_cache", size_of::<FlowCache>()),
        ("outflow_flow_cache.key", offset_of!(FlowCache, key)),
        ("outflow_flow_cache._pad", offset_of!(FlowCache, _pad)),
        ("outflow_flow_cache.packets", offset_of!(FlowCache, packets)),
        ("outflow_flow_cache.bytes", offset_of!(FlowCache, bytes)),
        ("outflow_event", size_of::<EventHeader>()),
        ("outflow_event.ts_ns", offset_of!(EventHeader, ts_ns)),
        ("outflow_event.ifindex", offset_of!(EventHeader, ifindex)),
        ("outflow_event.pkt_len", offset_of!(EventHeader, pkt_len)),
        ("outflow_event.cap_len", offset_of!(EventHeader, cap_len)),
        ("outflow_event.kind", offset_of!(EventHeader, kind)),
        ("outflow_event.hook", offset_of!(EventHeader, hook)),
        ("outflow_event._pad", offset_of!(EventHeader, _pad)),
        ("outflow_event.data", size_of::<EventHeader>()),
        ("OUTFLOW_AF_INET", AF_INET as usize),
        ("OUTFLOW_AF_INET6", AF_INET6 as usize),
        ("OUTFLOW_HOOK_INGRESS", HOOK_INGRESS as usize),
        ("OUTFLOW_HOOK_EGRESS", HOOK_EGRESS as usize),
        ("OUTFLOW_EV_CONTROL", EV_CONTROL as usize),
        ("OUTFLOW_EV_DNS", EV_DNS as usize),
        ("OUTFLOW_CONTROL_BYTES", CONTROL_BYTES),
        ("OUTFLOW_DNS_BYTES", DNS_BYTES),
        ("OUTFLOW_STAT_PACKETS", STAT_PACKETS as usize),
        ("OUTFLOW_STAT_BYTES", STAT_BYTES as usize),
        ("OUTFLOW_STAT_FLOWS_NEW", STAT_FLOWS_NEW as usize),
        ("OUTFLOW_STAT_FLOW_FULL", STAT_FLOW_FULL as usize),
        ("OUTFLOW_STAT_EVENTS", STAT_EVENTS as usize),
        ("OUTFLOW_STAT_EVENT_DROPS", STAT_EVENT_DROPS as usize),
        ("OUTFLOW_STAT_NOT_IP", STAT_NOT_IP as usize),
        ("OUTFLOW_STAT_SHORT", STAT_SHORT as usize),
        ("OUTFLOW_STAT_COUNT", STAT_COUNT as usize),
    ];
    for (name, value) in &rust {
        assert_eq!(
            c.get(*name),
            Some(value),
            "{name}: C says {:?}, Rust says {value}",
            c.get(*name)
        );
    }
    assert_eq!(
        c.len(),
        rust.len(),
        "the C side prints items the Rust side does not check"
    );
}

#[test]
fn event_header_parses_what_the_kernel_writes() {
    let mut rec = vec![0u8; size_of::<EventHeader>() + 4];
    rec[0..8].copy_from_slice(&7u64.to_ne_bytes());
    rec[offset_of!(EventHeader, ifindex)..][..4].copy_from_slice(&3u32.to_ne_bytes());
    rec[offset_of!(EventHeader, pkt_len)..][..4].copy_from_slice(&1500u32.to_ne_bytes());
    rec[offset_of!(EventHeader, cap_len)..][..2].copy_from_slice(&2u16.to_ne_bytes());
    rec[offset_of!(EventHeader, kind)] = EV_DNS;
    rec[offset_of!(EventHeader, hook)] = HOOK_EGRESS;
    rec[size_of::<EventHeader>()..].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
    let (h, data) = EventHeader::parse(&rec).expect("long enough");
    assert_eq!(
        (h.ts_ns, h.ifindex, h.pkt_len, h.kind, h.hook),
        (7, 3, 1500, EV_DNS, HOOK_EGRESS)
    );
    assert_eq!(data, &[0xaa, 0xbb], "data is cut at cap_len");
    assert!(
        EventHeader::parse(&rec[..10]).is_none(),
        "a short record is refused"
    );
}
