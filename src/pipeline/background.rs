//! Work the loop does not wait for runs on threads of their own, at a
//! lower CPU priority ([`Worker`]): segment files ([`SEGMENTS`], in the
//! order their flushes were sealed), detector snapshots ([`SNAPSHOTS`])
//! and SQL detector runs ([`SQL`]).
//!
//! A chain's buffer becomes a flush about every second, and a flush's
//! Parquet encoding (Arrow arrays, dictionary and zstd) is a burst of CPU.
//! On the blocking pool the flushes of all chains ran at once, on both
//! cores, and for about a tenth of a second each second the loop waited
//! for a core: incidents raised then reached the outbox up to 100 ms late
//! (docs/performance.md). On this thread the encoding takes at most one
//! core, leaving the other to the loop and the prepare stage; the loop
//! waits for a chain's flush only when it seals that chain's next one.
//! The thread also runs at a lower CPU priority ([`SEGMENTS`]): when
//! the loop and a flush want the same core, the loop (whose delay is
//! detection latency) gets it first, and the flush, which nothing waits
//! for until the chain's next one is sealed, takes the rest.

use std::panic::AssertUnwindSafe;
use std::sync::{OnceLock, mpsc};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// A thread of its own, started on first use, that runs jobs one at a
/// time in submission order at a lower CPU priority than the process.
pub(super) struct Worker {
    name: &'static str,
    /// How many nice levels below the process the thread runs (Linux).
    nice: i32,
    queue: OnceLock<Option<mpsc::Sender<Job>>>,
}

/// Segment encoding and writing: 5 levels lower weighs about a third of
/// the process's other threads when both want a core.
pub(super) static SEGMENTS: Worker = Worker::new("custos-segments", 5);

/// Detector state snapshots, encoded and written after their flush
/// committed: tens of milliseconds each for a large state, on a thread of
/// their own so that no chain's next flush waits behind one.
pub(super) static SNAPSHOTS: Worker = Worker::new("custos-snapshots", 5);

/// SQL detector runs (DataFusion over the window, every `interval_secs`
/// of event time): seconds of CPU a run at a full window, which nothing
/// waits for but the run's own findings. On the runtime's workers they
/// took a core from the loop for those seconds, and incidents raised
/// then reached the outbox 100–450 ms late (docs/performance.md).
pub(super) static SQL: Worker = Worker::new("custos-sql", 10);

impl Worker {
    const fn new(name: &'static str, nice: i32) -> Self {
        Worker {
            name,
            nice,
            queue: OnceLock::new(),
        }
    }

    fn queue(&'static self) -> Option<&'static mpsc::Sender<Job>> {
        self.queue
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name(self.name.into())
                    .spawn(move || {
                        lower_priority(self.name, self.nice);
                        for job in rx {
                            // A panicking job drops its reply; the thread
                            // serves the next one.
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                        }
                    })
                    .map_err(|e| tracing::warn!(thread = self.name, error = %e, "cannot start the thread; its work uses the blocking pool"))
                    .ok()
                    .map(|_| tx)
            })
            .as_ref()
    }

    /// Runs `work` on this worker's thread, in submission order; the
    /// handle yields `None` if it panicked.
    pub(super) fn spawn<T: Send + 'static>(
        &'static self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<Option<T>> {
        let Some(queue) = self.queue() else {
            return tokio::task::spawn_blocking(move || Some(work()));
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        // The thread never ends while the process runs; if it did, the
        // job comes back here and its reply is dropped with it.
        let _ = queue.send(job);
        tokio::spawn(async move { rx.await.ok() })
    }
}

/// Lowers the calling thread's CPU priority by `levels` below where it
/// stands (so a process started under `nice` keeps its own level for the
/// other threads); a failure is logged and changes nothing else.
fn lower_priority(thread: &str, levels: i32) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let lowered = getpriority_process(me).and_then(|now| setpriority_process(me, now + levels));
        if let Err(e) = lowered {
            tracing::debug!(thread, error = %e, "cannot lower the thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (thread, levels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_in_order_and_a_panic_fails_only_its_own_handle() {
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let order = order.clone();
                SEGMENTS.spawn(move || {
                    order.lock().unwrap().push(i);
                    i * 10
                })
            })
            .collect();
        let boom = SEGMENTS.spawn(|| -> u32 { panic!("a failing flush") });
        let after = SEGMENTS.spawn(|| 7);
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), Some(i * 10));
        }
        assert_eq!(boom.await.unwrap(), None);
        assert_eq!(after.await.unwrap(), Some(7));
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
