//! The one thread that writes reports to the store, many to a transaction.
//!
//! Each report's request hands its report to this thread and waits for the answer; the thread
//! takes every report waiting (up to [`MAX_BATCH`] by default) and stores them together with
//! [`Store::insert_batch`], so they share a commit and its WAL checkpoints. A report is
//! acknowledged only after its batch commits. One whose request is gone before its batch
//! begins (the agent timed out and will send it again) is not written: a report stored after
//! its agent was told it failed would be counted again when it is sent again. How many wait
//! is bounded before this, by the ingest slots of [`super::state::AppState`].
//!
//! Measured (BENCHMARKS.md), sharing commits does not raise the limit at today's report size:
//! the commit is under a fifth of a report's cost, writing its rows the rest.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use outflow_core::wire::NodeReport;
use tokio::sync::oneshot;

use super::error::ApiError;
use crate::clock::now_ns;
use crate::metrics::Metrics;
use crate::store::{Store, Stored};

/// Reports stored in one transaction at most by default: few enough that a batch holds the
/// store for well under a second.
pub const MAX_BATCH: usize = 64;

/// A report and where its answer goes.
struct Job {
    report: NodeReport,
    answer: oneshot::Sender<anyhow::Result<Stored>>,
}

/// The way to the writer thread; the thread ends when the last of these goes.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the thread that writes to `store`, at most `max_batch` reports to a
    /// transaction, and counts what it stored in `metrics`.
    pub(super) fn spawn(
        store: Arc<Mutex<Store>>,
        metrics: Arc<Mutex<Metrics>>,
        max_batch: usize,
    ) -> Writer {
        let (jobs, queue) = mpsc::channel();
        let max_batch = max_batch.max(1);
        let started = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_batches(&queue, &store, &metrics, max_batch));
        if let Err(e) = started {
            // Without the thread every report is answered 500 with this reason, not lost
            // silently: the agents keep them queued.
            tracing::error!(error = %e, "cannot start the store's writer thread");
        }
        Writer { jobs }
    }

    /// Stores `report` in the next batch; answers once that batch is committed.
    pub(super) async fn store(&self, report: NodeReport) -> Result<Stored, ApiError> {
        let (answer, stored) = oneshot::channel();
        let gone = || {
            ApiError::internal(
                "storing a report",
                anyhow::anyhow!("the store's writer thread is gone; restart the controller"),
            )
        };
        self.jobs.send(Job { report, answer }).map_err(|_| gone())?;
        match stored.await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(ApiError::internal("storing a report", e)),
            Err(_) => Err(gone()),
        }
    }
}

/// The thread's loop: a batch of every report waiting, stored, answered; until no one can
/// send any more.
fn write_batches(
    queue: &mpsc::Receiver<Job>,
    store: &Mutex<Store>,
    metrics: &Mutex<Metrics>,
    max_batch: usize,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter().take(max_batch - 1));
        let waiting = jobs.len();
        jobs.retain(|j| !j.answer.is_closed());
        let lock = || metrics.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs.len() < waiting {
            lock().abandoned((waiting - jobs.len()) as u64);
        }
        if jobs.is_empty() {
            continue;
        }
        let (reports, answers): (Vec<NodeReport>, Vec<_>) =
            jobs.into_iter().map(|j| (j.report, j.answer)).unzip();
        let stored = std::panic::catch_unwind(AssertUnwindSafe(|| {
            store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert_batch(&reports)
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("storing the batch panicked")));
        match stored {
            Ok(each) => {
                let (mut m, now) = (lock(), now_ns());
                m.stored_batch();
                for (report, stored) in reports.iter().zip(&each) {
                    if matches!(stored, Ok(Stored::New)) {
                        m.count(report, now);
                    }
                }
                drop(m);
                for (answer, stored) in answers.into_iter().zip(each) {
                    let _ = answer.send(stored);
                }
            }
            Err(e) => {
                // Nothing of the batch was stored: every report's answer is the reason.
                let reason = format!("{e:#}");
                tracing::warn!(error = %reason, reports = reports.len(), "a batch of reports could not be stored");
                for answer in answers {
                    let _ = answer.send(Err(anyhow::anyhow!("{reason}")));
                }
            }
        }
    }
}
