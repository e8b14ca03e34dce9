//! The clock as the core sees it: the interface the daemon's system clock
//! and the simulator's clock implement, the commands the discipline gives
//! them, and the kernel's limits those commands respect. The core owns this
//! interface; `crate::clock` is one implementation of it (adjtimex).

use std::io;

use super::packet::UnixNanos;

/// The kernel accepts at most 500 ppm of frequency correction.
pub const MAX_FREQUENCY: f64 = 500e-6;

pub trait Clock {
    /// Wall-clock time (CLOCK_REALTIME for the system clock).
    fn now(&self) -> UnixNanos;
}

/// A clock the sync engine may steer. Only the daemon's system clock (with
/// `clock_control` on) and the simulator's clock implement it.
pub trait ClockControl: Clock {
    /// Jump by `offset` seconds (positive: forward).
    fn step(&mut self, offset: f64) -> io::Result<()>;
    /// Run this much faster than nominal (seconds per second; 1e-6 is
    /// 1 ppm), replacing the previous setting.
    fn set_frequency(&mut self, frequency: f64) -> io::Result<()>;
    /// Tell the kernel whether the clock is synchronised and how good it is
    /// (seconds), so that other programs on the router see it as ntpd's
    /// clients do (adjtimex: STA_UNSYNC, maxerror, esterror).
    fn set_sync_status(
        &mut self,
        synchronised: bool,
        max_error: f64,
        est_error: f64,
    ) -> io::Result<()>;
}

/// What to do to the clock now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockCommand {
    /// Jump by this many seconds first.
    pub step: Option<f64>,
    /// Then run this much faster than nominal (s/s) until the next command.
    pub frequency: f64,
}

/// Carry out a command of the discipline: the step first, then the
/// frequency. The daemon does this to the system clock, the simulator to
/// its simulated one.
pub fn apply(clock: &mut dyn ClockControl, command: ClockCommand) -> io::Result<()> {
    if let Some(step) = command.step {
        clock.step(step)?;
    }
    clock.set_frequency(command.frequency)
}
