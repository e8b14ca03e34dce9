//! The sync engine, sans IO: the upstreams, selection and the discipline
//! together, and the system state the server publishes from them.
//!
//! The daemon (or the simulator) tells it when a request goes out, what came
//! back and when, and applies the clock commands it returns.

use std::net::SocketAddr;

use super::clock::ClockCommand;
use super::discipline::{Discipline, DisciplineSettings};
use super::packet::{Leap, RefId, UnixNanos};
use super::select::{self, Candidate, NoSelection};
use super::server::SystemState;
use super::source::{Reject, Source};
use super::{PHI, STRATUM_UNSYNC};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineSettings {
    /// Agreeing sources needed to steer (and to count as synchronised).
    pub min_sources: usize,
    pub discipline: DisciplineSettings,
    /// Past this root distance (seconds) the server reports itself
    /// unsynchronised: holdover has lasted too long.
    pub max_distance: f64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            min_sources: 3,
            discipline: DisciplineSettings::default(),
            max_distance: 1.0,
        }
    }
}

/// One configured upstream.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// As configured: host name or address, with an optional port.
    pub name: String,
    /// The address in use; `None` until the name resolves.
    pub address: Option<SocketAddr>,
    pub source: Source,
    /// What selection made of it last time.
    pub status: UpstreamStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamStatus {
    /// Not answering (or its name not resolved yet).
    Unreachable,
    /// Answering, but with nothing to use: unsynchronised, too far, or no
    /// sample through the filter yet.
    Unusable,
    /// Usable, but selection found too few agreeing, or no majority.
    Unselected,
    Selected,
    /// A truechimer, combined but not the system peer.
    Candidate,
    /// A truechimer left out of the combination by the clustering.
    Outlier,
    Falseticker,
}

impl UpstreamStatus {
    /// The one name of each status: the log, `ntpgate status`, ubus and LuCI.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamStatus::Unreachable => "unreachable",
            UpstreamStatus::Unusable => "unusable",
            UpstreamStatus::Unselected => "unselected",
            UpstreamStatus::Selected => "selected",
            UpstreamStatus::Candidate => "candidate",
            UpstreamStatus::Outlier => "outlier",
            UpstreamStatus::Falseticker => "falseticker",
        }
    }
}

/// Where the time the server hands out comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// The upstreams (the last update, possibly in holdover).
    Upstreams,
    /// Lab only: the local clock as a reference (`local_stratum`).
    LocalClock,
    /// Nothing: the server says it is unsynchronised.
    None,
}

/// What the server says about its time, and where it comes from: one
/// decision, made by [`SyncEngine::publish`] and kept until the next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Served {
    pub state: SystemState,
    pub source: TimeSource,
}

/// The last time the clock was set from the sources.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reference {
    stratum: u8,
    refid: RefId,
    leap: Leap,
    root_delay: f64,
    root_dispersion: f64,
    time: UnixNanos,
}

#[derive(Clone, Debug)]
pub struct SyncEngine {
    settings: EngineSettings,
    pub upstreams: Vec<Upstream>,
    discipline: Discipline,
    peer: Option<usize>,
    reference: Option<Reference>,
    /// In holdover since the last update.
    holding: bool,
    /// Why the last selection failed, if it did.
    pub last_failure: Option<NoSelection>,
    /// Lab only: serve the local clock at this stratum while the upstreams
    /// give no time.
    local_stratum: Option<u8>,
    /// The kernel refused the last clock command: the clock is not where
    /// the engine believes it is.
    clock_refused: bool,
    served: Served,
}

impl SyncEngine {
    /// `frequency` is the compensation from the drift file (s/s).
    pub fn new(names: &[String], settings: EngineSettings, frequency: f64) -> SyncEngine {
        SyncEngine {
            settings,
            upstreams: names
                .iter()
                .map(|n| Upstream {
                    name: n.clone(),
                    address: None,
                    source: Source::new(),
                    status: UpstreamStatus::Unreachable,
                })
                .collect(),
            discipline: Discipline::new(settings.discipline, frequency),
            peer: None,
            reference: None,
            holding: false,
            last_failure: None,
            local_stratum: None,
            clock_refused: false,
            served: Served {
                state: SystemState::unsynchronised(),
                source: TimeSource::None,
            },
        }
    }

    /// Lab only: the local clock as the reference at `stratum` while the
    /// upstreams give no time (`local_stratum`); `None` turns it off.
    /// Changes nothing else: the sync state stays.
    pub fn set_local_stratum(&mut self, stratum: Option<u8>) {
        self.local_stratum = stratum;
    }

    /// Whether the kernel carried out the last clock command. While it
    /// refuses, the clock is not where the engine believes it is, and the
    /// server must not claim to be synchronised. Returns true when this
    /// changes whether the clock can be steered.
    pub fn clock_command_done(&mut self, done: bool) -> bool {
        if done != self.clock_refused {
            return false;
        }
        self.clock_refused = !done;
        if !done {
            // Start over as at a start, so that once the kernel takes
            // commands again the clock may be stepped to where it should be.
            self.discipline =
                Discipline::new(self.settings.discipline, self.discipline.frequency());
            self.reference = None;
            self.peer = None;
            for u in &mut self.upstreams {
                u.source.clear_filter();
                u.source.rearm_burst();
            }
        }
        true
    }

    /// Decide what the server says from now on (at local time `now`), and
    /// keep it: [`SyncEngine::served`] gives it until the next call.
    pub fn publish(&mut self, now: UnixNanos) -> Served {
        let from_upstreams = self.system_state(now);
        self.served = if from_upstreams.is_synchronised() && !self.clock_refused {
            Served {
                state: from_upstreams,
                source: TimeSource::Upstreams,
            }
        } else if let Some(stratum) = self.local_stratum {
            Served {
                state: SystemState::local(stratum, now),
                source: TimeSource::LocalClock,
            }
        } else {
            Served {
                state: SystemState::unsynchronised(),
                source: TimeSource::None,
            }
        };
        self.served
    }

    /// What the last [`SyncEngine::publish`] decided.
    pub fn served(&self) -> Served {
        self.served
    }

    pub fn discipline(&self) -> &Discipline {
        &self.discipline
    }

    /// (Re)point an upstream at a resolved address; its history goes.
    pub fn set_address(&mut self, index: usize, address: SocketAddr) {
        let up = &mut self.upstreams[index];
        if up.address != Some(address) {
            up.address = Some(address);
            up.source = Source::new();
            up.status = UpstreamStatus::Unreachable;
        }
    }

    /// The request for upstream `index` at local time `now`.
    pub fn request(&mut self, index: usize, now: UnixNanos, cookie: u64) -> [u8; 48] {
        self.upstreams[index].source.request(now, cookie)
    }

    /// A datagram from upstream `index`, received at local time `t4`.
    /// Returns the clock command when the reply led to a clock update.
    pub fn reply(
        &mut self,
        index: usize,
        packet: &[u8],
        t4: UnixNanos,
    ) -> Result<Option<ClockCommand>, Reject> {
        let frame = self.discipline.frame_at(t4);
        let source = &mut self.upstreams[index].source;
        source.reply(packet, t4, frame)?;
        if !source.take_fresh() {
            return Ok(None);
        }
        Ok(self.update(t4))
    }

    pub fn timed_out(&mut self, index: usize) {
        self.upstreams[index].source.timed_out();
    }

    /// Run selection and, if it succeeds, the discipline.
    fn update(&mut self, now: UnixNanos) -> Option<ClockCommand> {
        let usable: Vec<usize> = (0..self.upstreams.len())
            .filter(|&i| {
                let u = &self.upstreams[i];
                u.address.is_some()
                    && u.source.reach() != 0
                    && u.source.stopped().is_none()
                    && u.source.measurement().is_some()
            })
            .collect();
        let candidates: Vec<Candidate> = usable
            .iter()
            .map(|&i| {
                let m = self.upstreams[i]
                    .source
                    .measurement()
                    .expect("filtered above");
                Candidate {
                    offset: m.offset - self.discipline.frame_at(now),
                    root_distance: m.root_distance(now),
                    jitter: m.jitter,
                    stratum: m.stratum,
                    leap: m.leap,
                }
            })
            .collect();
        let previous = self.peer.and_then(|p| usable.iter().position(|&i| i == p));
        let min_sources = self.settings.min_sources.min(self.upstreams.len()).max(1);
        for u in &mut self.upstreams {
            u.status = if u.source.reach() == 0 || u.address.is_none() {
                UpstreamStatus::Unreachable
            } else {
                UpstreamStatus::Unusable
            };
        }
        let selection = match select::select(&candidates, min_sources, previous) {
            Ok(s) => s,
            Err(e) => {
                self.last_failure = Some(e);
                self.peer = None;
                for &i in &usable {
                    self.upstreams[i].status = UpstreamStatus::Unselected;
                }
                return None;
            }
        };
        self.last_failure = None;
        for &k in &selection.truechimers {
            self.upstreams[usable[k]].status = UpstreamStatus::Candidate;
        }
        for &k in &selection.outliers {
            self.upstreams[usable[k]].status = UpstreamStatus::Outlier;
        }
        for &k in &selection.falsetickers {
            self.upstreams[usable[k]].status = UpstreamStatus::Falseticker;
        }
        let peer = usable[selection.peer];
        self.upstreams[peer].status = UpstreamStatus::Selected;
        self.peer = Some(peer);

        let m = *self.upstreams[peer].source.measurement().expect("selected");
        let jitter = (selection.jitter.powi(2) + m.jitter.powi(2)).sqrt();
        let command = self.discipline.update(now, selection.offset);
        self.holding = false;
        if command.step.is_some() {
            // Start the filters afresh after a step (a burst refills them
            // within seconds), as ntpd clears its associations.
            for u in &mut self.upstreams {
                u.source.clear_filter();
                u.source.rearm_burst();
            }
        }
        let poll = self.discipline.poll();
        for u in &mut self.upstreams {
            u.source.set_poll(poll);
        }
        // In observe mode the clock keeps its offset: it is part of the error.
        let uncorrected = if self.settings.discipline.observe {
            self.discipline.offset().abs()
        } else {
            0.0
        };
        let address = self.upstreams[peer].address.expect("usable");
        self.reference = Some(Reference {
            stratum: m.stratum.saturating_add(1).min(STRATUM_UNSYNC),
            refid: RefId::from_ip(address.ip()),
            leap: selection.leap,
            root_delay: m.root_delay + m.delay,
            root_dispersion: m.root_dispersion + m.dispersion + jitter + uncorrected,
            time: now,
        });
        Some(command)
    }

    /// Called now and then (every few seconds): after several poll
    /// intervals without an update, the discipline goes into holdover and
    /// the sources poll at the shortest interval, to find their way back.
    pub fn tick(&mut self, now: UnixNanos) -> Option<ClockCommand> {
        let reference = self.reference?;
        let quiet = now.seconds_since(reference.time);
        if self.holding || quiet <= 4.0 * f64::from(1u32 << self.discipline.poll()) {
            return None;
        }
        self.holding = true;
        let command = self.discipline.holdover(now);
        let poll = self.discipline.poll();
        // Nothing has been selected for four polls: no upstream is the
        // peer any more, whatever the last selection said.
        self.peer = None;
        for u in &mut self.upstreams {
            u.source.set_poll(poll);
            u.status = if u.source.reach() == 0 {
                UpstreamStatus::Unreachable
            } else {
                UpstreamStatus::Unusable
            };
        }
        Some(command)
    }

    /// What the server should say about its time at local time `now`.
    pub fn system_state(&self, now: UnixNanos) -> SystemState {
        let Some(r) = self.reference else {
            return SystemState::unsynchronised();
        };
        let dispersion = r.root_dispersion + PHI * now.seconds_since(r.time).max(0.0);
        if r.root_delay / 2.0 + dispersion > self.settings.max_distance {
            return SystemState::unsynchronised();
        }
        SystemState {
            leap: r.leap,
            stratum: r.stratum,
            refid: r.refid,
            reference_time: Some(r.time),
            root_delay: r.root_delay,
            root_dispersion: r.root_dispersion,
        }
    }

    /// The index of the system peer, if one is selected.
    pub fn peer(&self) -> Option<usize> {
        self.peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::packet::{self, Header, NtpTimestamp, mode};

    const SEC: i64 = 1_000_000_000;

    /// What an upstream answers.
    #[derive(Clone, Copy)]
    struct Answer {
        offset: f64,
        stratum: u8,
        refid: [u8; 4],
        leap: Leap,
    }

    const GOOD: Answer = Answer {
        offset: 0.0,
        stratum: 1,
        refid: *b"GPS\0",
        leap: Leap::None,
    };

    fn engine(upstreams: usize, min_sources: usize) -> SyncEngine {
        let names: Vec<String> = (0..upstreams).map(|i| format!("u{i}")).collect();
        let settings = EngineSettings {
            min_sources,
            ..EngineSettings::default()
        };
        let mut e = SyncEngine::new(&names, settings, 0.0);
        for i in 0..upstreams {
            e.set_address(i, format!("192.0.2.{}:123", i + 1).parse().unwrap());
        }
        e
    }

    /// One poll of every upstream at `t` (10 ms round trip); the clock
    /// commands the engine gave.
    fn poll_all(e: &mut SyncEngine, t: &mut UnixNanos, answers: &[Answer]) -> Vec<ClockCommand> {
        let mut commands = Vec::new();
        for (i, a) in answers.iter().enumerate() {
            let request = e.request(i, *t, 1000 + t.0 as u64 + i as u64);
            let q = packet::parse(&request).unwrap();
            let t2 = UnixNanos(t.0 + 5_000_000 + (a.offset * 1e9) as i64);
            let mut reply = [0u8; 48];
            Header {
                leap: a.leap,
                version: 4,
                mode: mode::SERVER,
                stratum: a.stratum,
                precision: -20,
                refid: RefId(a.refid),
                reference: NtpTimestamp::from_unix(t2),
                origin: q.transmit,
                receive: NtpTimestamp::from_unix(t2),
                transmit: NtpTimestamp::from_unix(t2),
                ..Header::default()
            }
            .encode(&mut reply);
            let t4 = UnixNanos(t.0 + 10_000_000);
            if let Ok(Some(c)) = e.reply(i, &reply, t4) {
                commands.push(c);
            }
            *t = UnixNanos(t.0 + SEC / 10);
        }
        *t = UnixNanos(t.0 + 2 * SEC);
        commands
    }

    fn start() -> UnixNanos {
        UnixNanos(1_800_000_000 * SEC)
    }

    #[test]
    fn a_stratum_0_reply_without_a_kiss_code_is_no_reference() {
        let mut e = engine(4, 3);
        let mut t = start();
        // The bad one is the closest and of the lowest stratum.
        let invalid = Answer {
            offset: 0.002,
            stratum: 0,
            refid: [0; 4],
            leap: Leap::None,
        };
        for _ in 0..8 {
            poll_all(&mut e, &mut t, &[GOOD, GOOD, GOOD, invalid]);
            let served = e.publish(t);
            assert_ne!(e.peer(), Some(3));
            if served.source == TimeSource::Upstreams {
                assert_eq!(served.state.stratum, 2);
            }
        }
        assert_eq!(e.publish(t).source, TimeSource::Upstreams);
        assert_eq!(e.upstreams[3].status, UpstreamStatus::Unusable);
        assert_ne!(e.upstreams[3].source.reach(), 0, "it answers");
    }

    #[test]
    fn refused_clock_commands_are_served_as_unsynchronised() {
        let mut e = engine(3, 2);
        let mut t = start();
        for _ in 0..6 {
            poll_all(&mut e, &mut t, &[GOOD; 3]);
        }
        assert_eq!(e.publish(t).source, TimeSource::Upstreams);
        // The kernel refuses (no CAP_SYS_TIME): said once, then every
        // update goes on failing, and nothing claims synchronised.
        assert!(e.clock_command_done(false));
        let served = e.publish(t);
        assert_eq!(served.source, TimeSource::None);
        assert_eq!(served.state.leap, Leap::Unsynchronised);
        for _ in 0..6 {
            for _ in poll_all(&mut e, &mut t, &[GOOD; 3]) {
                assert!(!e.clock_command_done(false), "no news");
            }
            assert_eq!(e.publish(t).source, TimeSource::None);
        }
        // The kernel takes commands again: synchronised from the next update.
        assert!(e.clock_command_done(true));
        for _ in 0..6 {
            poll_all(&mut e, &mut t, &[GOOD; 3]);
        }
        assert_eq!(e.publish(t).source, TimeSource::Upstreams);
    }

    #[test]
    fn no_majority_leaves_no_peer_and_no_upstream_combined() {
        let mut e = engine(3, 2);
        let mut t = start();
        let at = |offset| Answer { offset, ..GOOD };
        for _ in 0..6 {
            poll_all(&mut e, &mut t, &[at(0.0), at(1.0), at(-1.0)]);
        }
        assert_eq!(e.last_failure, Some(NoSelection::NoMajority));
        assert_eq!(e.peer(), None);
        for u in &e.upstreams {
            assert_eq!(u.status, UpstreamStatus::Unselected, "{}", u.name);
        }
        assert_eq!(e.publish(t).source, TimeSource::None);
    }

    #[test]
    fn holdover_keeps_the_time_but_no_peer_then_the_local_clock() {
        let mut e = engine(3, 2);
        e.set_local_stratum(Some(7));
        let mut t = start();
        for _ in 0..6 {
            poll_all(&mut e, &mut t, &[GOOD; 3]);
        }
        let served = e.publish(t);
        assert_eq!(
            (served.source, served.state.stratum),
            (TimeSource::Upstreams, 2)
        );
        assert!(e.peer().is_some());
        // Every upstream silent: after four polls, holdover.
        for _ in 0..600 {
            t = UnixNanos(t.0 + SEC);
            e.tick(t);
        }
        assert_eq!(e.peer(), None, "no peer in holdover");
        for u in &e.upstreams {
            assert_ne!(u.status, UpstreamStatus::Selected, "{}", u.name);
        }
        assert_eq!(
            e.publish(t).source,
            TimeSource::Upstreams,
            "still the last update"
        );
        // Past max_distance (1 s at 15 ppm: 18.5 h) the local clock takes over.
        t = UnixNanos(t.0 + 70_000 * SEC);
        let served = e.publish(t);
        assert_eq!(
            (served.source, served.state.stratum),
            (TimeSource::LocalClock, 7)
        );
    }

    #[test]
    fn local_stratum_changes_keep_the_sync_state() {
        let mut e = engine(3, 2);
        let mut t = start();
        for _ in 0..6 {
            poll_all(&mut e, &mut t, &[GOOD; 3]);
        }
        let before = e.publish(t);
        e.set_local_stratum(Some(5));
        assert_eq!(e.publish(t), before, "the upstreams' time still wins");
        e.set_local_stratum(None);
        assert_eq!(e.publish(t), before);
    }
}
