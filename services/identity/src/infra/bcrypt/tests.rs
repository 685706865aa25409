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

/// Occupies the pool's only thread with a job that holds it until `release`
/// sends, and waits until it is taken; `busy` is that job (true once let go).
async fn occupy_the_thread(
    hasher: &Arc<Hasher>,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<bool, HashError>>,
) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let busy = {
        let hasher = Arc::clone(hasher);
        tokio::spawn(async move { hasher.run(None, move || wait.recv().is_ok()).await })
    };
    while hasher.queued() == 0 {
        tokio::task::yield_now().await;
    }
    (release, busy)
}

#[tokio::test]
async fn a_job_that_cannot_finish_before_its_deadline_is_refused_at_once() {
    use std::sync::atomic::AtomicBool;
    let hasher = Arc::new(Hasher::start(4, 1, 8).unwrap());
    // Every job is taken to last 200 ms from now on.
    hasher.job_nanos.store(200_000_000, Ordering::Relaxed);
    let (release, busy) = occupy_the_thread(&hasher).await;
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
    let (release, busy) = occupy_the_thread(&hasher).await;
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
