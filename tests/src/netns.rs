//! Running a piece of a test inside a named network namespace (`/run/netns/NAME`).
//!
//! The test process stays in its own namespace; the closure runs on a thread that has entered
//! the named one, and so do the threads it starts (a server's), which inherit it. So a test can
//! serve or query a loopback address that only processes inside a lab's node see.

use std::fs::File;

use nix::sched::{setns, CloneFlags};

/// Runs `f` on a thread inside the network namespace `/run/netns/NAME` and returns its result.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("entering network namespace {name}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
