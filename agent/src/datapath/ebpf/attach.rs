//! Attaching the programs to pod interfaces and taking them back.
//!
//! TCX links or clsact filters, as `TcMode` says; a crashed agent's filters are replaced and a
//! qdisc the agent added is removed again. What the programs then count is read elsewhere.

use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::{LinkOrder, TcAttachType};

use super::load::program;
use super::{Attachment, EbpfDatapath};
use crate::datapath::{AttachError, TcMode};
use crate::netlink;

impl EbpfDatapath {
    /// Attaches both programs to an interface. An interface that vanishes meanwhile is an
    /// error for that interface only; whatever was attached is taken back.
    pub fn attach(&mut self, ifname: &str, ifindex: u32) -> Result<(), AttachError> {
        match self.attached.get(ifname) {
            Some(a) if a.ifindex == ifindex => return Ok(()),
            // The name now belongs to a new interface.
            Some(_) => self.detach(ifname),
            None => {}
        }
        let err = |e: String| AttachError {
            ifname: ifname.to_string(),
            message: e,
        };
        let mut owns_qdisc = false;
        if self.mode == TcMode::Netlink {
            match tc::qdisc_add_clsact(ifname) {
                Ok(()) => owns_qdisc = true,
                // Someone else's (or our earlier) qdisc: use it, leave it.
                Err(tc::TcError::AlreadyAttached) => {}
                Err(tc::TcError::NetlinkError(e))
                    if e.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32) => {}
                Err(e) => return Err(err(format!("adding the clsact qdisc: {e}"))),
            }
            // A crashed agent's filters would otherwise run twice.
            for (ty, name) in directions() {
                let _ = tc::qdisc_detach_program(ifname, ty, name);
            }
        }
        let mut att = Attachment {
            ifindex,
            links: Vec::new(),
            owns_qdisc,
        };
        for (ty, name) in directions() {
            let options = match self.mode {
                TcMode::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
                TcMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
            };
            let attached = program(&mut self.bpf, name)
                .map_err(|e| err(e.to_string()))
                .and_then(|p| {
                    p.attach_with_options(ifname, ty, options)
                        .map_err(|e| err(format!("{e}")))
                });
            match attached {
                Ok(id) => att.links.push((name, id)),
                Err(e) => {
                    self.release(att);
                    return Err(e);
                }
            }
        }
        self.attached.insert(ifname.to_string(), att);
        Ok(())
    }

    /// Detaches from an interface (gone or no longer wanted).
    pub fn detach(&mut self, ifname: &str) {
        if let Some(att) = self.attached.remove(ifname) {
            self.release(att);
        }
    }

    fn release(&mut self, att: Attachment) {
        for (name, id) in att.links {
            if let Ok(p) = program(&mut self.bpf, name) {
                // The interface may be gone, and its filters with it.
                let _ = p.detach(id);
            }
        }
        if att.owns_qdisc {
            let _ = netlink::delete_clsact(att.ifindex);
        }
    }
}

fn directions() -> [(TcAttachType, &'static str); 2] {
    [
        (TcAttachType::Ingress, outflow_ebpf::PROG_INGRESS),
        (TcAttachType::Egress, outflow_ebpf::PROG_EGRESS),
    ]
}
