//! `outflow captures`: the captures a controller holds.

use std::io::{self, Write};

use outflow_core::report::rfc3339;
use outflow_core::wire::captures::CaptureInfo;

use super::Pick::{All, Wide};
use super::{human, or_dash, write_view, Column};

fn columns() -> Vec<Column<CaptureInfo>> {
    vec![
        Column::new("ID", |c: &CaptureInfo, _| c.id.to_string()),
        Column::new("STATE", |c: &CaptureInfo, _| c.state.to_string()),
        Column::new("NODE", |c: &CaptureInfo, _| c.node.clone()),
        Column::new("POD / INTERFACE", |c: &CaptureInfo, _| {
            match (&c.spec.pod, &c.spec.interface) {
                (Some(p), Some(i)) => format!("{p} ({i})"),
                (Some(p), None) => p.clone(),
                (None, Some(i)) => i.clone(),
                (None, None) => "-".into(),
            }
        }),
        Column::new("FILTER", |c: &CaptureInfo, _| or_dash(Some(&c.spec.filter))),
        Column::new("PACKETS", |c: &CaptureInfo, _| c.packets.to_string()),
        Column::new("SIZE", |c: &CaptureInfo, _| human(c.bytes)),
        Column::new("DROPS", |c: &CaptureInfo, _| c.kernel_drops.to_string()),
        Column::new("LIMITS", |c: &CaptureInfo, _| {
            let mut l = Vec::new();
            if let Some(n) = c.spec.count {
                l.push(format!("-c {n}"));
            }
            if let Some(s) = c.spec.duration_s {
                l.push(format!("{s}s"));
            }
            match c.spec.snaplen {
                Some(0) => l.push("-s 0".into()),
                Some(s) => l.push(format!("-s {s}")),
                None => {}
            }
            if l.is_empty() {
                "-".into()
            } else {
                l.join(" ")
            }
        }),
        Column::new("CREATED", |c: &CaptureInfo, _| rfc3339(c.created_ns)),
        Column::new("ENDED", |c: &CaptureInfo, _| {
            c.ended_ns.map_or("-".into(), rfc3339)
        }),
        Column::new("REASON", |c: &CaptureInfo, _| {
            c.reason
                .clone()
                .or_else(|| c.warning.clone())
                .unwrap_or_else(|| "-".into())
        }),
    ]
}

/// The captures, newest first as the controller lists them; wide output adds drops, limits and
/// the end time.
pub fn write_captures(
    out: &mut impl Write,
    captures: &[CaptureInfo],
    wide: bool,
) -> io::Result<()> {
    let view = [
        All("ID"),
        All("STATE"),
        All("NODE"),
        All("POD / INTERFACE"),
        All("FILTER"),
        All("PACKETS"),
        All("SIZE"),
        Wide("DROPS"),
        Wide("LIMITS"),
        All("CREATED"),
        Wide("ENDED"),
        All("REASON"),
    ];
    write_view(out, &columns(), &view, captures, wide)
}
