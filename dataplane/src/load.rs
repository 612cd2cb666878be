//! How busy a core is: the driver's measurement behind [`crate::overload`].
//!
//! Two figures: the CPU time the core's thread used (user and system — the kernel's UDP
//! send path runs on it) over the wall time, and the share of time its CPU was not idle
//! (from `/proc/stat`), which also counts what shares the CPU with it — softirqs, control
//! on a small machine. The load is the thread's share, or, when the core is the CPU's main
//! user (half of it or more), the larger of the two: a full CPU then means a full core. A
//! core using little of a CPU that something else fills (a browser on a test machine) is
//! not overloaded — the scheduler gives it the time it asks for.

use nix::sys::resource::{getrusage, UsageWho};
use std::time::{Duration, Instant};

/// Measures one core's load between calls.
#[derive(Debug)]
pub struct LoadMeter {
    cpu: usize,
    at: Instant,
    thread_cpu: Duration,
    ticks: Option<(u64, u64)>,
}

impl LoadMeter {
    /// A meter for the core pinned to `cpu`, starting now.
    pub fn new(cpu: usize, now: Instant) -> LoadMeter {
        LoadMeter {
            cpu,
            at: now,
            thread_cpu: thread_cpu_time(),
            ticks: read_cpu_ticks(cpu),
        }
    }

    /// The load (0–1) since the last call (or since `new`).
    pub fn sample(&mut self, now: Instant) -> f64 {
        let wall = now.saturating_duration_since(self.at).as_secs_f64();
        let thread_cpu = thread_cpu_time();
        let used = thread_cpu.saturating_sub(self.thread_cpu).as_secs_f64();
        let ticks = read_cpu_ticks(self.cpu);
        let cpu_busy = match (self.ticks, ticks) {
            (Some(before), Some(after)) => busy_share(before, after),
            _ => 0.0,
        };
        self.at = now;
        self.thread_cpu = thread_cpu;
        self.ticks = ticks;
        if wall <= 0.0 {
            return 0.0;
        }
        combine(used / wall, cpu_busy)
    }
}

/// The load from the thread's share of wall time and its CPU's busy share (0–1).
pub fn combine(thread: f64, cpu_busy: f64) -> f64 {
    let load = if thread >= 0.5 {
        thread.max(cpu_busy)
    } else {
        thread
    };
    load.clamp(0.0, 1.0)
}

/// CPU time (user + system) the calling thread has used.
fn thread_cpu_time() -> Duration {
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let time = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            time(u.user_time()) + time(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// (busy, total) clock ticks of one CPU so far.
fn read_cpu_ticks(cpu: usize) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    cpu_ticks(&stat, cpu)
}

/// (busy, total) clock ticks of CPU `cpu` in the text of `/proc/stat`: idle and iowait are
/// idle, everything else (user, nice, system, irq, softirq, steal) is busy.
pub fn cpu_ticks(stat: &str, cpu: usize) -> Option<(u64, u64)> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// The busy share between two readings of [`cpu_ticks`].
pub fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    after.0.saturating_sub(before.0) as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  200 0 100 5000 10 0 5 0 0 0\n\
                        cpu0 100 0 50 2500 5 0 2 0 0 0\n\
                        cpu1 100 0 50 2500 5 0 3 7 0 0\n\
                        intr 123\n";

    #[test]
    fn reads_one_cpus_ticks() {
        // cpu1: user 100 + system 50 + softirq 3 + steal 7 busy; idle 2500 + iowait 5.
        assert_eq!(cpu_ticks(STAT, 1), Some((160, 2665)));
        assert_eq!(cpu_ticks(STAT, 0), Some((152, 2657)));
        assert_eq!(cpu_ticks(STAT, 2), None);
        assert_eq!(cpu_ticks("cpu0 x y\n", 0), None);
    }

    #[test]
    fn busy_share_between_readings() {
        assert_eq!(busy_share((100, 1000), (190, 1100)), 0.9);
        assert_eq!(busy_share((100, 1000), (100, 1000)), 0.0);
    }

    #[test]
    fn a_full_cpu_counts_only_when_the_core_is_its_main_user() {
        // Saturated: the core holds most of the CPU, softirqs and control the rest.
        assert_eq!(combine(0.88, 1.0), 1.0);
        // A browser fills the CPU; the core uses 5 % of it and gets what it asks for.
        assert_eq!(combine(0.05, 1.0), 0.05);
        assert_eq!(combine(0.6, 0.7), 0.7);
        assert_eq!(combine(1.2, 0.3), 1.0);
    }

    #[test]
    fn a_busy_thread_reads_as_load() {
        let t0 = Instant::now();
        let mut m = LoadMeter::new(0, t0);
        // Use 30 ms of this thread's CPU time, however long that takes on a busy machine,
        // and report it as 30 ms of wall time: the thread was busy all of it.
        let start = thread_cpu_time();
        while thread_cpu_time().saturating_sub(start) < Duration::from_millis(30) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let load = m.sample(t0 + Duration::from_millis(30));
        assert!(load > 0.9, "{load}");
    }
}
