//! Password hashing (bcrypt) on a dedicated, bounded thread pool.
//!
//! bcrypt is deliberately slow: run on the async runtime it would stall
//! every other RPC. The pool has one thread per core and a bounded queue;
//! when the queue is full, or when the queue ahead of a job is too long for
//! it to finish before its caller's deadline, the call is shed at once
//! instead of piling up behind a login flood.

use secrecy::{ExposeSecret, SecretString};
use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The queue is full, or the job could not finish before the caller's
    /// deadline: shed the call.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed")]
    Failed,
}

/// Why the pool could not start (the server refuses to start on it). Apart
/// from [`HashError`], which a call gets and sheds on, and which is `Copy`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Random(getrandom::Error),
    #[error("bcrypt cost {cost}: {reason}")]
    Cost {
        cost: u32,
        reason: bcrypt::BcryptError,
    },
}

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a bcrypt thread. A condition variable rather than a
/// channel behind a mutex: a thread waiting for work must not hold a lock,
/// or a job could sit behind a thread that the scheduler keeps off the CPU
/// while another bcrypt thread is ready. Every waiter is woken; whichever
/// runs first takes the job.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Jobs that may wait beyond the idle threads ready to take them.
    capacity: usize,
    threads: usize,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    idle: usize,
    /// Jobs a thread has taken and not finished.
    running: usize,
    closed: bool,
}

/// How long after the last latency-sensitive call the runtime keeps a core
/// to itself: longer than the gap between calls of any steady caller,
/// short enough that a login burst alone soon has every core again.
const YIELD_WINDOW: Duration = Duration::from_millis(100);
/// How often a thread held back by [`Queue::limit`] looks again.
const GATE_RECHECK: Duration = Duration::from_millis(5);

/// When the last latency-sensitive call (anything but a password hash)
/// arrived, in milliseconds since [`epoch`]; 0 for never.
static LAST_LATENCY_SENSITIVE: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_since_epoch() -> u64 {
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Marks that a call which hashes no password is being served: for the next
/// [`YIELD_WINDOW`] the bcrypt pool leaves one core to the runtime, so that
/// a login flood cannot push token validation behind bcrypt on every core.
/// A bound on the queue's concurrency, not a lower priority: logins still
/// run on the other cores at normal scheduling.
pub fn latency_sensitive_call() {
    let now = millis_since_epoch();
    // One store per millisecond at most: the cache line is shared by every
    // runtime thread.
    if LAST_LATENCY_SENSITIVE.load(Ordering::Relaxed) != now {
        LAST_LATENCY_SENSITIVE.store(now, Ordering::Relaxed);
    }
}

fn latency_sensitive_recently() -> bool {
    let last = LAST_LATENCY_SENSITIVE.load(Ordering::Relaxed);
    last != 0 && millis_since_epoch().saturating_sub(last) < nanos(YIELD_WINDOW) / 1_000_000
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False when full, or when `admit` refuses given the jobs queued
    /// ahead: the caller sheds.
    fn push(&self, job: Job, admit: impl FnOnce(usize) -> bool) -> bool {
        let mut state = self.lock();
        if state.jobs.len() >= self.capacity + state.idle || !admit(state.jobs.len()) {
            return false;
        }
        state.jobs.push_back(job);
        drop(state);
        self.ready.notify_all();
        true
    }

    /// How many jobs may run at once now: every thread, but one core fewer
    /// while latency-sensitive calls are being served.
    fn limit(&self) -> usize {
        if latency_sensitive_recently() {
            self.threads.saturating_sub(1).max(1)
        } else {
            self.threads
        }
    }

    /// The next job, or None once the hasher is gone. The caller runs it
    /// and then calls [`Queue::done`].
    fn take(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if !state.jobs.is_empty() {
                if state.running < self.limit() {
                    state.running += 1;
                    return state.jobs.pop_front();
                }
                // Held back for the runtime: look again shortly, since the
                // limit rises with time rather than with a notification.
                state = self
                    .ready
                    .wait_timeout(state, GATE_RECHECK)
                    .map(|(state, _)| state)
                    .unwrap_or_else(|e| e.into_inner().0);
                continue;
            }
            state.idle += 1;
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle -= 1;
        }
    }

    fn done(&self) {
        self.lock().running -= 1;
        self.ready.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Hashes and verifies passwords off the async runtime.
pub struct Hasher {
    cost: u32,
    threads: usize,
    jobs: Arc<Queue>,
    queued: Arc<AtomicUsize>,
    /// Recent wall-clock time of one job, in nanoseconds (moving average):
    /// what a queued job is expected to wait per job ahead of it. Wall
    /// clock on purpose: when other work on the host slows bcrypt down,
    /// admission must see it.
    job_nanos: Arc<AtomicU64>,
    /// Verified when the account does not exist, so that an unknown email
    /// costs the same time as a wrong password.
    dummy_hash: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// Starts `threads` workers with room for `queue` waiting jobs. Blocks
    /// for one hash (the dummy), so call it before serving.
    pub fn start(cost: u32, threads: usize, queue: usize) -> Result<Self, StartError> {
        let jobs = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            capacity: queue,
            threads: threads.max(1),
        });
        let threads = threads.max(1);
        for n in 0..threads {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || worker(&jobs))
                .map_err(StartError::Thread)?;
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(StartError::Random)?;
        let started = Instant::now();
        let dummy_hash = bcrypt::non_truncating_hash(hex::encode(random), cost)
            .map_err(|reason| StartError::Cost { cost, reason })?;
        Ok(Hasher {
            cost,
            threads,
            jobs,
            queued: Arc::new(AtomicUsize::new(0)),
            job_nanos: Arc::new(AtomicU64::new(nanos(started.elapsed()))),
            dummy_hash,
        })
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Jobs waiting or running.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The time a job queued behind `waiting` others is expected to take
    /// until it is done: the jobs ahead of it (waiting, and running on the
    /// threads that are busy) spread over the threads, then its own run.
    /// Called with the job already counted in `queued`.
    fn expected_done(&self, waiting: usize) -> Duration {
        let per_job = Duration::from_nanos(self.job_nanos.load(Ordering::Relaxed));
        let running = self
            .queued
            .load(Ordering::Relaxed)
            .saturating_sub(waiting + 1)
            .min(self.threads);
        // The threads that may run now, which the runtime's share lowers.
        let threads = self.jobs.limit();
        // With a thread free the job starts at once.
        let ahead = (waiting + running + 1).saturating_sub(threads);
        let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
        let threads = u32::try_from(threads).unwrap_or(u32::MAX);
        per_job.saturating_mul(ahead) / threads + per_job
    }

    async fn run<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        use tracing::Instrument as _;
        let span = tracing::info_span!("bcrypt", otel.name = "bcrypt", bcrypt.cost = self.cost);
        self.run_inner(deadline, f).instrument(span).await
    }

    async fn run_inner<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let queued = Arc::clone(&self.queued);
        let job_nanos = Arc::clone(&self.job_nanos);
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                // The caller gave up (deadline, disconnect): under load,
                // abandoned work must not keep live logins waiting.
                queued.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            let started = Instant::now();
            let result = f();
            let took = nanos(started.elapsed());
            // A moving average over about eight jobs: quick to follow a
            // change of load, not thrown by one outlier.
            let _ = job_nanos.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| {
                Some(avg - avg / 8 + took / 8)
            });
            // Before the answer: once sent, the caller may read the depth
            // (metrics) while this thread is already preempted.
            queued.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(result);
        });
        // Counted before the push so that a thread taking the job at once
        // never counts it down below zero; undone below when refused.
        self.queued.fetch_add(1, Ordering::Relaxed);
        let admit = |waiting: usize| {
            deadline.is_none_or(|deadline| Instant::now() + self.expected_done(waiting) <= deadline)
        };
        if self.jobs.push(job, admit) {
            rx.await.map_err(|_| HashError::Failed)
        } else {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            crate::telemetry::metrics::metrics().bcrypt_shed.inc();
            Err(HashError::Busy)
        }
    }

    /// Hashes `password`; refused with `Busy` at once when the queue ahead
    /// could not let it finish before `deadline` (the caller's).
    pub async fn hash(
        &self,
        password: SecretString,
        deadline: Option<Instant>,
    ) -> Result<String, HashError> {
        let cost = self.cost;
        self.run(deadline, move || {
            bcrypt::non_truncating_hash(password.expose_secret(), cost)
        })
        .await?
        .map_err(|_| HashError::Failed)
    }

    /// Verifies against `hash`, or against the dummy hash when there is no
    /// account, so both paths take the same time. bcrypt's comparison is
    /// constant-time. `deadline` as for `hash`.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
        deadline: Option<Instant>,
    ) -> Result<bool, HashError> {
        let exists = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = self
            .run(deadline, move || {
                bcrypt::non_truncating_verify(password.expose_secret(), &hash).unwrap_or(false)
            })
            .await?;
        Ok(ok && exists)
    }

    /// True when `hash` was made with a lower cost than configured now.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        bcrypt::HashParts::from_str(hash).is_ok_and(|parts| parts.get_cost() < self.cost)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The niceness of the bcrypt threads: normal scheduling, a little below
/// the runtime's threads, so that a login flood yields to token validation
/// without starving. `SCHED_IDLE` was used before and starved logins behind
/// any busy process on the host (a compiler, a neighbour's batch job): cost
/// 12 hashes took up to 18 s. At nice 5 a bcrypt thread still gets about a
/// quarter of a core shared with one normal busy thread.
///
/// The threads are not pinned to cores. Pinning is only sound when the
/// process owns its cores exclusively (a dedicated cpuset), which it
/// cannot tell from inside; pinned next to another workload, a thread
/// waits on its busy core while another core idles. The scheduler's load
/// balancer places normal-class threads well, so they stay free to move.
pub const BCRYPT_NICE: i32 = 5;

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call without pointers. Under Linux (NPTL) the
    // niceness is per thread, so only this bcrypt thread becomes nicer,
    // relative to the thread that started it; raising one's own niceness
    // needs no privilege, and a failure leaves the thread as it was.
    unsafe {
        libc::nice(BCRYPT_NICE);
    }
}

fn worker(jobs: &Queue) {
    lower_priority();
    while let Some(job) = jobs.take() {
        job();
        jobs.done();
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.jobs.close();
    }
}

#[cfg(test)]
mod tests;
