//! The system clock: CLOCK_REALTIME read through the vDSO and steered with
//! clock_adjtime, behind the core's [`Clock`] and [`ClockControl`]
//! interface (`ntp::clock`), and the measurement of its precision.

use std::io;

use crate::ntp::clock::{Clock, ClockControl, MAX_FREQUENCY};
use crate::ntp::packet::UnixNanos;

/// The kernel's clock, CLOCK_REALTIME.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixNanos {
        realtime()
    }
}

fn adjtime(tx: &mut libc::timex) -> io::Result<libc::c_int> {
    // SAFETY: `tx` is a valid timex for the call.
    let ret = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, tx) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("clock_adjtime: {e}")));
    }
    Ok(ret)
}

fn empty_timex() -> libc::timex {
    // SAFETY: timex is plain data; all-zero means "change nothing".
    unsafe { std::mem::zeroed() }
}

impl ClockControl for SystemClock {
    fn step(&mut self, offset: f64) -> io::Result<()> {
        let nanos = (offset * 1e9).round() as i64;
        let mut tx = empty_timex();
        tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
        // With ADJ_NANO the "microseconds" field carries nanoseconds, and
        // it must be in [0, 1e9).
        tx.time.tv_sec = nanos.div_euclid(1_000_000_000) as _;
        tx.time.tv_usec = nanos.rem_euclid(1_000_000_000) as _;
        adjtime(&mut tx).map(|_| ())
    }

    fn set_frequency(&mut self, frequency: f64) -> io::Result<()> {
        let mut tx = empty_timex();
        tx.modes = libc::ADJ_FREQUENCY;
        // timex.freq is in ppm with a 16-bit binary fraction.
        tx.freq = (frequency.clamp(-MAX_FREQUENCY, MAX_FREQUENCY) * 1e6 * 65536.0).round() as _;
        adjtime(&mut tx).map(|_| ())
    }

    fn set_sync_status(
        &mut self,
        synchronised: bool,
        max_error: f64,
        est_error: f64,
    ) -> io::Result<()> {
        let mut read = empty_timex();
        adjtime(&mut read)?;
        let mut tx = empty_timex();
        tx.modes = libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
        tx.status = if synchronised {
            read.status & !libc::STA_UNSYNC
        } else {
            read.status | libc::STA_UNSYNC
        };
        // Microseconds; the kernel caps maxerror at 16 s.
        tx.maxerror = (max_error * 1e6).clamp(0.0, 16e6) as _;
        tx.esterror = (est_error * 1e6).clamp(0.0, 16e6) as _;
        adjtime(&mut tx).map(|_| ())
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
