//! The clock control law: how the combined offset from selection becomes
//! steps and frequency corrections of the local clock.
//!
//! The approach is chrony's, not ntpd's PLL: every correction the
//! discipline has applied (steps, and the integral of the frequency it set)
//! is added back to each measured offset, which gives the offset the clock
//! would have had if it had been left alone. That "natural" offset drifts in
//! a straight line whose slope is the clock's frequency error, so a least
//! squares fit over the recent updates estimates both the frequency error
//! and the present offset, with the noise of single samples averaged out.
//! The clock is then run at the estimated frequency plus a term that slews
//! the remaining offset away over about two update intervals. The fit
//! survives steps and frequency changes unchanged, because the accounting
//! keeps the natural offsets continuous.

use std::collections::VecDeque;

use super::clock::{ClockCommand, MAX_FREQUENCY};
use super::packet::UnixNanos;
use super::source::{MAX_POLL, MIN_POLL};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisciplineSettings {
    /// Step instead of slewing when the offset is larger than this
    /// (seconds), during the first `step_updates` updates.
    pub makestep: f64,
    pub step_updates: u32,
    /// Observe mode: estimate, never steer.
    pub observe: bool,
}

impl Default for DisciplineSettings {
    fn default() -> Self {
        DisciplineSettings {
            makestep: 0.128,
            step_updates: 3,
            observe: false,
        }
    }
}

/// Updates kept for the fit.
const WINDOW: usize = 16;
/// The frequency is fitted only over at least this span (seconds): the
/// 2-second burst samples alone would give a noisy slope.
const MIN_FIT_SPAN: f64 = 60.0;
/// ... unless the burst's samples already pin the slope down this well.
const MAX_EARLY_SLOPE_ERROR: f64 = 3e-6;
/// Consecutive calm updates before the poll interval doubles.
const CALM_UPDATES: u32 = 8;
/// Commands remembered for [`Discipline::project`]: more than the age of
/// the oldest sample a source's filter can hold.
const HISTORY: usize = 64;

#[derive(Clone, Debug)]
pub struct Discipline {
    settings: DisciplineSettings,
    updates: u32,
    /// Frequency compensation (s/s): what the clock must run faster by to
    /// keep time. The negative of its natural frequency error.
    frequency: f64,
    /// (local seconds since `epoch`, natural offset)
    window: VecDeque<(f64, f64)>,
    epoch: Option<UnixNanos>,
    /// Everything the discipline has moved the clock forward, seconds.
    correction: f64,
    /// The frequency set by the last command.
    commanded: f64,
    last: Option<UnixNanos>,
    /// Recent commands: (time, correction then, frequency from then on,
    /// frame then, rate of the frame from then on).
    history: VecDeque<(UnixNanos, f64, f64, f64, f64)>,
    /// The present offset as last estimated, seconds.
    offset: f64,
    poll: i8,
    calm: u32,
}

impl Discipline {
    /// `frequency` is the compensation remembered from the drift file.
    pub fn new(settings: DisciplineSettings, frequency: f64) -> Discipline {
        let frequency = frequency.clamp(-MAX_FREQUENCY, MAX_FREQUENCY);
        Discipline {
            settings,
            updates: 0,
            frequency,
            window: VecDeque::with_capacity(WINDOW),
            epoch: None,
            correction: 0.0,
            commanded: if settings.observe { 0.0 } else { frequency },
            last: None,
            history: VecDeque::with_capacity(HISTORY),
            offset: 0.0,
            poll: MIN_POLL,
            calm: 0,
        }
    }

    /// The estimated frequency compensation, s/s (in observe mode: the
    /// frequency error of the clock as measured, negated).
    pub fn frequency(&self) -> f64 {
        self.frequency
    }

    /// The present offset estimate, seconds.
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// The poll exponent the sources should use.
    pub fn poll(&self) -> i8 {
        self.poll
    }

    pub fn updates(&self) -> u32 {
        self.updates
    }

    /// Integrate the correction applied since the last command.
    fn advance(&mut self, now: UnixNanos) {
        self.correction = self.correction_at(now);
        self.last = Some(now);
    }

    /// Remember the command just decided (after `advance`).
    fn record(&mut self, now: UnixNanos) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        let frame = self.frame_at(now);
        self.history.push_back((
            now,
            self.correction,
            self.commanded,
            frame,
            self.commanded - self.frequency,
        ));
    }

    fn entry_at(&self, t: UnixNanos) -> Option<&(UnixNanos, f64, f64, f64, f64)> {
        self.history
            .iter()
            .rev()
            .find(|h| h.0 <= t)
            .or(self.history.front())
    }

    /// How far the discipline had moved the clock by local time `t`.
    fn correction_at(&self, t: UnixNanos) -> f64 {
        self.entry_at(t).map_or(0.0, |&(at, c, rate, _, _)| {
            c + rate * t.seconds_since(at).max(0.0)
        })
    }

    /// The frame of reference for offsets measured at local time `t`: the
    /// phase corrections applied by then (steps and slews, but not the
    /// frequency compensation), less the estimated drift when nothing is
    /// compensated (observe mode). An offset plus the frame of its time is
    /// comparable with any other offset plus its frame, whatever the
    /// discipline did in between: sources keep samples for several polls,
    /// and their spike and jitter tests and the selection compare them.
    pub fn frame_at(&self, t: UnixNanos) -> f64 {
        self.entry_at(t).map_or(0.0, |&(at, _, _, frame, rate)| {
            frame + rate * t.seconds_since(at).max(0.0)
        })
    }

    /// A new combined offset (reference minus local, seconds) measured at
    /// local time `now`.
    pub fn update(&mut self, now: UnixNanos, offset: f64) -> ClockCommand {
        self.advance(now);
        self.updates += 1;
        let epoch = *self.epoch.get_or_insert(now);
        let t = now.seconds_since(epoch);
        let natural = offset + self.correction;

        if !self.settings.observe
            && self.updates <= self.settings.step_updates
            && offset.abs() > self.settings.makestep
        {
            self.window.push_back((t, natural));
            let frame = self.frame_at(now) + offset;
            self.correction += offset;
            self.offset = 0.0;
            self.commanded = self.frequency;
            self.record(now);
            if let Some(last) = self.history.back_mut() {
                last.3 = frame;
            }
            return ClockCommand {
                step: Some(offset),
                frequency: self.commanded,
            };
        }

        self.window.push_back((t, natural));
        let max_age = WINDOW as f64 * f64::from(1u32 << self.poll);
        while self.window.len() > WINDOW
            || self.window.front().is_some_and(|&(t0, _)| t - t0 > max_age)
        {
            self.window.pop_front();
        }
        let span = t - self.window[0].0;
        let fitted = fit(&self.window);
        let estimate = match &fitted {
            // Trust the slope over a long enough span, or over a short one
            // (the first burst) when it is already known to a few ppm.
            Some(f) if span >= MIN_FIT_SPAN || f.slope_error < MAX_EARLY_SLOPE_ERROR => {
                self.frequency = f.slope.clamp(-MAX_FREQUENCY, MAX_FREQUENCY);
                f.intercept + f.slope * t
            }
            _ => natural,
        };
        self.offset = estimate - self.correction;
        self.adapt_poll(offset, fitted.as_ref().filter(|_| span >= MIN_FIT_SPAN));
        if self.settings.observe {
            self.record(now);
            return ClockCommand {
                step: None,
                frequency: 0.0,
            };
        }
        let slew_time = (2.0 * f64::from(1u32 << self.poll)).max(16.0);
        self.commanded =
            (self.frequency + self.offset / slew_time).clamp(-MAX_FREQUENCY, MAX_FREQUENCY);
        self.record(now);
        ClockCommand {
            step: None,
            frequency: self.commanded,
        }
    }

    /// No usable sources: keep the clock at its estimated frequency and
    /// stop slewing (holdover).
    pub fn holdover(&mut self, now: UnixNanos) -> ClockCommand {
        self.advance(now);
        if !self.settings.observe {
            self.commanded = self.frequency;
        }
        self.record(now);
        self.poll = MIN_POLL;
        self.calm = 0;
        ClockCommand {
            step: None,
            frequency: self.commanded,
        }
    }

    /// Poll less often once the frequency is known well enough that the
    /// clock cannot drift by more than the measurement noise over the
    /// longer interval, and more often again when measured offsets leave
    /// the noise band (something changed: temperature, a route, a step).
    fn adapt_poll(&mut self, offset: f64, fitted: Option<&Fit>) {
        let Some(f) = fitted else {
            self.calm = 0;
            return;
        };
        let noise = f.residual_rms.max(1e-6);
        if offset.abs() > 6.0 * noise {
            self.calm = 0;
            if self.poll > MIN_POLL {
                self.poll -= 1;
            }
            return;
        }
        let longer = f64::from(1u32 << (self.poll + 1).min(MAX_POLL));
        if offset.abs() < 3.0 * noise && f.slope_error * longer < noise {
            self.calm += 1;
            if self.calm >= CALM_UPDATES && self.poll < MAX_POLL {
                self.poll += 1;
                self.calm = 0;
            }
        } else {
            self.calm = 0;
        }
    }
}

struct Fit {
    /// At t = 0.
    intercept: f64,
    slope: f64,
    /// Standard error of the slope.
    slope_error: f64,
    /// RMS of the residuals: the noise of the measurements.
    residual_rms: f64,
}

/// Least squares line through the points.
fn fit(points: &VecDeque<(f64, f64)>) -> Option<Fit> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let stt: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    if stt <= 0.0 {
        return None;
    }
    let sty: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_y)).sum();
    let slope = sty / stt;
    let intercept = mean_y - slope * mean_t;
    let residuals: f64 = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum();
    Some(Fit {
        intercept,
        slope,
        slope_error: (residuals / (n - 2.0) / stt).sqrt(),
        residual_rms: (residuals / n).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn at(secs: f64) -> UnixNanos {
        UnixNanos(1_800_000_000 * SEC + (secs * 1e9) as i64)
    }

    /// A clock 0.3 s behind with a 50 ppm slow crystal, disciplined
    /// noiselessly: it is stepped, then the frequency is found.
    #[test]
    fn steps_then_learns_the_frequency() {
        let mut d = Discipline::new(DisciplineSettings::default(), 0.0);
        let natural_error = -50e-6; // the clock loses 50 us per second
        let mut clock_offset = -0.3; // local minus true
        let mut applied = 0.0;
        let mut t = 0.0;
        let mut first = true;
        for _ in 0..200 {
            let cmd = d.update(at(t), -clock_offset);
            if let Some(step) = cmd.step {
                assert!(first, "only the first update steps");
                clock_offset += step;
            }
            first = false;
            applied = cmd.frequency;
            let dt = 64.0;
            clock_offset += (natural_error + applied) * dt;
            t += dt;
        }
        assert!((applied - 50e-6).abs() < 1e-8, "frequency {applied}");
        assert!(
            (d.frequency() - 50e-6).abs() < 1e-9,
            "estimate {}",
            d.frequency()
        );
        assert!(clock_offset.abs() < 1e-6, "offset {clock_offset}");
        assert!(d.poll() > MIN_POLL, "calm updates lengthen the poll");
    }

    #[test]
    fn no_step_after_the_first_updates_or_in_observe_mode() {
        let mut d = Discipline::new(DisciplineSettings::default(), 0.0);
        for i in 0..3 {
            d.update(at(f64::from(i) * 2.0), 0.0);
        }
        assert_eq!(d.update(at(10.0), 0.5).step, None);
        let mut observe = Discipline::new(
            DisciplineSettings {
                observe: true,
                ..DisciplineSettings::default()
            },
            0.0,
        );
        let cmd = observe.update(at(0.0), 0.5);
        assert_eq!(
            cmd,
            ClockCommand {
                step: None,
                frequency: 0.0
            }
        );
        // Observe mode still measures: a clock drifting 20 ppm fast.
        for i in 1..20 {
            observe.update(at(f64::from(i) * 64.0), 0.5 - 20e-6 * f64::from(i) * 64.0);
        }
        assert!(
            (observe.frequency() + 20e-6).abs() < 1e-9,
            "{}",
            observe.frequency()
        );
        assert!((observe.offset() - (0.5 - 20e-6 * 19.0 * 64.0)).abs() < 1e-6);
    }

    #[test]
    fn frequency_is_bounded_on_both_sides_and_holdover_stops_slewing() {
        let never_step = DisciplineSettings {
            makestep: f64::INFINITY,
            ..DisciplineSettings::default()
        };
        for sign in [1.0, -1.0] {
            // A drift file beyond what the kernel takes.
            let d = Discipline::new(never_step, sign * 1.0);
            assert_eq!(d.frequency(), sign * MAX_FREQUENCY);
            // A clock 2000 ppm off, four times what the kernel can
            // correct, disciplined with the commands the discipline gives.
            let mut d = Discipline::new(never_step, 0.0);
            let (mut applied, mut commanded, mut last) = (0.0, 0.0, 0.0);
            for k in 0..40 {
                let t = 16.0 * f64::from(k);
                applied += commanded * (t - last);
                last = t;
                let cmd = d.update(at(t), sign * 2000e-6 * t - applied);
                assert!(cmd.frequency.abs() <= MAX_FREQUENCY, "{cmd:?}");
                assert!(d.frequency().abs() <= MAX_FREQUENCY);
                commanded = cmd.frequency;
            }
            assert_eq!(commanded, sign * MAX_FREQUENCY, "the bound is reached");
            assert_eq!(d.frequency(), sign * MAX_FREQUENCY);
            let hold = d.holdover(at(1000.0));
            assert_eq!(hold.frequency, d.frequency());
            assert_eq!(d.poll(), MIN_POLL);
        }
    }
}
