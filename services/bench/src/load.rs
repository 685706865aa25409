//! The load driver: `concurrency` workers over a set of clients (one HTTP/2
//! connection each), a warm-up whose calls are not recorded, then a fixed
//! measurement window. Closed loop (each worker sends its next call when
//! the last one answers) or open loop at a fixed rate, where latency is
//! measured from the time a call was due, so a stalled server cannot hide
//! its queue (no coordinated omission).

use crate::stats::{Recorder, Summary};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Calls per second in total; `None`: closed loop.
    pub rate: Option<f64>,
}

/// Why one call failed; its text is the label it is counted under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The server answered with this gRPC status.
    #[error("{0:?}")]
    Status(tonic::Code),
    /// The server answered, but not what the call expected.
    #[error("wrong_answer")]
    WrongAnswer,
    /// The call could not be made on this side (its label says why).
    #[error("{0}")]
    Local(&'static str),
}

/// Outcome of one call: an `Err` counts as an error under its label.
pub type Outcome = Result<(), Failure>;

/// Runs `call(client, n)` under `plan`; `n` numbers the calls (distinct
/// across workers) so callers can pick from pools.
pub async fn drive<C, F, Fut>(plan: Plan, clients: &[C], call: F) -> Summary
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    record(plan, clients, call).await.summarize(plan.duration)
}

/// As [`drive`], but the raw samples, so that several windows can be merged.
pub async fn record<C, F, Fut>(plan: Plan, clients: &[C], call: F) -> Recorder
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    assert!(!clients.is_empty() && plan.concurrency > 0);
    let call = Arc::new(call);
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let workers = plan.concurrency;
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        let call = Arc::clone(&call);
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            let mut n = w as u64;
            let mut last_done = start;
            tokio::time::sleep_until(start).await;
            loop {
                let due = match plan.rate {
                    Some(rate) => {
                        let due = start + Duration::from_secs_f64(n as f64 / rate);
                        if due >= end {
                            break;
                        }
                        if last_done > due {
                            // Still busy with the previous call when this one
                            // fell due: the server's delay, counted from `due`.
                            due
                        } else {
                            // On time: count from the actual send, not from
                            // when the (millisecond-grained) timer meant to.
                            tokio::time::sleep_until(due).await;
                            Instant::now()
                        }
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                let outcome = call(client.clone(), n).await;
                let done = Instant::now();
                last_done = done;
                // Open loop: the calls due in the window. Closed loop: the
                // calls that completed in it (so slow calls near the edges
                // are not under-counted).
                let counted = match plan.rate {
                    Some(rate) => start + Duration::from_secs_f64(n as f64 / rate) >= measure_from,
                    None => done >= measure_from && done <= end,
                };
                if counted {
                    match outcome {
                        Ok(()) => rec.ok(done - due),
                        Err(failure) => rec.error(&failure.to_string()),
                    }
                }
                n += workers as u64;
            }
            rec
        }));
    }
    let mut all = Recorder::default();
    for task in tasks {
        // A worker ends only by finishing or by a panic in `call` (a bug of
        // the scenario, never the server's doing): the run is void then,
        // and stopping with that panic is the honest answer.
        #[allow(clippy::expect_used)]
        all.merge(task.await.expect("load worker"));
    }
    all
}

/// The failure of a call the server refused: its gRPC code.
pub fn label(status: &tonic::Status) -> Failure {
    Failure::Status(status.code())
}
