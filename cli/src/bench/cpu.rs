//! The process's CPU time, for the bench's CPU per call: what a side's phase cost the client
//! (its statements, the driver, the system calls, and the bench's own check of each answer,
//! the same on both sides), which a round trip's wait does not blur the way it blurs
//! latency on a machine whose idle processors wake slowly.

use std::collections::HashMap;
use std::fs;

/// What the scheduler has counted for a thread, or summed for the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cpu {
    /// Nanoseconds on a CPU.
    pub(crate) nanos: u64,
    /// Times a thread was put on a CPU: each wake-up of a sleeping thread, and each return
    /// after being preempted, counts one.
    pub(crate) runs: u64,
}

/// The first and third fields of a `schedstat` file: time on a CPU to the nanosecond, and
/// time slices run. The scheduler adds a running thread's time at each tick and when it
/// stops, so a reading lags a thread that is running by at most one tick.
fn parse(text: &str) -> Option<Cpu> {
    let mut fields = text.split_whitespace();
    let nanos = fields.next()?.parse().ok()?;
    let runs = fields.nth(1)?.parse().ok()?;
    Some(Cpu { nanos, runs })
}

/// Each live thread's count, by thread id: `None` where no `schedstat` can be read (not
/// Linux, or a kernel or sandbox without it).
fn threads() -> Option<HashMap<u64, Cpu>> {
    let mut counts = HashMap::new();
    for task in fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that ended between the listing and the read is skipped.
        if let Some(cpu) = fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .as_deref()
            .and_then(parse)
        {
            counts.insert(tid, cpu);
        }
    }
    // The calling thread's own file is always there when the kernel keeps them.
    (!counts.is_empty()).then_some(counts)
}

/// The scheduler's count over a stretch of calls, for every thread of the process: a
/// thread present at both readings adds what it ran between them, a thread started since
/// adds all it ran, and a thread that ended meanwhile adds nothing (the runtime's workers
/// live on; a blocking-pool thread may end, losing only its share of the stretch).
pub(crate) struct CpuClock(Option<HashMap<u64, Cpu>>);

impl CpuClock {
    pub(crate) fn start() -> Self {
        CpuClock(threads())
    }

    pub(crate) fn elapsed(&self) -> Option<Cpu> {
        let (now, then) = (threads()?, self.0.as_ref()?);
        let mut total = Cpu::default();
        for (tid, cpu) in now {
            let before = then.get(&tid).copied().unwrap_or_default();
            total.nanos += cpu.nanos.saturating_sub(before.nanos);
            total.runs += cpu.runs.saturating_sub(before.runs);
        }
        Some(total)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// This thread's own count, which no other test's thread can move.
    fn this_thread() -> Cpu {
        parse(&fs::read_to_string("/proc/thread-self/schedstat").unwrap()).unwrap()
    }

    #[test]
    fn counts_the_time_a_thread_spends_computing() {
        let clock = CpuClock::start();
        let own = this_thread();
        // Compute until this thread has run 20 ms by its own count (a busy machine may
        // take longer), then the process's clock must show at least that.
        let began = Instant::now();
        let mut x = 0u64;
        while this_thread().nanos - own.nanos < 20_000_000 {
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "no CPU time counted"
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let spent = clock.elapsed().expect("schedstat is readable on Linux");
        assert!(
            spent.nanos >= 20_000_000,
            "20 ms of work counted as {spent:?}"
        );
    }

    #[test]
    fn counts_each_wake_up_of_a_sleeping_thread() {
        let clock = CpuClock::start();
        let own = this_thread();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(this_thread().runs - own.runs >= 20);
        let spent = clock.elapsed().expect("schedstat is readable on Linux");
        assert!(spent.runs >= 20, "20 sleeps counted as {spent:?}");
    }

    #[test]
    fn a_thread_started_meanwhile_adds_all_it_ran() {
        let clock = CpuClock::start();
        let (slept, read) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let child = std::thread::spawn(move || {
            let own = this_thread();
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(1));
            }
            slept.0.send(this_thread().runs - own.runs).unwrap();
            // Alive until the clock was read.
            read.1.recv().unwrap();
        });
        let child_runs = slept.1.recv().unwrap();
        let spent = clock.elapsed().expect("schedstat is readable on Linux");
        read.0.send(()).unwrap();
        child.join().unwrap();
        assert!(child_runs >= 10);
        assert!(
            spent.runs >= 10,
            "a new thread's 10 sleeps counted as {spent:?}"
        );
    }
}
