//! Parallel loops over numbered tasks that share the machine gracefully.
//!
//! [`for_each`] runs `f(0)`, …, `f(n − 1)` on the caller and the current rayon pool's threads (a
//! persistent pool: nothing is started per call). Tasks are claimed one at a time from an atomic
//! counter, so a thread that runs slowly — because another process has its core — simply claims fewer.
//! The caller returns as soon as every task is done: a helper still queued behind another process
//! when the work runs out claims nothing and never delays it. Waits yield the CPU instead of spinning.
//!
//! One delay remains: a helper descheduled *in the middle of* a task holds that task until the
//! operating system runs it again, which can take milliseconds — longer than a whole decode step's
//! matrix product. So each call measures how long the caller waited with nothing left to claim, and
//! when that wait is long — absolutely, against the caller's own tasks (a helper finishing its last
//! task keeps the caller waiting up to one task's time) and against the call's — in
//! [`LATE_TO_GO_SOLO`] of the last [`HISTORY`] calls, the following [`SOLO_CALLS`] calls run on the
//! caller alone before helpers are tried again. (A single late call does not count: in a server, the
//! network threads and a client on the same machine preempt a helper now and then, and going solo on
//! each such call cost `ferrite serve` on two cores 40% of its throughput under load.) With a busy
//! neighbour on one of two cores, decoding then runs at least at its one-thread speed instead of
//! collapsing; without one, waits stay at a task's length and every call uses every thread.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Calls run on the caller alone after a long wait for a helper; doubled (up to [`MAX_SOLO_CALLS`])
/// when helpers are late again soon after the last solo spell, so a lasting neighbour costs few probes.
pub const SOLO_CALLS: u32 = 512;
const MAX_SOLO_CALLS: u32 = 16 * SOLO_CALLS;
/// A wait for helpers at least this long (and twice a task, and a quarter of the call) makes a call
/// late.
const LONG_WAIT: Duration = Duration::from_micros(250);
/// Late calls among the last [`HISTORY`] that send the next calls solo. One late call is not enough:
/// a helper preempted once in a while (a server's network threads, a client on the same machine)
/// costs one wait, while going solo costs the helper's core for hundreds of calls.
const LATE_TO_GO_SOLO: u32 = 8;
const HISTORY: u32 = 16;

static SOLO_LEFT: AtomicU32 = AtomicU32::new(0);
static SOLO_LENGTH: AtomicU32 = AtomicU32::new(SOLO_CALLS);
static PARALLEL_SINCE_SPELL: AtomicU32 = AtomicU32::new(0);
static SOLO_SPELLS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    /// This caller's last [`HISTORY`] parallel calls, a bit each (set: late), the newest in bit 0.
    static LATE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// How many times helpers were found late and the loops went solo (for benchmarks and tests).
pub fn solo_spells() -> usize {
    SOLO_SPELLS.load(Ordering::Relaxed)
}

/// One call's tasks, shared with the helpers that outlive it (they hold an `Arc`, and reach `f`
/// only after claiming a task below `n`, which the caller waits for).
struct Shared {
    next: AtomicUsize,
    done: AtomicUsize,
    n: usize,
    panicked: AtomicBool,
    /// The caller's closure with its lifetime erased; valid while `done < n` (see above).
    f: *const (dyn Fn(usize) + Sync + 'static),
}

// SAFETY: `f` points to a `Sync` closure, called only while the caller keeps it alive; the rest is atomics.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Claims and runs tasks until none are left; returns how many it ran.
    fn work(&self) -> usize {
        let mut ran = 0;
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return ran;
            }
            ran += 1;
            // SAFETY: task i < n is not done yet, so the caller is still waiting and `f` is alive.
            let f = unsafe { &*self.f };
            if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            // Release: the task's writes are visible to the caller once it sees the count.
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// Runs `f(i)` for every `i < n`, in parallel on the current rayon pool (see the module docs).
///
/// # Panics
/// If any `f(i)` panics (other tasks may or may not have run by then).
pub fn for_each<F: Fn(usize) + Sync>(n: usize, f: F) {
    let helpers = rayon::current_num_threads().saturating_sub(1).min(n.saturating_sub(1));
    if helpers == 0 || go_solo() {
        (0..n).for_each(f);
        return;
    }
    let f: &(dyn Fn(usize) + Sync) = &f;
    // SAFETY: only the lifetime is erased; `Shared` dereferences it only while this call waits.
    let f: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(f as *const (dyn Fn(usize) + Sync)) };
    let shared = Arc::new(Shared { next: AtomicUsize::new(0), done: AtomicUsize::new(0), n, panicked: AtomicBool::new(false), f });
    for _ in 0..helpers {
        let s = Arc::clone(&shared);
        rayon::spawn(move || _ = s.work());
    }
    let start = Instant::now();
    let mine = shared.work();
    let ran_out = start.elapsed();
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < n {
        if spins < 64 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
    let total = start.elapsed();
    observe(total - ran_out, ran_out / mine.max(1) as u32, total);
    if shared.panicked.load(Ordering::Relaxed) {
        panic!("a parallel task panicked");
    }
}

/// [`for_each`] over `data` in chunks of `chunk` elements (the last may be shorter): `f(i, chunk i)`.
pub fn for_each_chunk_mut<T: Send, F: Fn(usize, &mut [T]) + Sync>(data: &mut [T], chunk: usize, f: F) {
    assert!(chunk > 0, "chunk length 0");
    let len = data.len();
    let base = SendPtr(data.as_mut_ptr());
    let base = &base;
    for_each(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        // SAFETY: chunks are disjoint and inside `data`, which the caller borrows mutably for the call.
        let part = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), chunk.min(len - start)) };
        f(i, part);
    });
}

struct SendPtr<T>(*mut T);
// SAFETY: used only to hand out disjoint chunks of a slice of `Send` elements.
unsafe impl<T: Send> Sync for SendPtr<T> {}

fn go_solo() -> bool {
    let left = SOLO_LEFT.load(Ordering::Relaxed);
    // Racy by design: concurrent callers may take a few extra or fewer solo calls.
    left > 0 && SOLO_LEFT.compare_exchange(left, left - 1, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// `waited`: the caller's wait for helpers after the last task was claimed; `task`: how long the
/// caller's own tasks took on average (a helper busy with its last task keeps it waiting about that
/// long); `total`: the call.
fn observe(waited: Duration, task: Duration, total: Duration) {
    let late = waited >= LONG_WAIT && waited >= 2 * task && waited * 4 >= total;
    let history = LATE.get() << 1 & ((1 << HISTORY) - 1) | late as u32;
    LATE.set(history);
    if late && history.count_ones() >= LATE_TO_GO_SOLO {
        LATE.set(0);
        // Late again within a couple of spells' worth of parallel calls: the neighbour is still there.
        let recent = PARALLEL_SINCE_SPELL.swap(0, Ordering::Relaxed) < 2 * SOLO_CALLS;
        let length = if recent { (SOLO_LENGTH.load(Ordering::Relaxed) * 2).min(MAX_SOLO_CALLS) } else { SOLO_CALLS };
        SOLO_LENGTH.store(length, Ordering::Relaxed);
        SOLO_LEFT.store(length, Ordering::Relaxed);
        SOLO_SPELLS.fetch_add(1, Ordering::Relaxed);
    } else {
        PARALLEL_SINCE_SPELL.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_exactly_once() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for n in [0, 1, 2, 7, 1000] {
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            pool.install(|| for_each(n, |i| _ = hits[i].fetch_add(1, Ordering::Relaxed)));
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n = {n}");
        }
    }

    #[test]
    fn chunks_cover_the_slice_disjointly() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut v = vec![0u64; 1001];
        pool.install(|| for_each_chunk_mut(&mut v, 10, |i, c| c.iter_mut().for_each(|x| *x += i as u64 + 1)));
        assert!(v.iter().enumerate().all(|(j, &x)| x == (j / 10) as u64 + 1));
    }

    #[test]
    fn a_panicking_task_panics_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let r = pool.install(|| catch_unwind(|| for_each(64, |i| assert!(i != 5, "task 5 fails"))));
        assert!(r.is_err());
        // The pool still works.
        let count = AtomicU64::new(0);
        pool.install(|| for_each(64, |_| _ = count.fetch_add(1, Ordering::Relaxed)));
        assert_eq!(count.load(Ordering::Relaxed), 64);
    }

    /// Helpers stuck inside a task (standing in for ones descheduled by a busy neighbour) make the
    /// caller wait. One such call leaves the next calls parallel; [`LATE_TO_GO_SOLO`] of them send the
    /// next calls to the caller alone, without waiting for anyone.
    #[test]
    fn repeated_long_waits_send_the_next_calls_solo() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // One call whose helper takes 30 ms over its task while the caller's takes 5 ms (time for the
        // helper to claim the other task): whether the helper did stall.
        let stall = || {
            let stalled = AtomicBool::new(false);
            let caller = std::thread::current().id();
            for_each(2, |_| {
                if std::thread::current().id() == caller {
                    std::thread::sleep(Duration::from_millis(5));
                } else if !stalled.swap(true, Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(30));
                }
            });
            stalled.load(Ordering::Relaxed)
        };
        // All the calls from one thread of the pool (the history of late calls is the caller's). A call
        // whose helper woke too late to claim a task measures nothing and counts as on time.
        let measured = pool.install(|| {
            let mut stalls = 0;
            for _ in 0..HISTORY {
                stalls += stall() as u32;
                if stalls == 1 {
                    assert_eq!(SOLO_LEFT.load(Ordering::Relaxed), 0, "a single 30 ms wait sent calls solo");
                }
                if stalls == LATE_TO_GO_SOLO {
                    return true;
                }
            }
            false
        });
        if !measured {
            println!("repeated_long_waits_send_the_next_calls_solo: helpers too rarely ran a task, skipped");
            return;
        }
        assert!(SOLO_LEFT.load(Ordering::Relaxed) > 0, "repeated 30 ms waits did not send calls solo");
        let caller_only = AtomicBool::new(true);
        pool.install(|| {
            let me = std::thread::current().id();
            for_each(100, |_| {
                if std::thread::current().id() != me {
                    caller_only.store(false, Ordering::Relaxed);
                }
            })
        });
        assert!(caller_only.load(Ordering::Relaxed), "a solo call ran tasks on a helper");
        SOLO_LEFT.store(0, Ordering::Relaxed);
    }
}
