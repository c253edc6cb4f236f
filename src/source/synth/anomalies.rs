//! Injected anomalies, scheduled in event time from the seed: rate bursts
//! (one clinician's share of the stream rises 20–50×), bulk exports to
//! external destinations, off-hours access by day-shift clinicians, and
//! model probes (hundreds of inference queries sweeping one feature).
//!
//! A burst changes who the next messages come from; the other anomalies are
//! episodes of a few to a few hundred messages, each message due at its own
//! event time. At most [`MAX_EPISODES`] run at once.

use super::events::{Access, Input, Who};
use super::normal::{
    ACCESS_PERMILLE, CLINICIAN_INFERENCE_PERMILLE, INFERENCE_PERMILLE, SERVICE_EXPORT_PER_10K,
};
use super::population::{Role, ServiceKind, is_night, session_id, shift_factor};
use super::vocab::{Action, EXTERNAL_DESTINATIONS, MODEL_MIX, RES_BUNDLE, draw_feature};
use super::{MINUTE, SynthMessage, Truth, Workload};

/// One clinician's rate burst: until `until`, a `share` of all messages.
#[derive(Debug, Clone)]
pub(super) struct Burst {
    clinician: usize,
    until: i64,
    share: f64,
}

#[derive(Debug, Clone)]
enum EpisodeKind {
    OffHours {
        clinician: usize,
        ip: String,
        session: String,
        logged_in: bool,
    },
    BulkExport {
        clinician: usize,
        destination: &'static str,
        searched: bool,
    },
    ModelProbe {
        who: Who,
        model: usize,
        base: Box<[f64; 30]>,
        sweep: usize,
        step: u32,
        steps: u32,
    },
}

/// A scheduled anomaly: `remaining` messages, the next one at `next_at`,
/// then exponential gaps with mean `mean_gap_ms`.
#[derive(Debug, Clone)]
pub(super) struct Episode {
    kind: EpisodeKind,
    next_at: i64,
    remaining: u32,
    mean_gap_ms: f64,
}

#[derive(Debug, Clone, Copy)]
enum Anomaly {
    RateBurst,
    BulkExport,
    OffHours,
    ModelProbe,
}

/// A range of whole minutes, `lo..=hi`.
type Minutes = (u64, u64);

/// Each anomaly with the minutes to its first start, and between two
/// starts. The first burst comes soon, so that a demo shows one. An anomaly
/// that cannot start when due (a burst already running, too many episodes,
/// off-hours in the daytime) is skipped until its next turn.
const SCHEDULE: [(Anomaly, Minutes, Minutes); 4] = [
    (Anomaly::RateBurst, (2, 4), (8, 30)),
    (Anomaly::BulkExport, (10, 90), (30, 120)),
    (Anomaly::OffHours, (5, 60), (20, 80)),
    (Anomaly::ModelProbe, (20, 150), (60, 180)),
];

impl Episode {
    /// `messages` messages, the first at `ms`.
    fn new(kind: EpisodeKind, ms: i64, messages: u32, mean_gap_ms: f64) -> Self {
        Self {
            kind,
            next_at: ms,
            remaining: messages,
            mean_gap_ms,
        }
    }
}

/// At most this many scheduled episodes at once (bounded memory even when
/// the caller's clock races ahead of its message rate).
const MAX_EPISODES: usize = 8;

impl Workload {
    /// `lo..=hi` whole minutes, in milliseconds.
    fn minutes(&mut self, lo: u64, hi: u64) -> i64 {
        self.rng.between(lo, hi) as i64 * MINUTE
    }

    /// Starts the anomalies that are due at `ms` and schedules the next ones.
    pub(super) fn schedule(&mut self, ms: i64, hour: usize) {
        let mut next = match self.next_anomaly {
            Some(next) => next,
            None => SCHEDULE.map(|(_, (lo, hi), _)| ms + self.minutes(lo, hi)),
        };
        if self.burst.as_ref().is_some_and(|b| ms >= b.until) {
            self.burst = None;
        }
        for (i, &(anomaly, _, (lo, hi))) in SCHEDULE.iter().enumerate() {
            if ms < next[i] {
                continue;
            }
            let room = self.episodes.len() < MAX_EPISODES;
            match anomaly {
                Anomaly::RateBurst if self.burst.is_none() => self.start_burst(ms, hour),
                Anomaly::BulkExport if room => self.start_bulk_export(ms),
                Anomaly::OffHours if room && is_night(hour) => self.start_off_hours(ms, hour),
                Anomaly::ModelProbe if room => self.start_probe(ms),
                _ => {}
            }
            next[i] = ms + self.minutes(lo, hi);
        }
        self.next_anomaly = Some(next);
    }

    /// Share of all messages that clinician `i` produces at `hour` in normal traffic.
    fn normal_share(&self, i: usize, hour: usize) -> f64 {
        let c = &self.clinicians[i];
        let eff = c.activity(hour);
        let mut p = 0.0;
        let total = self.access_pick.total(hour);
        if total > 0.0 {
            p += ACCESS_PERMILLE as f64 / 1000.0
                * (1.0 - SERVICE_EXPORT_PER_10K as f64 / 10_000.0)
                * eff
                / total;
        }
        let users = self.model_user_pick.total(hour);
        if c.role.uses_models() && users > 0.0 {
            p += INFERENCE_PERMILLE as f64 / 1000.0 * CLINICIAN_INFERENCE_PERMILLE as f64 / 1000.0
                * eff
                / users;
        }
        p
    }

    fn start_burst(&mut self, ms: i64, hour: usize) {
        // A reasonably active, on-shift clinician: between the median and the
        // 90th percentile of activity among those on shift.
        let mut on: Vec<usize> = (0..self.clinicians.len())
            .filter(|&i| shift_factor(self.clinicians[i].night, hour) >= 0.9)
            .collect();
        if on.is_empty() {
            on = (0..self.clinicians.len()).collect();
        }
        on.sort_by(|&a, &b| {
            self.clinicians[a]
                .weight
                .total_cmp(&self.clinicians[b].weight)
                .then(a.cmp(&b))
        });
        let lo = on.len() / 2;
        let hi = (on.len() * 9 / 10).max(lo + 1).min(on.len());
        let clinician = on[lo + self.rng.index(hi - lo)];
        let p = self.normal_share(clinician, hour).clamp(1e-9, 0.99);
        let k = self.rng.between(20, 50) as f64;
        let share = (p * (k - 1.0) / (1.0 - p)).min(0.8);
        let until = ms + self.rng.between(120, 360) as i64 * 1000;
        self.burst = Some(Burst {
            clinician,
            until,
            share,
        });
    }

    fn start_bulk_export(&mut self, ms: i64) {
        let clinician = self.rng.index(self.clinicians.len());
        let destination = *self.rng.pick(EXTERNAL_DESTINATIONS);
        let exports = self.rng.between(1, 3) as u32;
        let kind = EpisodeKind::BulkExport {
            clinician,
            destination,
            searched: false,
        };
        self.episodes
            .push(Episode::new(kind, ms, 1 + exports, 60_000.0));
    }

    fn start_off_hours(&mut self, ms: i64, hour: usize) {
        let day: Vec<usize> = (0..self.clinicians.len())
            .filter(|&i| {
                let c = &self.clinicians[i];
                !c.night && shift_factor(false, hour) < 0.01
            })
            .collect();
        if day.is_empty() {
            return;
        }
        let clinician = *self.rng.pick(&day);
        let ip = if self.rng.permille(700) {
            format!(
                "10.200.{}.{}",
                self.rng.between(0, 63),
                self.rng.between(2, 254)
            )
        } else {
            self.clinicians[clinician].ip.clone()
        };
        let session = session_id(&mut self.rng);
        let reads = self.rng.between(5, 30) as u32;
        let duration = self.minutes(5, 20) as f64;
        let kind = EpisodeKind::OffHours {
            clinician,
            ip,
            session,
            logged_in: false,
        };
        let gap = duration / f64::from(1 + reads);
        self.episodes.push(Episode::new(kind, ms, 1 + reads, gap));
    }

    fn start_probe(&mut self, ms: i64) {
        let has_scoring = !self.services_by_kind[ServiceKind::Scoring as usize].is_empty();
        let users = self.model_user_pick.members();
        let who = if has_scoring && (users.is_empty() || self.rng.permille(500)) {
            Who::Service(self.service_of(ServiceKind::Scoring))
        } else if !users.is_empty() {
            Who::Clinician(*self.rng.pick(users) as usize)
        } else {
            Who::Clinician(self.rng.index(self.clinicians.len()))
        };
        let model = self.rng.choose(MODEL_MIX);
        let mut base = Box::new([0.0; 30]);
        for (i, v) in base.iter_mut().enumerate() {
            *v = draw_feature(&mut self.rng, i);
        }
        let sweep = self.rng.index(30);
        let steps = self.rng.between(200, 800) as u32;
        let duration = self.minutes(3, 10) as f64;
        let kind = EpisodeKind::ModelProbe {
            who,
            model,
            base,
            sweep,
            step: 0,
            steps,
        };
        let gap = duration / f64::from(steps);
        self.episodes.push(Episode::new(kind, ms, steps, gap));
    }

    /// The next message of a due episode or of the running burst, if any.
    pub(super) fn anomalous(&mut self, ms: i64) -> Option<SynthMessage> {
        if let Some(i) = self.episodes.iter().position(|e| e.next_at <= ms) {
            let mut ep = self.episodes.swap_remove(i);
            let msg = self.episode_message(&mut ep, ms);
            ep.remaining -= 1;
            if ep.remaining > 0 {
                ep.next_at += ((self.rng.exp() * ep.mean_gap_ms) as i64).max(1);
                self.episodes.push(ep);
            }
            return Some(msg);
        }
        let (clinician, share) = match &self.burst {
            Some(b) => (b.clinician, b.share),
            None => return None,
        };
        if !self.rng.chance(share) {
            return None;
        }
        // Reads of patients anywhere in the hospital, and searches.
        let mut ev = if self.rng.permille(850) {
            let patient = self.any_patient();
            self.read_of(clinician, patient)
        } else {
            self.search()
        };
        let c = &self.clinicians[clinician];
        ev.purpose = Some(if c.role == Role::Registrar {
            "HOPERAT"
        } else {
            "TREAT"
        });
        if self.rng.permille(30) {
            ev.outcome = Some("denied");
        }
        let source = c.access_source(&mut self.rng);
        Some(self.emit_access(
            ms,
            Who::Clinician(clinician),
            None,
            &ev,
            source,
            Truth::RateBurst,
        ))
    }

    fn episode_message(&mut self, ep: &mut Episode, ms: i64) -> SynthMessage {
        match &mut ep.kind {
            EpisodeKind::OffHours {
                clinician,
                ip,
                session,
                logged_in,
            } => {
                let ci = *clinician;
                let ev = if *logged_in {
                    let c = &self.clinicians[ci];
                    let patient = if self.rng.permille(500) && !c.panel.is_empty() {
                        *self.rng.pick(&c.panel)
                    } else {
                        self.any_patient()
                    };
                    let mut ev = self.read_of(ci, patient);
                    ev.purpose = Some("TREAT");
                    ev
                } else {
                    *logged_in = true;
                    Access::new(Action::Login)
                };
                let ctx = Some((ip.as_str(), session.as_str()));
                self.emit_access(
                    ms,
                    Who::Clinician(ci),
                    ctx,
                    &ev,
                    Some("ehr-prod"),
                    Truth::OffHours,
                )
            }
            EpisodeKind::BulkExport {
                clinician,
                destination,
                searched,
            } => {
                let ci = *clinician;
                let ev = if *searched {
                    let mut ev = Access::new(Action::Export);
                    ev.records = Some(self.rng.between(1000, 20_000));
                    ev.destination = Some(destination);
                    ev.resource = Some(self.resource_ref(RES_BUNDLE));
                    if self.rng.permille(600) {
                        ev.purpose = Some("HOPERAT");
                    }
                    ev
                } else {
                    *searched = true;
                    self.search()
                };
                self.emit_access(
                    ms,
                    Who::Clinician(ci),
                    None,
                    &ev,
                    Some("ehr-prod"),
                    Truth::BulkExport,
                )
            }
            EpisodeKind::ModelProbe {
                who,
                model,
                base,
                sweep,
                step,
                steps,
            } => {
                let frac = f64::from(*step) / f64::from((*steps).max(2) - 1);
                *step += 1;
                let input = Input::Probe {
                    base,
                    sweep: *sweep,
                    frac,
                };
                let (who, model) = (*who, *model);
                self.emit_inference(ms, who, model, None, input, true, None, Truth::ModelProbe)
            }
        }
    }
}
