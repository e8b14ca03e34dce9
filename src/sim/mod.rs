//! A deterministic simulator for the sync engine, in the spirit of chrony's
//! clknetsim: a local clock with a frequency error and random-walk wander,
//! network paths with delay, exponential jitter, asymmetry, loss and
//! outages, and upstream servers with their own errors, steps and leap
//! bits. The engine sees real NTP packets and the simulated clock; the
//! simulator knows the true time and so measures how well the engine keeps
//! the clock. Seeded: the same scenario gives the same result, and a
//! simulated day runs in well under a second.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::ntp::clock::{self, Clock, ClockCommand, ClockControl, MAX_FREQUENCY};
use crate::ntp::engine::{EngineSettings, SyncEngine};
use crate::ntp::packet::{self, Header, Leap, NtpTimestamp, RefId, UnixNanos, mode};
use crate::ntp::source::REPLY_TIMEOUT;

/// Simulated time 0 is this Unix time (2027-01-15).
const START_UNIX: f64 = 1_800_000_000.0;

/// xorshift64* with Box-Muller normals: small and reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.uniform().ln()
    }
}

/// The simulated local clock: what the engine steers. It implements the
/// same [`ClockControl`] trait as the system clock.
#[derive(Clone, Debug)]
pub struct SimClock {
    /// True time, simulated seconds.
    now: f64,
    /// Local minus true time, seconds.
    offset: f64,
    /// The crystal's error, s/s; wanders.
    frequency_error: f64,
    /// The frequency correction set by the engine, s/s.
    frequency: f64,
    pub steps: u32,
}

impl SimClock {
    /// Let `dt` seconds of true time pass.
    fn advance(&mut self, dt: f64, wander: f64, rng: &mut Rng) {
        self.offset += (self.frequency_error + self.frequency) * dt;
        self.frequency_error += wander * dt.sqrt() * rng.normal();
        self.now += dt;
    }
}

impl Clock for SimClock {
    fn now(&self) -> UnixNanos {
        UnixNanos(((START_UNIX + self.now + self.offset) * 1e9) as i64)
    }
}

impl ClockControl for SimClock {
    fn step(&mut self, offset: f64) -> std::io::Result<()> {
        self.offset += offset;
        self.steps += 1;
        Ok(())
    }

    fn set_frequency(&mut self, frequency: f64) -> std::io::Result<()> {
        self.frequency = frequency.clamp(-MAX_FREQUENCY, MAX_FREQUENCY);
        Ok(())
    }

    /// The simulator reads the engine's state itself; there is no kernel
    /// to tell.
    fn set_sync_status(
        &mut self,
        _synchronised: bool,
        _max_error: f64,
        _est_error: f64,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// The local clock.
#[derive(Clone, Copy, Debug)]
pub struct ClockModel {
    /// Local minus true time at the start, seconds.
    pub offset: f64,
    /// How much faster than true the crystal runs, s/s.
    pub frequency_error: f64,
    /// Random-walk wander of the frequency: standard deviation of its
    /// change over one second, s/s.
    pub wander: f64,
}

/// One direction of travel is `base/2 * (1 ± asymmetry)` plus exponential jitter.
#[derive(Clone, Debug)]
pub struct PathModel {
    /// Round-trip base delay, seconds.
    pub base_rtt: f64,
    /// Mean of the exponential jitter added in each direction, seconds.
    pub jitter: f64,
    /// -1..1: the share of the base delay the outbound leg has in excess.
    pub asymmetry: f64,
    /// Probability that a request or its reply is lost.
    pub loss: f64,
    /// (start, end) in simulated seconds: nothing gets through.
    pub outages: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct UpstreamModel {
    /// Its clock minus true time, seconds.
    pub offset: f64,
    pub stratum: u8,
    pub leap: Leap,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub path: PathModel,
    /// (time, new offset): the server's clock jumps.
    pub steps: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    /// Simulated seconds.
    pub duration: f64,
    pub clock: ClockModel,
    pub upstreams: Vec<UpstreamModel>,
    pub settings: EngineSettings,
    /// Frequency compensation known at start (the drift file), s/s.
    pub initial_frequency: f64,
    /// Statistics leave out the first this many seconds.
    pub warmup: f64,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// RMS and maximum of |local - true| after the warm-up, seconds.
    pub rms: f64,
    pub max: f64,
    /// First simulated time the engine reported itself synchronised.
    pub time_to_sync: Option<f64>,
    /// Number of clock steps.
    pub steps: u32,
    /// Estimated minus true frequency compensation at the end, s/s.
    pub frequency_error: f64,
    /// Every second for 2 minutes, then every 16 s: (time, local - true,
    /// synchronised, root dispersion).
    pub trace: Vec<(f64, f64, bool, f64)>,
    /// How often each upstream was the system peer at a trace point.
    pub peer_counts: Vec<u32>,
    /// The leap indicator the server announced at the end.
    pub leap: Leap,
}

/// Simulated seconds, totally ordered for the event queue.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Time(f64);

impl Eq for Time {}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Time {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Poll(usize),
    Reply(usize, u64),
    Timeout(usize, u64),
    Sample,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    rng: Rng,
    clock: SimClock,
    engine: SyncEngine,
    queue: BinaryHeap<Reverse<(Time, u64, Event)>>,
    order: u64,
    /// Replies in flight: (request number, upstream, packet)
    in_flight: Vec<(u64, [u8; 48])>,
    request_number: u64,
    /// The number of the latest request to each upstream.
    last_requests: Vec<u64>,
    report: Report,
    squares: f64,
    counted: u32,
}

/// Run a scenario to its end.
pub fn run(scenario: &Scenario) -> Report {
    let names: Vec<String> = (0..scenario.upstreams.len())
        .map(|i| format!("sim{i}"))
        .collect();
    let mut engine = SyncEngine::new(&names, scenario.settings, scenario.initial_frequency);
    for i in 0..names.len() {
        let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1));
        engine.set_address(i, SocketAddr::new(ip, 123));
    }
    let mut sim = Sim {
        scenario,
        rng: Rng::new(scenario.seed),
        clock: SimClock {
            now: 0.0,
            offset: scenario.clock.offset,
            frequency_error: scenario.clock.frequency_error,
            frequency: scenario.initial_frequency,
            steps: 0,
        },
        engine,
        queue: BinaryHeap::new(),
        order: 0,
        in_flight: Vec::new(),
        request_number: 0,
        last_requests: vec![0; names.len()],
        report: Report {
            peer_counts: vec![0; names.len()],
            ..Report::default()
        },
        squares: 0.0,
        counted: 0,
    };
    for i in 0..names.len() {
        // Start the sources a little apart, as a daemon's tasks would.
        sim.schedule(0.1 * i as f64, Event::Poll(i));
    }
    sim.schedule(0.0, Event::Sample);
    sim.run();
    sim.finish()
}

impl Sim<'_> {
    fn schedule(&mut self, at: f64, event: Event) {
        self.order += 1;
        self.queue.push(Reverse((Time(at), self.order, event)));
    }

    fn advance_to(&mut self, t: f64) {
        let dt = t - self.clock.now;
        if dt > 0.0 {
            self.clock
                .advance(dt, self.scenario.clock.wander, &mut self.rng);
        }
    }

    fn apply(&mut self, command: Option<ClockCommand>) {
        if let Some(c) = command {
            clock::apply(&mut self.clock, c).expect("the simulated clock takes every command");
        }
    }

    fn run(&mut self) {
        while let Some(Reverse((Time(t), _, event))) = self.queue.pop() {
            if t > self.scenario.duration {
                break;
            }
            self.advance_to(t);
            match event {
                Event::Poll(i) => self.poll(i),
                Event::Reply(i, n) => {
                    if let Some(k) = self.in_flight.iter().position(|(m, _)| *m == n) {
                        let (_, packet) = self.in_flight.swap_remove(k);
                        let local = self.clock.now();
                        let command = self.engine.reply(i, &packet, local).ok().flatten();
                        self.apply(command);
                    }
                }
                Event::Timeout(i, n) => {
                    if self.last_requests[i] == n {
                        self.engine.timed_out(i);
                    }
                }
                Event::Sample => self.sample(),
            }
        }
    }

    fn poll(&mut self, i: usize) {
        let local = self.clock.now();
        let cookie = self.rng.next_u64();
        let request = self.engine.request(i, local, cookie);
        self.request_number += 1;
        let n = self.request_number;
        self.last_requests[i] = n;
        let interval = self.engine.upstreams[i].source.poll_interval();
        self.schedule(self.clock.now + interval, Event::Poll(i));
        self.schedule(self.clock.now + REPLY_TIMEOUT, Event::Timeout(i, n));

        let up = &self.scenario.upstreams[i];
        let path = &up.path;
        let blocked = |t: f64| path.outages.iter().any(|&(a, b)| t >= a && t < b);
        if blocked(self.clock.now) || self.rng.uniform() < path.loss {
            return;
        }
        let out = path.base_rtt / 2.0 * (1.0 + path.asymmetry) + self.rng.exponential(path.jitter);
        let back = path.base_rtt / 2.0 * (1.0 - path.asymmetry) + self.rng.exponential(path.jitter);
        if self.rng.uniform() < path.loss {
            return;
        }
        let arrive = self.clock.now + out;
        let server_offset = up
            .steps
            .iter()
            .filter(|&&(at, _)| at <= arrive)
            .map(|&(_, o)| o)
            .next_back()
            .unwrap_or(up.offset);
        let server_time = |t: f64| {
            NtpTimestamp::from_unix(UnixNanos(((START_UNIX + t + server_offset) * 1e9) as i64))
        };
        let q = packet::parse(&request).expect("the engine sends valid requests");
        let processing = 20e-6;
        let mut reply = [0u8; 48];
        Header {
            leap: up.leap,
            version: 4,
            mode: mode::SERVER,
            stratum: up.stratum,
            poll: q.poll,
            precision: -20,
            root_delay: packet::short_from_secs(up.root_delay),
            root_dispersion: packet::short_from_secs(up.root_dispersion),
            refid: if up.stratum == 1 {
                RefId::ascii(b"GPS\0")
            } else {
                RefId([10, 0, 0, 1])
            },
            reference: server_time(arrive - 16.0),
            origin: q.transmit,
            receive: server_time(arrive),
            transmit: server_time(arrive + processing),
        }
        .encode(&mut reply);
        let reply_at = arrive + processing + back;
        if !blocked(arrive) && reply_at - self.clock.now < REPLY_TIMEOUT {
            self.in_flight.push((n, reply));
            self.schedule(reply_at, Event::Reply(i, n));
        }
    }

    fn sample(&mut self) {
        // Every second at first (to time the start), then every 16 s.
        let next = if self.clock.now < 120.0 { 1.0 } else { 16.0 };
        let local = self.clock.now();
        let tick = self.engine.tick(local);
        self.apply(tick);
        let state = self.engine.system_state(local);
        let synced = state.leap != Leap::Unsynchronised;
        if synced && self.report.time_to_sync.is_none() {
            self.report.time_to_sync = Some(self.clock.now);
        }
        let error = self.clock.offset;
        self.report.trace.push((
            self.clock.now,
            error,
            synced,
            state.root_dispersion_at(local),
        ));
        if let Some(p) = self.engine.peer() {
            self.report.peer_counts[p] += 1;
        }
        if self.clock.now >= self.scenario.warmup && next == 16.0 {
            self.squares += error * error;
            self.counted += 1;
            self.report.max = self.report.max.max(error.abs());
        }
        self.schedule(self.clock.now + next, Event::Sample);
    }

    fn finish(mut self) -> Report {
        self.report.rms = (self.squares / f64::from(self.counted.max(1))).sqrt();
        // The compensation that would cancel the crystal's error exactly.
        self.report.frequency_error =
            self.engine.discipline().frequency() + self.clock.frequency_error;
        self.report.steps = self.clock.steps;
        self.report.leap = self.engine.system_state(self.clock.now()).leap;
        self.report
    }
}
