//! Named network namespaces (`/run/netns/NAME`, as `ip netns add` makes them).
//!
//! `setns` moves only the calling thread, so a namespace is entered on a thread of its own: the
//! agent's datapath thread lives in the node's namespace, and each look into a pod's namespace,
//! like each side of a check, is a short-lived thread.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Moves the calling thread into the named namespace.
pub fn enter(name: &str) -> io::Result<()> {
    let path = path_of(name);
    let file = File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot open network namespace {}: {e}; create it with `ip netns add {name}`",
                path.display()
            ),
        )
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::other(format!(
            "cannot enter network namespace {name}: {e}; the agent needs CAP_SYS_ADMIN"
        ))
    })
}

/// The path of a named namespace.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// The names of the named namespaces, sorted.
pub fn names() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs `f` on a thread inside the named namespace and returns its result.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let name = name.to_string();
    std::thread::spawn(move || {
        enter(&name)?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("namespace worker panicked"))?
}
