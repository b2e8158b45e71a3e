//! A watch on a thread of its own with its own runtime, so callers stay synchronous; it stops
//! when dropped. Shared by the agent's pod watch and the controller's cluster watch.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use kube::Client;

use crate::watch::{client, AccessError, ClusterAccess};

/// The running thread; dropping it stops the watch and waits for the thread.
pub(crate) struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Connects as `access` says, then runs `watch(client)` on a thread named `name` until
    /// dropped. Fails only when there is no API to talk to.
    pub(crate) fn start<F, W>(
        name: &str,
        access: &ClusterAccess,
        watch: W,
    ) -> Result<Background, AccessError>
    where
        W: FnOnce(Client) -> F + Send + 'static,
        F: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AccessError::Runtime)?;
        let client = runtime.block_on(client(access))?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = watch(client) => {}
                        _ = stopped => {}
                    }
                })
            })
            .map_err(AccessError::Runtime)?;
        Ok(Background {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shared view, even after a reader panicked holding it: every write is one whole change.
pub(crate) fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}
