//! What a packet does to its flow and group: creating flows, applying attempt effects and
//! application events, and folding a flow into its group when it leaves the table.

use crate::app::{App, AppEvent};
use crate::conn::attempt::Effect;
use crate::conn::group::{GroupKey, GroupStats, Groups};
use crate::conn::table::{Flow, FlowTable};
use crate::conn::FlowKey;
use crate::decode::proto;

/// The flow for `key`, created (with its group) if new. `src_is_client` says which side opened
/// it; it is asked only for a new flow. `iface` is the interface the packet came through (0:
/// unknown); a new flow opened by this packet's sender gives it to its group.
#[allow(clippy::too_many_arguments)]
pub(super) fn flow_entry<'t>(
    flows: &'t mut FlowTable,
    groups: &mut Groups,
    events: &mut Vec<AppEvent>,
    ts: u64,
    key: FlowKey,
    src_is_lo: bool,
    src_is_client: impl FnOnce() -> bool,
    (sport, dport): (u16, u16),
    iface: u32,
) -> &'t mut Flow {
    let mut ctx = (groups, events);
    let make = |(groups, _): &mut (&mut Groups, &mut Vec<AppEvent>)| {
        let sent_by_client = src_is_client();
        let (client_lo, server_port) = if sent_by_client {
            (src_is_lo, dport)
        } else {
            (!src_is_lo, sport)
        };
        let (client, _) = key.endpoint(client_lo);
        let (server, _) = key.endpoint(!client_lo);
        let gid = groups.id(
            GroupKey {
                src: client,
                dst: server,
                dst_port: server_port,
                proto: key.proto(),
            },
            ts,
        );
        if sent_by_client && iface != 0 {
            groups.saw_client_on(gid, iface);
        }
        let app = if key.proto() == proto::TCP {
            App::for_port(server_port)
        } else {
            App::Opaque
        };
        Flow::new(gid, client_lo, ts, app)
    };
    flows.get_or_insert(key, &mut ctx, make, |(groups, events), f| {
        close_flow(groups, events, f)
    })
}

/// Moves a flow's packet and byte counts into its group.
fn fold_counts(g: &mut GroupStats, f: &mut Flow) {
    g.packets_out += std::mem::take(&mut f.packets[0]);
    g.packets_in += std::mem::take(&mut f.packets[1]);
    g.bytes_out += std::mem::take(&mut f.bytes[0]);
    g.bytes_in += std::mem::take(&mut f.bytes[1]);
    g.last_ns = g.last_ns.max(f.last_ns);
}

pub(super) fn apply(g: &mut GroupStats, effect: Effect) {
    match effect {
        Effect::None => {}
        Effect::Opened(previous) => {
            if let Some(o) = previous {
                g.count(o);
            }
        }
        Effect::Retransmitted => g.syn_retransmissions += 1,
        Effect::Decided {
            outcome,
            latency_ns,
            retracted,
        } => {
            if let Some(r) = retracted {
                g.uncount(r);
            }
            g.count(outcome);
            if let Some(l) = latency_ns {
                g.handshake.add(l);
            }
        }
    }
}

pub(super) fn apply_app_event(g: &mut GroupStats, ev: AppEvent) {
    match ev {
        AppEvent::Name(n) => g.add_name(&n),
        AppEvent::HttpStatus(s) => *g.http_statuses.entry(s).or_default() += 1,
        AppEvent::Connect { target, status } => g.add_connect(&target, status),
        AppEvent::DnsMessage(_) => {}
    }
}

/// Counts an attempt's effect in the flow's group, later. Groups lie far apart in memory and are
/// rarely in cache when a SYN-ACK or RST decides an attempt, so the effect waits on the flow
/// until the next one comes, the flow leaves (which reads the group anyway) or a live window is
/// drained; effects reach the group in the order they happened.
pub(super) fn defer(groups: &mut Groups, f: &mut Flow, effect: Effect) {
    if matches!(effect, Effect::None | Effect::Opened(None)) {
        return;
    }
    settle(groups, f);
    f.unapplied = effect;
}

/// Counts the effect waiting on the flow in its group now.
pub(super) fn settle(groups: &mut Groups, f: &mut Flow) {
    let effect = std::mem::replace(&mut f.unapplied, Effect::None);
    if effect != Effect::None {
        if let Some(g) = groups.get_mut(f.group) {
            apply(g, effect);
        }
    }
}

/// A flow leaves the table: its open attempt is incomplete, its unanswered CONNECTs are counted.
pub(super) fn close_flow(groups: &mut Groups, events: &mut Vec<AppEvent>, f: &mut Flow) {
    settle(groups, f);
    let effect = f.attempt.on_end();
    f.app.on_end(events);
    if let Some(g) = groups.get_mut(f.group) {
        fold_counts(g, f);
        apply(g, effect);
        for ev in events.drain(..) {
            apply_app_event(g, ev);
        }
    }
    events.clear();
}
