//! Clocks. Everything that needs the time asks a [`Clock`], so that tests and
//! the simulator can run on simulated time and no test touches the host clock.

use crate::ntp::packet::UnixNanos;

pub trait Clock {
    /// Wall-clock time (CLOCK_REALTIME for the system clock).
    fn now(&self) -> UnixNanos;
}

/// The kernel's clock. Reading it is all this does for now.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixNanos {
        realtime()
    }
}

/// CLOCK_REALTIME through the vDSO (std's SystemTime reads exactly this).
pub fn realtime() -> UnixNanos {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => UnixNanos(d.as_nanos() as i64),
        Err(e) => UnixNanos(-(e.duration().as_nanos() as i64)),
    }
}

/// The clock's precision as NTP's log2 seconds: the larger of its
/// resolution and the cost of reading it (RFC 5905 §7.3), measured as the
/// smallest step seen between successive reads.
pub fn measure_precision(clock: &dyn Clock) -> i8 {
    let mut smallest = i64::MAX;
    let mut last = clock.now();
    let mut steps = 0;
    for _ in 0..100_000 {
        let t = clock.now();
        let step = t.0 - last.0;
        if step > 0 {
            smallest = smallest.min(step);
            steps += 1;
            if steps == 100 {
                break;
            }
        }
        last = t;
    }
    precision_from_step_ns(smallest)
}

fn precision_from_step_ns(step_ns: i64) -> i8 {
    if step_ns == i64::MAX {
        // The clock did not move: call it one second.
        return 0;
    }
    let secs = step_ns as f64 * 1e-9;
    secs.log2().ceil().clamp(-32.0, 0.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_rounds_up() {
        assert_eq!(precision_from_step_ns(1), -29);
        assert_eq!(precision_from_step_ns(20), -25);
        assert_eq!(precision_from_step_ns(1_000_000), -9);
        assert_eq!(precision_from_step_ns(i64::MAX), 0);
    }

    #[test]
    fn system_clock_precision_is_plausible() {
        let p = measure_precision(&SystemClock);
        assert!((-30..=-6).contains(&p), "precision {p}");
    }
}
