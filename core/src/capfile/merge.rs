//! Reads several captures as one, in timestamp order.
//!
//! Files of one capture session (rotated with `tcpdump -C`, or taken at the same time on a pod and
//! its node) are analysed as a single capture: the next packet is always the earliest among the
//! files, as `mergecap` would order them. A file that turns out corrupt midway stops contributing
//! and its error is kept; the others go on.

use std::io::Read;

use super::{CapfileError, CaptureReader, Packet};

/// Interface ids of file `i` start at `i << IFACE_SHIFT`.
const IFACE_SHIFT: u32 = 16;

/// Several capture readers merged by packet time.
pub struct MergedReader<R> {
    readers: Vec<CaptureReader<R>>,
    /// Whether `readers[i]` currently holds an unconsumed packet.
    live: Vec<bool>,
    current: Option<usize>,
    errors: Vec<(usize, CapfileError)>,
    started: bool,
}

impl<R: Read> MergedReader<R> {
    /// Merges readers; interface ids are renumbered per file so they stay distinct.
    pub fn new(mut readers: Vec<CaptureReader<R>>) -> MergedReader<R> {
        for (i, r) in readers.iter_mut().enumerate() {
            r.set_iface_base((i as u32) << IFACE_SHIFT);
        }
        let n = readers.len();
        MergedReader {
            readers,
            live: vec![false; n],
            current: None,
            errors: Vec::new(),
            started: false,
        }
    }

    /// Moves to the earliest unread packet across all files; `Ok(false)` when all are done.
    #[inline]
    pub fn advance(&mut self) -> bool {
        if self.readers.len() == 1 && self.started {
            // One file: nothing to merge.
            self.pull(0);
            self.current = self.live[0].then_some(0);
            return self.live[0];
        }
        if !self.started {
            self.started = true;
            for i in 0..self.readers.len() {
                self.pull(i);
            }
        } else if let Some(i) = self.current {
            self.pull(i);
        }
        self.current = None;
        let mut best: Option<(u64, usize)> = None;
        for (i, r) in self.readers.iter().enumerate() {
            if !self.live[i] {
                continue;
            }
            let ts = r.packet().map_or(u64::MAX, |p| p.ts_ns);
            if best.is_none_or(|(b, _)| ts < b) {
                best = Some((ts, i));
            }
        }
        self.current = best.map(|(_, i)| i);
        self.current.is_some()
    }

    /// The packet `advance` moved to.
    #[inline]
    pub fn packet(&self) -> Option<Packet<'_>> {
        self.current.and_then(|i| self.readers[i].packet())
    }

    /// Errors met, by file index; those files stopped at the error.
    pub fn errors(&self) -> &[(usize, CapfileError)] {
        &self.errors
    }

    /// Indexes of files that ended in the middle of a record.
    pub fn truncated_files(&self) -> Vec<usize> {
        (0..self.readers.len())
            .filter(|&i| self.readers[i].truncated_tail())
            .collect()
    }

    /// Packets read from file `i` so far.
    pub fn packets_read(&self, i: usize) -> u64 {
        self.readers.get(i).map_or(0, |r| r.packets_read())
    }

    /// Whether these captures may show one packet more than once: several interfaces, or a
    /// Linux cooked (`any`) capture.
    pub fn may_hold_duplicates(&self) -> bool {
        let links: Vec<_> = self.readers.iter().flat_map(|r| r.link_types()).collect();
        links.len() > 1
            || links
                .iter()
                .any(|l| matches!(l, super::LinkType::LinuxSll | super::LinkType::LinuxSll2))
    }

    /// The underlying readers.
    pub fn readers(&self) -> &[CaptureReader<R>] {
        &self.readers
    }

    #[inline]
    fn pull(&mut self, i: usize) {
        match self.readers[i].advance() {
            Ok(more) => self.live[i] = more,
            Err(e) => {
                self.live[i] = false;
                self.errors.push((i, e));
            }
        }
    }
}
