//! The capture loop: every device polled, frames written as pcapng, until a limit or a stop.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use outflow_core::capfile::{
    Direction, InterfaceInfo, InterfaceStats, LinkType, Packet, PcapngWriter, SectionInfo,
};
use outflow_core::{Config, Engine, Profile};
use pcap::Capture;

use crate::clock;

use super::device::{open, Handle, Sense};
use super::{
    check_filter, CaptureError, Ended, Limits, Request, Summary, BLOCK_TIMEOUT_MS, DEFAULT_SNAPLEN,
};

/// Runs a capture into `out` until a limit, `stop`, or a vanished interface ends it. The file is
/// valid whenever it ends; kernel drops go into its statistics blocks.
pub fn run<W: Write>(
    req: &Request,
    limits: &Limits,
    out: W,
    stop: &AtomicBool,
) -> Result<Summary, CaptureError> {
    if req.targets.is_empty() {
        return Err(CaptureError::NoTarget);
    }
    check_filter(&req.filter)?;
    let snaplen = match req.snaplen {
        None => DEFAULT_SNAPLEN,
        Some(0) => limits.max_snaplen,
        Some(s) => s.min(limits.max_snaplen),
    };
    let max_packets = req.max_packets.unwrap_or(u64::MAX).min(limits.max_packets);
    let max_bytes = req.max_bytes.unwrap_or(u64::MAX).min(limits.max_bytes);
    let duration = req
        .duration
        .unwrap_or(limits.max_duration)
        .min(limits.max_duration);

    let mut handles = Vec::new();
    for (id, t) in req.targets.iter().enumerate() {
        let (received, sent) = if t.pod_side {
            (Direction::Outbound, Direction::Inbound)
        } else {
            (Direction::Inbound, Direction::Outbound)
        };
        let senses = match t.peer_mac {
            // What the peer sends, the host's end receives.
            Some(mac) => vec![(pcap::Direction::InOut, Sense::ByMac(mac, received, sent))],
            None => vec![
                (pcap::Direction::In, Sense::Fixed(received)),
                (pcap::Direction::Out, Sense::Fixed(sent)),
            ],
        };
        for (dir, direction) in senses {
            handles.push(Handle {
                interface: id as u32,
                ifname: t.ifname.clone(),
                direction,
                capture: open(t, dir, snaplen, &req.filter)?,
            });
        }
    }
    let os = nix::sys::utsname::uname()
        .map(|u| format!("Linux {}", u.release().to_string_lossy()))
        .ok();
    let mut w = PcapngWriter::new(
        out,
        &SectionInfo {
            application: format!("outflow {}", env!("CARGO_PKG_VERSION")),
            os,
            comment: Some(req.comment.clone()),
        },
    )?;
    for t in &req.targets {
        w.add_interface(&InterfaceInfo {
            name: t.label.clone(),
            description: Some(format!("{} on {}", t.ifname, req.node)),
            link: LinkType::Ethernet,
            snaplen,
            filter: Some(req.filter.clone()),
        })?;
    }
    w.flush()?;

    let start_ns = clock::realtime_ns();
    let started = Instant::now();
    let mut engine = Engine::with_config(
        &Profile::default(),
        Config {
            notes: req.annotate,
            count_traffic: false,
            // Bounded, since it sees a capture that may run for minutes.
            max_flows: 65_536,
            max_groups: 16_384,
            max_dns_records: 16_384,
            ..Config::default()
        },
    );
    // The engine sees only what can decide something: DNS (for the name-resolution blocks
    // and its comments) and, when annotating, the control packets the live agent's datapath
    // keeps (SYN, FIN, RST, ICMP errors). Data segments skip it, which keeps a busy capture's
    // cost near libpcap's own.
    let selector = if req.annotate {
        crate::datapath::pcap::CONTROL_FILTER
    } else {
        "port 53"
    };
    let notable = Capture::dead(pcap::Linktype::ETHERNET)
        .and_then(|d| d.compile(selector, true))
        .map_err(|e| CaptureError::Selector {
            selector,
            message: e.to_string(),
        })?;
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut written_by = vec![0u64; req.targets.len()];
    let mut names_written = 0u64;
    // Asked to stop or out of time: one last read once libpcap has handed over its partly
    // filled block (its timeout), so the last packets before the stop are in the file.
    let mut closing: Option<Ended> = None;
    let ended = loop {
        let left = duration.saturating_sub(started.elapsed());
        if closing.is_none() {
            if stop.load(Ordering::Relaxed) {
                closing = Some(Ended::Stopped);
            } else if left.is_zero() {
                closing = Some(Ended::Duration);
            }
            if closing.is_some() {
                std::thread::sleep(Duration::from_millis(BLOCK_TIMEOUT_MS as u64 + 50));
            }
        }
        if closing.is_none() {
            let mut fds: Vec<PollFd> = handles
                .iter()
                .map(|h| PollFd::new(h.capture.as_fd(), PollFlags::POLLIN))
                .collect();
            let wait = left.min(Duration::from_millis(100)).as_millis() as u16;
            let _ = poll(&mut fds, PollTimeout::from(wait));
        }
        let mut gone = None;
        let mut limit = None;
        // Written straight from libpcap's buffer: no copy. Each interface's packets come in
        // time order; several interfaces interleave by batch, which readers take.
        for h in handles.iter_mut() {
            let (interface, sense) = (h.interface, h.direction);
            let read = h.capture.dispatch(Some(4096), |p| {
                if limit.is_some() {
                    return;
                }
                if packets >= max_packets {
                    limit = Some(Ended::Count);
                    return;
                }
                if bytes + p.data.len() as u64 > max_bytes {
                    limit = Some(Ended::Bytes);
                    return;
                }
                let ts = &p.header.ts;
                let ts_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_usec as u64;
                let direction = sense.of(p.data);
                let mut note = None;
                if notable.filter(p.data) {
                    engine.observe(&Packet {
                        ts_ns,
                        iface: interface,
                        link: LinkType::Ethernet,
                        direction,
                        orig_len: p.header.len,
                        data: p.data,
                    });
                    note = engine.take_note().map(|n| n.to_string());
                    // Before the packets that follow: a one-pass reader (tshark, a live
                    // Wireshark) applies names only to what comes after them. Only when the
                    // answer taught a new name; the writer skips the pairs it wrote before.
                    if engine.dns_names_learned() > names_written {
                        names_written = engine.dns_names_learned();
                        let names = engine
                            .dns_names()
                            .flat_map(|(ip, names)| names.iter().map(move |n| (ip, n.as_str())));
                        if w.write_names(names).is_err() {
                            limit = Some(Ended::ReaderGone);
                            return;
                        }
                    }
                }
                let comment = note.as_deref();
                if w.write_packet(interface, ts_ns, direction, p.data, p.header.len, comment)
                    .is_err()
                {
                    limit = Some(Ended::ReaderGone);
                    return;
                }
                packets += 1;
                bytes += p.data.len() as u64;
                written_by[interface as usize] += 1;
            });
            if let Err(e) = read {
                tracing::warn!(ifname = %h.ifname, error = %e, "capture interface gone");
                gone = Some(h.ifname.clone());
            }
        }
        if limit == Some(Ended::ReaderGone) {
            break Ended::ReaderGone;
        }
        // Each batch reaches the reader (a pipe to Wireshark) as it is read.
        let written = w.flush();
        if written.is_err() {
            break Ended::ReaderGone;
        }
        if packets >= max_packets {
            break Ended::Count;
        }
        if let Some(l) = limit {
            break l;
        }
        if let Some(i) = gone {
            break Ended::InterfaceGone(i);
        }
        if let Some(c) = closing {
            break c;
        }
    };
    let end_ns = clock::realtime_ns();
    let mut kernel_drops = 0;
    let mut per_iface: Vec<InterfaceStats> = vec![InterfaceStats::default(); req.targets.len()];
    for h in handles.iter_mut() {
        if let Ok(s) = h.capture.stats() {
            let st = &mut per_iface[h.interface as usize];
            st.accepted += s.received as u64;
            // The capture's own losses; the interface's drops happen to every reader alike.
            st.os_dropped += s.dropped as u64;
            st.if_dropped += s.if_dropped as u64;
            kernel_drops += s.dropped as u64;
        }
    }
    if ended != Ended::ReaderGone {
        for (id, st) in per_iface.iter_mut().enumerate() {
            st.start_ns = start_ns;
            st.end_ns = end_ns;
            st.delivered = written_by[id];
            let _ = w.write_stats(id as u32, st);
        }
        let _ = w.flush();
    }
    Ok(Summary {
        packets,
        bytes,
        kernel_drops,
        ended,
    })
}
