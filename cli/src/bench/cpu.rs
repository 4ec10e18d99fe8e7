//! The process's CPU time, for the bench's CPU per call: the client's own cost of a call
//! (its statements, the driver, the system calls), which a round trip's wait does not
//! blur the way it blurs latency on a machine whose idle processors wake slowly.

use std::fs;

/// What the scheduler has counted for this process so far, summed over its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cpu {
    /// Nanoseconds on a CPU.
    pub(crate) nanos: u64,
    /// Times a thread was put on a CPU: each wake-up of a sleeping thread counts one.
    pub(crate) runs: u64,
}

/// The first and third fields of each `/proc/self/task/*/schedstat` (the scheduler's own
/// account: time on a CPU to the nanosecond, and time slices run), summed. `None` where
/// that file does not exist (not Linux, or a kernel without it); a thread that exits
/// between two readings takes its count with it, so a figure is only meant for a stretch
/// of calls on threads that live on (the runtime's workers).
pub(crate) fn process_cpu() -> Option<Cpu> {
    let mut total = Cpu { nanos: 0, runs: 0 };
    for task in fs::read_dir("/proc/self/task").ok()? {
        let mut path = task.ok()?.path();
        path.push("schedstat");
        let Ok(text) = fs::read_to_string(&path) else {
            // The thread ended between the listing and the read.
            continue;
        };
        let mut fields = text.split_whitespace();
        total.nanos += fields.next()?.parse::<u64>().ok()?;
        total.runs += fields.nth(1)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The scheduler's count over a stretch of calls (`None` when it can not be read).
pub(crate) struct CpuClock(Option<Cpu>);

impl CpuClock {
    pub(crate) fn start() -> Self {
        CpuClock(process_cpu())
    }

    pub(crate) fn elapsed(&self) -> Option<Cpu> {
        let (now, then) = (process_cpu()?, self.0?);
        Some(Cpu {
            nanos: now.nanos.saturating_sub(then.nanos),
            runs: now.runs.saturating_sub(then.runs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn counts_the_time_a_thread_spends_computing() {
        let clock = CpuClock::start();
        let began = std::time::Instant::now();
        let mut x = 0u64;
        while began.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = clock.elapsed().expect("schedstat is readable on Linux");
        assert!(
            spent.nanos >= 20_000_000,
            "30 ms of work counted as {spent:?}"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn counts_each_wake_up_of_a_sleeping_thread() {
        let clock = CpuClock::start();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let spent = clock.elapsed().expect("schedstat is readable on Linux");
        assert!(spent.runs >= 20, "20 sleeps counted as {spent:?}");
    }
}
