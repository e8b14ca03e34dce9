//! The sync engine, sans IO: the upstreams, selection and the discipline
//! together, and the system state the server publishes from them.
//!
//! The daemon (or the simulator) tells it when a request goes out, what came
//! back and when, and applies the clock commands it returns.

use std::net::SocketAddr;

use super::discipline::{ClockCommand, Discipline, DisciplineSettings};
use super::packet::{Leap, RefId, UnixNanos};
use super::select::{self, Candidate, NoSelection};
use super::server::{PHI, STRATUM_UNSYNC, SystemState};
use super::source::{Reject, Source};

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
    /// No measurement yet, or not answering.
    Unusable,
    Selected,
    /// A truechimer, combined but not the system peer.
    Candidate,
    /// A truechimer left out of the combination by the clustering.
    Outlier,
    Falseticker,
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
                    status: UpstreamStatus::Unusable,
                })
                .collect(),
            discipline: Discipline::new(settings.discipline, frequency),
            peer: None,
            reference: None,
            holding: false,
            last_failure: None,
        }
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
            up.status = UpstreamStatus::Unusable;
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
            u.status = UpstreamStatus::Unusable;
        }
        let selection = match select::select(&candidates, min_sources, previous) {
            Ok(s) => s,
            Err(e) => {
                self.last_failure = Some(e);
                for &i in &usable {
                    self.upstreams[i].status = UpstreamStatus::Candidate;
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
        for u in &mut self.upstreams {
            u.source.set_poll(poll);
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
