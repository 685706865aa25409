//! Password hashing (bcrypt) on a dedicated, bounded thread pool.
//!
//! bcrypt is deliberately slow: run on the async runtime it would stall
//! every other RPC. The pool has one thread per core and a bounded queue;
//! when the queue is full the call is shed at once (the caller answers
//! RESOURCE_EXHAUSTED) instead of piling up behind a login flood.

use secrecy::{ExposeSecret, SecretString};
use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::oneshot;

/// bcrypt reads at most 72 bytes; longer passwords are refused, never
/// truncated and never pre-hashed (docs/decisions/0002).
pub const MAX_PASSWORD_BYTES: usize = 72;
pub const MIN_PASSWORD_CHARS: usize = 8;

fn too_long() -> String {
    format!(
        "must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt's limit; longer passwords are refused, not truncated)"
    )
}

/// A password presented to be compared with a stored hash (Login, the
/// current one of ChangePassword): required and within bcrypt's limit,
/// nothing more. No stored password is longer, so a longer one is named
/// without running bcrypt.
pub fn check_presented(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("is required".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(too_long());
    }
    Ok(())
}

/// Checks what bcrypt itself needs; the guessability policy comes on top.
pub fn check_length(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(too_long());
    }
    if password.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// The full policy for a new password (NIST SP 800-63B §3.1.1.2, OWASP
/// ASVS 5 V6.2): length as above, no composition rules, and refused when
/// guessable — a zxcvbn score below `min_score` (dictionary words, common
/// passwords, keyboard patterns, the user's own email or name) or containing
/// the email's local part.
pub fn check_new(
    password: &str,
    email: &str,
    display_name: &str,
    min_score: u8,
) -> Result<(), String> {
    check_length(password)?;
    let local = email.split('@').next().unwrap_or_default();
    if local.chars().count() >= 3 && password.to_lowercase().contains(&local.to_lowercase()) {
        return Err("must not contain the name part of your email address".into());
    }
    let inputs: Vec<&str> = [email, local, display_name]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    let score = u8::from(estimate.score());
    if score < min_score {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(format!(
            "is too easy to guess{hint}; use a longer passphrase of unrelated words"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The queue is full: shed the call.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed")]
    Failed,
}

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a bcrypt thread. A condition variable rather than a
/// channel behind a mutex: a thread waiting for work must not hold a lock,
/// or a job could sit behind a thread pinned to a busy core while another
/// bcrypt thread's core is idle. Every waiter is woken; whichever runs
/// first takes the job.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Jobs that may wait beyond the idle threads ready to take them.
    capacity: usize,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    idle: usize,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False when full: the caller sheds.
    fn push(&self, job: Job) -> bool {
        let mut state = self.lock();
        if state.jobs.len() >= self.capacity + state.idle {
            return false;
        }
        state.jobs.push_back(job);
        drop(state);
        self.ready.notify_all();
        true
    }

    /// The next job, or None once the hasher is gone.
    fn take(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle -= 1;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Hashes and verifies passwords off the async runtime.
pub struct Hasher {
    cost: u32,
    jobs: Arc<Queue>,
    queued: Arc<AtomicUsize>,
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
        });
        let threads = threads.max(1);
        for n in 0..threads {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || worker(n, threads, &jobs))
                .map_err(|e| e.to_string())?;
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        let dummy_hash = bcrypt::non_truncating_hash(hex::encode(random), cost)
            .map_err(|e| format!("bcrypt cost {cost}: {e}"))?;
        Ok(Hasher {
            cost,
            jobs,
            queued: Arc::new(AtomicUsize::new(0)),
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

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        use tracing::Instrument as _;
        let span = tracing::info_span!("bcrypt", otel.name = "bcrypt", bcrypt.cost = self.cost);
        self.run_inner(f).instrument(span).await
    }

    async fn run_inner<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let queued = Arc::clone(&self.queued);
        queued.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                // The caller gave up (deadline, disconnect): under load,
                // abandoned work must not keep live logins waiting.
                queued.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            let result = f();
            // Before the answer: once sent, the caller may read the depth
            // (metrics) while this idle-class thread is already preempted.
            queued.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(result);
        });
        if self.jobs.push(job) {
            rx.await.map_err(|_| HashError::Failed)
        } else {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            crate::telemetry::metrics::metrics()
                .bcrypt_shed
                .fetch_add(1, Ordering::Relaxed);
            Err(HashError::Busy)
        }
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        let cost = self.cost;
        self.run(move || bcrypt::non_truncating_hash(password.expose_secret(), cost))
            .await?
            .map_err(|_| HashError::Failed)
    }

    /// Verifies against `hash`, or against the dummy hash when there is no
    /// account, so both paths take the same time. bcrypt's comparison is
    /// constant-time.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let exists = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = self
            .run(move || {
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

/// The bcrypt threads run under `SCHED_IDLE`: they get a core only when no
/// normal thread wants it, and a waking runtime thread preempts them at
/// once. So a login flood delays token validation and every other RPC as
/// little as the machine allows. A niceness of 10 was tried first: it does
/// not preempt on wake-up, and validation p99 under a login flood stayed
/// about 3× the quiet p99. The price: while other work keeps every core
/// busy, logins wait; a caller that gives up (IDENTITY_REQUEST_TIMEOUT,
/// disconnect) takes its job with it, so abandoned work never piles up.
///
/// The load balancer counts `SCHED_IDLE` threads as almost no load, so it
/// may leave two of them on one core while another idles (measured: login
/// throughput fell to 0.66 of the bcrypt ceiling). So when the process is
/// allowed no more cores than it has bcrypt threads (a small VM, a
/// container with a cpuset), each thread is pinned to its own core. On a
/// larger shared node the threads stay free to move to whichever core is
/// idle: pinned there, an idle-class thread could starve behind another
/// workload while other cores sit free.
#[cfg(target_os = "linux")]
pub const BCRYPT_POLICY: i32 = libc::SCHED_IDLE;

fn lower_priority(index: usize, threads: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: `param` and `set` outlive the calls that take their address;
    // `cpu_set_t` is plain bits, valid when zeroed. Thread id 0 names the
    // calling thread, so only this bcrypt thread is affected. Moving oneself
    // to SCHED_IDLE, or to a subset of one's allowed cores, needs no
    // privilege; a failure leaves the thread as it was.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, BCRYPT_POLICY, &param);
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut set) == 0 {
            let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect();
            if allowed.len() > 1 && allowed.len() <= threads {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(allowed[index % allowed.len()], &mut one);
                libc::sched_setaffinity(0, size, &one);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (index, threads);
}

fn worker(index: usize, threads: usize, jobs: &Queue) {
    lower_priority(index, threads);
    while let Some(job) = jobs.take() {
        job();
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

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bcrypt_threads_run_only_when_a_core_is_idle() {
        let hasher = Hasher::start(4, 1, 1).unwrap();
        let stat = hasher
            .run(|| std::fs::read_to_string("/proc/thread-self/stat").unwrap())
            .await
            .unwrap();
        // After the name: state is field 3 of stat, the policy field 41.
        let (_, fields) = stat.rsplit_once(')').unwrap();
        let policy: i32 = fields.split_whitespace().nth(38).unwrap().parse().unwrap();
        assert_eq!(policy, BCRYPT_POLICY);
    }

    #[cfg(target_os = "linux")]
    fn allowed_cpus(status: &str) -> usize {
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim();
        list.split(',')
            .map(|part| match part.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            })
            .sum()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn with_a_thread_per_allowed_core_each_bcrypt_thread_has_its_own_core() {
        let cores = allowed_cpus(&std::fs::read_to_string("/proc/self/status").unwrap());
        let hasher = Hasher::start(4, cores, cores).unwrap();
        let status = hasher
            .run(|| std::fs::read_to_string("/proc/thread-self/status").unwrap())
            .await
            .unwrap();
        assert_eq!(allowed_cpus(&status), 1, "cores here: {cores}");
        // More cores than threads: left to the scheduler.
        if cores > 1 {
            let hasher = Hasher::start(4, 1, 1).unwrap();
            let status = hasher
                .run(|| std::fs::read_to_string("/proc/thread-self/status").unwrap())
                .await
                .unwrap();
            assert_eq!(allowed_cpus(&status), cores);
        }
    }

    #[test]
    fn length_limits_are_characters_below_and_bytes_above() {
        assert!(check_length("short").is_err());
        assert!(check_length("eight ch").is_ok());
        assert!(check_length(&"a".repeat(72)).is_ok());
        let err = check_length(&"a".repeat(73)).unwrap_err();
        assert!(err.contains("72 bytes"), "{err}");
        // 25 three-byte characters: 25 characters but 75 bytes.
        assert!(check_length(&"€".repeat(25)).is_err());
        assert!(check_length("with\0nul byte").is_err());
    }

    #[test]
    fn guessable_passwords_and_the_email_name_are_refused_with_a_reason() {
        assert!(check_new("correct horse battery staple", "ann@example.com", "Ann", 3).is_ok());
        let err = check_new("password123", "ann@example.com", "", 3).unwrap_err();
        assert!(err.contains("too easy to guess"), "{err}");
        assert!(check_new("qwertyuiop", "ann@example.com", "", 3).is_err());
        let err = check_new("annabel-river-quartz-42", "annabel@example.com", "", 3).unwrap_err();
        assert!(err.contains("email"), "{err}");
        // No composition rules: a long lower-case passphrase is fine.
        assert!(check_new("violet meadows under rusty bridges", "x@example.com", "", 3).is_ok());
    }

    #[tokio::test]
    async fn hash_then_verify_and_unknown_account_never_verifies() {
        let hasher = Hasher::start(4, 1, 8).unwrap();
        let hash = hasher
            .hash(SecretString::from("correct horse"))
            .await
            .unwrap();
        assert!(
            hasher
                .verify(SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(SecretString::from("wrong horse!"), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(SecretString::from("correct horse"), None)
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
            tokio::spawn(async move { hasher.run(move || wait.recv().is_ok()).await })
        };
        while hasher.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            hasher.run(move || flag.store(true, Ordering::SeqCst)),
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
        hasher.run(|| ()).await.unwrap();
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(hasher.queued(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        let hasher = Hasher::start(10, 1, 1).unwrap();
        let calls: Vec<_> = (0..6)
            .map(|_| hasher.hash(SecretString::from("password1")))
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
