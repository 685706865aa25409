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
    pub fn start(cost: u32, threads: usize, queue: usize) -> Result<Self, String> {
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
                .map_err(|e| e.to_string())?;
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let dummy_hash = bcrypt::non_truncating_hash(hex::encode(random), cost)
            .map_err(|e| format!("bcrypt cost {cost}: {e}"))?;
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
            crate::telemetry::metrics::metrics()
                .bcrypt_shed
                .fetch_add(1, Ordering::Relaxed);
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
mod tests {
    use super::*;

    /// The most jobs that ran at once among `jobs` jobs of 40 ms on a pool of
    /// `threads`, while `busy` keeps marking latency-sensitive calls.
    async fn most_at_once(threads: usize, jobs: usize, busy: bool) -> usize {
        static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = SERIAL.lock().await;
        if !busy {
            // Let an earlier test's marks age out.
            tokio::time::sleep(YIELD_WINDOW * 2).await;
        }
        let hasher = Arc::new(Hasher::start(4, threads, jobs).unwrap());
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let marker = busy.then(|| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    latency_sensitive_call();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let runs = (0..jobs).map(|_| {
            let (hasher, now, most) = (Arc::clone(&hasher), Arc::clone(&now), Arc::clone(&most));
            async move {
                hasher
                    .run(None, move || {
                        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(running, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(40));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap();
            }
        });
        futures_util::future::join_all(runs).await;
        stop.store(true, Ordering::Relaxed);
        if let Some(marker) = marker {
            marker.await.unwrap();
        }
        most.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn while_cheap_calls_are_served_bcrypt_leaves_one_thread_to_them() {
        assert_eq!(most_at_once(3, 9, true).await, 2);
        // Never below one: a one-thread pool still hashes.
        assert_eq!(most_at_once(1, 3, true).await, 1);
    }

    #[tokio::test]
    async fn without_cheap_calls_bcrypt_uses_every_thread() {
        assert_eq!(most_at_once(3, 9, false).await, 3);
    }

    /// Fields of /proc/thread-self/stat after the name: state is field 3,
    /// nice field 19, the policy field 41.
    #[cfg(target_os = "linux")]
    fn stat_field(stat: &str, field: usize) -> i64 {
        let (_, fields) = stat.rsplit_once(')').unwrap();
        fields
            .split_whitespace()
            .nth(field - 3)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bcrypt_threads_are_normal_threads_slightly_nicer_than_the_rest() {
        let hasher = Hasher::start(4, 1, 1).unwrap();
        let stat = hasher
            .run(None, || {
                std::fs::read_to_string("/proc/thread-self/stat").unwrap()
            })
            .await
            .unwrap();
        let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        assert_eq!(stat_field(&stat, 41), i64::from(libc::SCHED_OTHER));
        assert_eq!(
            stat_field(&stat, 19),
            (stat_field(&own, 19) + i64::from(BCRYPT_NICE)).min(19)
        );
    }

    #[cfg(target_os = "linux")]
    fn allowed_cpus(status: &str) -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bcrypt_threads_may_run_on_every_core_the_process_may_use() {
        let own = allowed_cpus(&std::fs::read_to_string("/proc/self/status").unwrap());
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let hasher = Hasher::start(4, threads, threads).unwrap();
        let status = hasher
            .run(None, || {
                std::fs::read_to_string("/proc/thread-self/status").unwrap()
            })
            .await
            .unwrap();
        assert_eq!(allowed_cpus(&status), own);
    }

    #[tokio::test]
    async fn a_job_that_cannot_finish_before_its_deadline_is_refused_at_once() {
        use std::sync::atomic::AtomicBool;
        let hasher = Arc::new(Hasher::start(4, 1, 8).unwrap());
        // Every job is taken to last 200 ms from now on.
        hasher.job_nanos.store(200_000_000, Ordering::Relaxed);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = {
            let hasher = Arc::clone(&hasher);
            tokio::spawn(async move { hasher.run(None, move || wait.recv().is_ok()).await })
        };
        while hasher.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let queued: Vec<_> = (0..3)
            .map(|_| {
                let hasher = Arc::clone(&hasher);
                tokio::spawn(async move { hasher.run(None, || ()).await })
            })
            .collect();
        while hasher.queued() < 4 {
            tokio::task::yield_now().await;
        }
        // Four jobs ahead on one thread, 200 ms each: done in about a
        // second, so a half-second deadline is refused without waiting.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let started = Instant::now();
        let refused = hasher
            .run(Some(started + Duration::from_millis(500)), move || {
                flag.store(true, Ordering::SeqCst);
            })
            .await;
        assert_eq!(refused, Err(HashError::Busy));
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(hasher.queued(), 4, "the refused job left no trace");
        // A deadline the queue can meet is admitted and served.
        let admitted = {
            let hasher = Arc::clone(&hasher);
            tokio::spawn(async move {
                hasher
                    .run(Some(Instant::now() + Duration::from_secs(60)), || 7)
                    .await
            })
        };
        while hasher.queued() < 5 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        assert!(busy.await.unwrap().unwrap());
        for job in queued {
            job.await.unwrap().unwrap();
        }
        assert_eq!(admitted.await.unwrap(), Ok(7));
        assert!(!ran.load(Ordering::SeqCst));
        // With the queue empty, a deadline longer than one job is met.
        hasher.job_nanos.store(200_000_000, Ordering::Relaxed);
        let quiet = hasher
            .hash(
                SecretString::from("password1"),
                Some(Instant::now() + Duration::from_secs(5)),
            )
            .await;
        assert!(quiet.is_ok());
    }

    #[tokio::test]
    async fn hash_then_verify_and_unknown_account_never_verifies() {
        let hasher = Hasher::start(4, 1, 8).unwrap();
        let hash = hasher
            .hash(SecretString::from("correct horse"), None)
            .await
            .unwrap();
        assert!(
            hasher
                .verify(
                    SecretString::from("correct horse"),
                    Some(hash.clone()),
                    None
                )
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(SecretString::from("wrong horse!"), Some(hash), None)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(SecretString::from("correct horse"), None, None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_job_whose_caller_gave_up_is_skipped() {
        use std::sync::atomic::AtomicBool;
        let hasher = Arc::new(Hasher::start(4, 1, 4).unwrap());
        // Occupy the only thread until released.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = {
            let hasher = Arc::clone(&hasher);
            tokio::spawn(async move { hasher.run(None, move || wait.recv().is_ok()).await })
        };
        while hasher.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            hasher.run(None, move || flag.store(true, Ordering::SeqCst)),
        )
        .await;
        assert!(
            abandoned.is_err(),
            "the caller gave up while the job waited"
        );
        release.send(()).unwrap();
        assert!(busy.await.unwrap().unwrap());
        // Jobs run in order: once this one is done, the abandoned one was
        // taken, and skipped.
        hasher.run(None, || ()).await.unwrap();
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(hasher.queued(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        let hasher = Hasher::start(10, 1, 1).unwrap();
        let calls: Vec<_> = (0..6)
            .map(|_| hasher.hash(SecretString::from("password1"), None))
            .collect();
        let results = futures_util::future::join_all(calls).await;
        assert!(results.contains(&Err(HashError::Busy)));
        assert!(results.iter().any(Result::is_ok));
    }

    #[test]
    fn rehash_is_needed_only_below_the_configured_cost() {
        let hasher = Hasher::start(5, 1, 1).unwrap();
        let low = bcrypt::non_truncating_hash("password1", 4).unwrap();
        let same = bcrypt::non_truncating_hash("password1", 5).unwrap();
        assert!(hasher.needs_rehash(&low));
        assert!(!hasher.needs_rehash(&same));
    }
}
