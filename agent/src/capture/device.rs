//! One libpcap device opened for a capture, and how its frames' directions are told.

use outflow_core::capfile::Direction;
use pcap::{Active, Capture, Precision};

use super::{CaptureError, Target, BLOCK_TIMEOUT_MS};

pub(super) struct Handle {
    pub(super) interface: u32,
    pub(super) ifname: String,
    /// How directions are told: fixed by the capture's own direction, or by the source address.
    pub(super) direction: Sense,
    pub(super) capture: Capture<Active>,
}

#[derive(Clone, Copy)]
pub(super) enum Sense {
    Fixed(Direction),
    /// (the peer's address, the direction of what it sends, of the rest)
    ByMac([u8; 6], Direction, Direction),
}

impl Sense {
    pub(super) fn of(self, frame: &[u8]) -> Direction {
        match self {
            Sense::Fixed(d) => d,
            Sense::ByMac(mac, sent, received) => {
                if frame.get(6..12) == Some(&mac[..]) {
                    sent
                } else {
                    received
                }
            }
        }
    }
}

pub(super) fn open(
    t: &Target,
    dir: pcap::Direction,
    snaplen: u32,
    filter: &str,
) -> Result<Capture<Active>, CaptureError> {
    let err = |e: pcap::Error| CaptureError::Open {
        ifname: t.ifname.clone(),
        message: e.to_string(),
    };
    let mut cap = Capture::from_device(t.ifname.as_str())
        .map_err(err)?
        .promisc(false)
        // Blocks handed over when full or after 200 ms, as tcpdump -w does: immediate mode
        // would wake the capture for every packet and cost a busy interface a third of its rate.
        .immediate_mode(false)
        .timeout(BLOCK_TIMEOUT_MS)
        .snaplen(snaplen as i32)
        .buffer_size(4 << 20)
        .precision(Precision::Nano)
        .open()
        .map_err(err)?;
    cap.direction(dir).map_err(err)?;
    // Always a kernel filter, even an empty one: it compiles to "keep snaplen bytes", and that
    // is what makes the kernel copy only those into the ring. Without it every 64 KiB TCP
    // segment fills a quarter of a ring block, and the ring overflows under load.
    cap.filter(filter, true).map_err(|e| CaptureError::Filter {
        filter: filter.to_string(),
        message: e.to_string(),
    })?;
    cap.setnonblock().map_err(err)
}
