//! `off_hours`: activity at hours where the actor's own history is near
//! zero.
//!
//! Model: each actor has a habit of hours. custos keeps, per actor, a
//! 24-slot histogram of the hours (of the day, UTC — the habit is the
//! actor's own, so the time zone does not matter) in which they were
//! active, one count per active hour and day, decayed by `decay` per day
//! so the habit follows shift changes within weeks. An hour `h` is off
//! hours for the actor when their history covers at least `min_days`
//! active days and the activity of every usual hour (a share of the
//! active days of at least `max_share`) lies more than `gap_hours` away
//! from the event, to the minute: each hour slot also keeps the earliest
//! and latest minute seen in it, so 04:19 is two and a half hours before a
//! shift whose earliest start was 06:52, not "two hour slots". The gap is
//! what separates the middle of the night from overtime at the edge of a
//! shift.
//!
//! It fires once per off-hours run (activity with no break longer than an
//! hour): at its first access to a patient's record (`min_patient_events`)
//! or when the run reaches `min_events` accesses of any kind, so one stray
//! login does not alert but the first chart opened does. A day enters the
//! actor's history before their first event of a later day is judged, and
//! their peer group's as soon as the group's newest event is on a later
//! day. Until the actor's history covers `settled_days` (a week), an hour
//! must also be one that the peers who work the actor's hours leave
//! (`Alike`, below), when the group knows enough of them, or else one the
//! whole group leaves: a few days show which hours someone worked, not
//! whether they rotate. With no peer group that knows enough yet, the
//! actor's own few days decide, and a run fires at `min_events` accesses,
//! not at the first chart. While an actor's
//! own history is shorter than
//! `min_days` (a new hire, a part-timer's first shifts), their peer
//! group's (same role and department, at least 20 actor-days) stands in.
//! Once the newcomer has a finished day, the peers that stand in are those
//! who work the hours the newcomer has worked: for each hour the newcomer
//! was seen in, the group keeps what its established members usually at
//! work in that hour do at every other hour (`Alike`), and the newcomer's
//! hour is off hours when, for one of their own hours, those members are
//! active in it on under `max_share` of their days. A department with
//! night staff has no off hours for a newcomer not yet seen at work; a
//! day worker's first night is off hours unless the department's day
//! workers also work nights (staff who rotate).
//!
//! A read of a patient the actor treats themselves (their own earlier care,
//! or a care-team row naming them; `Context::own_care`) is not part of a
//! run: on call, a physician is asked about their inpatients at any hour.
//! Their department's other patients, and everyone else's, are.
//!
//! An hour that makes one working day with the actor's usual hours (all of
//! them within `shift_hours` + 1 hour slots) is not off hours either: a
//! short history shows part of someone's shift, and an early start of a
//! day shift is not the middle of the night.

use crate::ledger::StateWriter;
use serde::{Deserialize, Serialize};

use super::memory::{Map, is_never, is_zero, never};
use super::table::ActorTable;
use super::{Context, Detector, Finding, Severity};
use crate::event::{Body, Event};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffHoursConfig {
    /// Active days of history needed before an actor can fire.
    pub min_days: f64,
    /// Active days of history after which the actor's own hours decide
    /// alone. Before it, an hour must also be one that the peers who work
    /// the actor's hours leave (when the group knows enough of them): a
    /// few days cannot tell a day worker from one who rotates through the
    /// clock.
    pub settled_days: f64,
    /// Share of active days below which an hour counts as unused.
    pub max_share: f64,
    /// Hours on each side of the event within which the actor must have
    /// no usual activity.
    pub gap_hours: u32,
    /// Accesses in one off-hours run at which it fires.
    pub min_events: u32,
    /// Accesses to a patient's data (events naming a patient) in one
    /// off-hours run at which it fires, if `min_events` is not reached
    /// first: a login or a search discloses nothing, a chart does. Judged
    /// on under `settled_days` of the actor's own history with no peers to
    /// ask, a run fires at `min_events` only.
    pub min_patient_events: u32,
    /// The longest working day, in hours (a 12-hour shift): an hour that
    /// makes one working day with the actor's usual hours (together
    /// within `shift_hours` + 1 hour slots) is not off hours.
    pub shift_hours: u32,
    /// Daily decay of the histogram (0 < decay <= 1).
    pub decay: f64,
    pub max_actors: usize,
    pub max_evidence: usize,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        OffHoursConfig {
            min_days: 1.5,
            settled_days: 7.0,
            max_share: 0.05,
            gap_hours: 2,
            min_events: 3,
            min_patient_events: 1,
            shift_hours: 12,
            decay: 0.97,
            max_actors: 200_000,
            max_evidence: 20,
        }
    }
}

impl OffHoursConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if !(self.decay > 0.0 && self.decay <= 1.0) {
            problems.push(format!("{at}.decay must be in (0, 1]"));
        }
        if !(self.max_share > 0.0 && self.max_share < 1.0) {
            problems.push(format!("{at}.max_share must be between 0 and 1"));
        }
        if self.gap_hours > 11
            || self.min_events == 0
            || self.min_patient_events == 0
            || self.max_actors == 0
            || self.max_actors > super::table::MAX_RECORDS
        {
            problems.push(format!(
                "{at}: gap_hours must be at most 11, min_events and min_patient_events at \
                 least 1, max_actors between 1 and {}",
                super::table::MAX_RECORDS
            ));
        }
        if !(self.min_days >= 0.0 && self.settled_days >= self.min_days) {
            problems.push(format!(
                "{at}: min_days must be at least 0 and settled_days at least min_days"
            ));
        }
        if !(1..=23).contains(&self.shift_hours) {
            problems.push(format!("{at}.shift_hours must be between 1 and 23"));
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Habit {
    /// Finished active days seen, decayed.
    #[serde(with = "super::exact_f64")]
    days: f64,
    /// Per hour of day, what was seen in it (one allocation, saved as
    /// members of the habit).
    #[serde(flatten)]
    slots: Box<HourSlots>,
    /// Current day and the hours already counted in it (bit per hour).
    day: i64,
    day_hours: u32,
    /// The current off-hours run: last event second, accesses, fired
    /// (saved only once there has been one).
    #[serde(default = "never", skip_serializing_if = "is_never")]
    run_last: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    run_count: u32,
    /// Accesses of the run that named a patient.
    #[serde(default, skip_serializing_if = "is_zero")]
    run_patients: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    run_fired: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evidence: Vec<String>,
}

impl Default for Habit {
    /// Nothing seen yet (the day is set by the caller).
    fn default() -> Self {
        Habit {
            days: 0.0,
            slots: Box::default(),
            day: 0,
            day_hours: 0,
            run_last: i64::MIN,
            run_count: 0,
            run_patients: 0,
            run_fired: false,
            evidence: Vec::new(),
        }
    }
}

/// Per hour of day, for an actor or a peer group: the (decayed) days
/// with activity in it, and the earliest and latest minute seen in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HourSlots {
    /// Finished days with activity in the hour, decayed.
    hours: [f32; 24],
    /// The earliest and latest minute seen in the hour (`lo > hi`: none
    /// seen, or a snapshot from before they were kept: the whole hour).
    #[serde(default = "no_minutes")]
    lo: [u8; 24],
    #[serde(default)]
    hi: [u8; 24],
}

/// Minute bounds with nothing seen: `lo` above every minute.
fn no_minutes() -> [u8; 24] {
    [60; 24]
}

impl Default for HourSlots {
    fn default() -> Self {
        HourSlots {
            hours: [0.0; 24],
            lo: no_minutes(),
            hi: [0; 24],
        }
    }
}

impl HourSlots {
    /// Widens hour `h`'s minute bounds to take in minute `m`.
    fn see_minute(&mut self, h: usize, m: u8) {
        self.lo[h] = self.lo[h].min(m);
        self.hi[h] = self.hi[h].max(m);
    }
}

#[derive(Clone)]
pub struct OffHours {
    cfg: OffHoursConfig,
    actors: ActorTable<Habit>,
    /// Per peer group (role and department): finished actor-days and, per
    /// hour, those with activity in it; halved at 2,000 actor-days.
    groups: Map<u64, Peers>,
    evictions: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Peers {
    #[serde(with = "super::exact_f64")]
    days: f64,
    #[serde(flatten)]
    slots: HourSlots,
    /// The group's current day (the newest of its members' events) and
    /// its members' days so far: a day enters `days` when the group has
    /// moved past it, not when each member next comes to work (an office
    /// worker's Friday would wait for Monday).
    #[serde(default)]
    open_day: i64,
    #[serde(default, with = "super::exact_f64")]
    open_days: f64,
    #[serde(default, deserialize_with = "day_counts")]
    open_hours: [f32; 24],
    /// What the members usually at work in each hour do at the others.
    #[serde(default, skip_serializing_if = "Alike::is_empty")]
    alike: Box<Alike>,
}

/// For a peer group, per hour `a`: the finished days of established
/// members (history of at least `min_days`) who usually work in hour `a`
/// (`days[a]`), and how many of those days had activity in each hour
/// (`hours[a]`). A member who rotates between day and night shifts counts
/// under both, so their nights are what the day workers' row holds; a
/// department whose day staff never work nights holds none. Halved at
/// 2,000 days, as the group's pooled hours are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Alike {
    days: [f32; 24],
    hours: [[f32; 24]; 24],
}

impl Default for Alike {
    fn default() -> Self {
        Alike {
            days: [0.0; 24],
            hours: [[0.0; 24]; 24],
        }
    }
}

/// The hours (bit per hour) set in `mask`.
fn each_hour(mask: u32) -> impl Iterator<Item = usize> {
    (0..24).filter(move |h| mask & (1 << h) != 0)
}

impl Alike {
    fn is_empty(&self) -> bool {
        self.days.iter().all(|&d| d == 0.0)
    }

    /// A member's finished day: `usual`, the hours they usually work
    /// (bit per hour); `active`, the hours of the day with activity.
    fn learn(&mut self, usual: u32, active: u32) {
        for a in each_hour(usual) {
            self.days[a] += 1.0;
            for h in each_hour(active) {
                self.hours[a][h] += 1.0;
            }
        }
        if self.days.iter().any(|&d| d >= 2000.0) {
            self.days.iter_mut().for_each(|d| *d /= 2.0);
            self.hours.iter_mut().flatten().for_each(|x| *x /= 2.0);
        }
    }

    /// Whether some hour of `seen` (bit per hour) has `ALIKE_MIN_DAYS`
    /// days behind it: whether `given` has an answer.
    fn knows(&self, seen: u32) -> bool {
        each_hour(seen).any(|a| f64::from(self.days[a]) >= ALIKE_MIN_DAYS)
    }

    /// For a newcomer seen in hours `seen` (bit per hour): per hour of the
    /// day, the share of days active in it of the members usually at work
    /// in one of `seen`, the lowest over those hours that have at least
    /// `ALIKE_MIN_DAYS` days behind them (the most telling of the
    /// newcomer's hours: at 12:00 only day workers are at work, at 07:00
    /// the night shift is too), and the days behind that share. `None`
    /// when no hour of `seen` has enough days.
    fn given(&self, seen: u32) -> Option<([f64; 24], [f64; 24])> {
        let mut best: Option<([f64; 24], [f64; 24])> = None;
        for a in each_hour(seen) {
            let days = f64::from(self.days[a]);
            if days < ALIKE_MIN_DAYS {
                continue;
            }
            let (share, behind) = best.get_or_insert(([f64::INFINITY; 24], [0.0; 24]));
            for h in 0..24 {
                let x = f64::from(self.hours[a][h]) / days;
                if x < share[h] {
                    share[h] = x;
                    behind[h] = days;
                }
            }
        }
        best
    }
}

/// An open day's counts per hour as saved: 24 numbers (a state saved
/// before its first day opened has none; missing hours count 0).
fn day_counts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[f32; 24], D::Error> {
    let saved = Vec::<f32>::deserialize(d)?;
    let mut counts = [0.0; 24];
    for (c, x) in counts.iter_mut().zip(saved) {
        *c = x;
    }
    Ok(counts)
}

impl Peers {
    /// Moves the group's clock to `day`, folding the days before it into
    /// the history.
    fn roll(&mut self, day: i64) {
        if day <= self.open_day {
            return;
        }
        if self.open_days > 0.0 {
            self.days += self.open_days;
            for (x, n) in self.slots.hours.iter_mut().zip(&self.open_hours) {
                *x += n;
            }
            if self.days >= 2000.0 {
                self.days /= 2.0;
                self.slots.hours.iter_mut().for_each(|x| *x /= 2.0);
            }
        }
        self.open_day = day;
        self.open_days = 0.0;
        self.open_hours = [0.0; 24];
    }
}

/// Actor-days a peer group needs before it stands in for a newcomer.
const PEER_MIN_DAYS: f64 = 20.0;
/// Days of members who usually work one of the newcomer's hours needed
/// before they stand in for the newcomer (`Alike::given`).
const ALIKE_MIN_DAYS: f64 = 10.0;
const MAX_GROUPS: usize = 10_000;

/// A habit of hours to judge by: the share of days active in each hour
/// slot, and the minutes seen in each.
struct Hours<'a> {
    slots: &'a HourSlots,
    days: f64,
}

/// The minute of the day nearest to `minute` (0..1440) at which the actor
/// (or group) was seen in a usual hour within `gap_hours` + 1 slots of it,
/// and how many minutes away it is, around the clock; `None` when no usual
/// activity is that near.
fn nearest_usual(habit: &Hours, minute: i64, cfg: &OffHoursConfig) -> Option<(i64, i64)> {
    let reach = i64::from(cfg.gap_hours) + 1;
    let h = minute / 60;
    let mut best: Option<(i64, i64)> = None;
    for dx in -reach..=reach {
        let x = (h + dx).rem_euclid(24) as usize;
        if f64::from(habit.slots.hours[x]) / habit.days < cfg.max_share {
            continue;
        }
        let (lo, hi) = match (habit.slots.lo[x], habit.slots.hi[x]) {
            (lo, hi) if lo <= hi => (i64::from(lo), i64::from(hi)),
            _ => (0, 59),
        };
        // The slot's seen span, placed on the side of `minute` it lies on.
        let start = (h + dx) * 60 + lo;
        let end = (h + dx) * 60 + hi;
        let (dist, at) = if minute < start {
            (start - minute, start)
        } else if minute > end {
            (minute - end, end)
        } else {
            (0, minute)
        };
        if best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, at.rem_euclid(1440)));
        }
    }
    best
}

/// Whether no usual activity lies within `gap_hours` of `minute`.
fn quiet(habit: &Hours, minute: i64, cfg: &OffHoursConfig) -> bool {
    nearest_usual(habit, minute, cfg).is_none_or(|(d, _)| d > i64::from(cfg.gap_hours) * 60)
}

/// The hours (bit per hour) active on at least `max_share` of `days`.
fn usual_hours(hours: &[f32; 24], days: f64, max_share: f64) -> u32 {
    (0..24)
        .filter(|&x| days > 0.0 && f64::from(hours[x]) / days >= max_share)
        .fold(0, |mask, x| mask | 1 << x)
}

/// Whether hour `h` and the hours the actor usually works (`usual`, bit
/// per hour) fit in one working day: the shortest stretch of the 24-hour
/// clock covering them all spans at most `shift_hours` + 1 hour slots (a
/// 07:00–19:00 shift, begun a few minutes early or left late, touches
/// 13). A therapist whose first two days began at 10:00 and who starts at
/// 07:00 on the third is working an early day, not the night.
fn fits_working_day(usual: u32, h: usize, cfg: &OffHoursConfig) -> bool {
    let used = usual | 1 << h;
    if used == 1 << h {
        return false;
    }
    // The longest run of unused hours, around the clock.
    let (mut longest, mut run) = (0u32, 0u32);
    for i in 0..48 {
        if used & (1 << (i % 24)) == 0 {
            run += 1;
            longest = longest.max(run.min(24));
        } else {
            run = 0;
        }
    }
    24 - longest <= cfg.shift_hours + 1
}

/// The hours of an actor with a short history (`own`, over `days`) read
/// together with a peer reference (the share of days active in each
/// hour, and the minutes seen in `peers`): an hour is usual when it is
/// usual for either, so only an hour both leave can be off hours. Shares
/// of days, so the result is read over one day.
fn blend(own: &HourSlots, days: f64, share: &[f64; 24], peers: &HourSlots) -> HourSlots {
    let mut both = HourSlots::default();
    for x in 0..24 {
        let mine = f64::from(own.hours[x]) / days;
        both.hours[x] = share[x].max(mine) as f32;
        both.lo[x] = own.lo[x].min(peers.lo[x]);
        both.hi[x] = own.hi[x].max(peers.hi[x]);
    }
    both
}

/// Whose hours an event is judged by.
#[derive(Clone, Copy, PartialEq)]
enum Whose {
    /// The actor's own history (at least `min_days`).
    Own,
    /// The peers who usually work the hours the actor has worked.
    Alike,
    /// The whole peer group (the actor has no finished day yet).
    Peers,
    /// The actor's own short history and the whole peer group's, both.
    OwnAndPeers,
}

impl Whose {
    fn history(self) -> &'static str {
        match self {
            Whose::Own => "own history",
            Whose::Alike => "the history of peers who work the actor's hours",
            Whose::Peers => "peers' history",
            Whose::OwnAndPeers => "own and peers' history",
        }
    }
}

impl OffHours {
    pub fn new(cfg: &OffHoursConfig) -> Self {
        OffHours {
            cfg: cfg.clone(),
            actors: ActorTable::default(),
            groups: Map::default(),
            evictions: 0,
        }
    }

    fn evict(&mut self) {
        self.evictions += self.actors.evict_stalest(|s| s.run_last);
    }
}

impl Habit {
    /// Moves the actor's clock to `day`: a day enters the history when it
    /// is over — before the first event of a later day is judged — so an
    /// event is judged against every finished day and never its own.
    fn roll(&mut self, day: i64, decay: f64) {
        if day > self.day {
            if self.day_hours != 0 {
                self.days += 1.0;
                for (i, x) in self.slots.hours.iter_mut().enumerate() {
                    if self.day_hours & (1 << i) != 0 {
                        *x += 1.0;
                    }
                }
            }
            let factor = decay.powi((day - self.day).min(1000) as i32);
            self.days *= factor;
            for x in &mut self.slots.hours {
                *x = (f64::from(*x) * factor) as f32;
            }
            self.day = day;
            self.day_hours = 0;
        }
    }
}

impl Detector for OffHours {
    fn name(&self) -> &'static str {
        "off_hours"
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        if !matches!(event.body, Body::Access(_)) {
            return;
        }
        let secs = ctx.time.timestamp();
        let (day, minute) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) / 60);
        let (h, m) = ((minute / 60) as usize, (minute % 60) as u8);
        if !self.actors.contains_key(&ctx.actor_key) {
            if self.actors.len() >= self.cfg.max_actors {
                self.evict();
            }
            self.actors.insert(
                ctx.actor_key,
                Habit {
                    day: day - 1,
                    ..Habit::default()
                },
            );
        }
        let cfg = &self.cfg;
        let Some(s) = self.actors.get_mut(&ctx.actor_key) else {
            return;
        };
        let finished = (day > s.day && s.day_hours != 0).then_some(s.day_hours);
        s.roll(day, cfg.decay);
        // An established actor's finished day tells the group what those
        // who work the actor's usual hours do.
        let member = finished
            .filter(|_| s.days >= cfg.min_days)
            .map(|active| (usual_hours(&s.slots.hours, s.days, cfg.max_share), active));
        let group = ctx.group.unwrap_or(0);
        if group != 0 && (self.groups.len() < MAX_GROUPS || self.groups.contains_key(&group)) {
            let p = self.groups.entry(group).or_insert_with(|| Peers {
                open_day: day,
                ..Peers::default()
            });
            p.roll(day);
            if let Some((usual, active)) = member {
                p.alike.learn(usual, active);
            }
            // The actor's hour, once per actor-day, in the group's open day.
            if day == p.open_day && s.day == day && s.day_hours & (1 << h) == 0 {
                if s.day_hours == 0 {
                    p.open_days += 1.0;
                }
                p.open_hours[h] += 1.0;
            }
            p.slots.see_minute(h, m);
        }
        // Judged against the history before this event's day was learned:
        // the actor's own; while it is shorter than `settled_days`, with
        // that of the peers who usually work the hours the actor has
        // worked, or the whole group's (or, when the group is too new to
        // tell, on more evidence); below `min_days`, the whole group's
        // alone.
        let peers = self.groups.get(&group).filter(|_| group != 0);
        // The newcomer's hours (an established actor's are read below,
        // only for an event in a quiet hour).
        let seen = if s.days < cfg.settled_days {
            usual_hours(&s.slots.hours, s.days, cfg.max_share)
        } else {
            0
        };
        let own = Hours {
            slots: &s.slots,
            days: s.days,
        };
        // A peer reference below is read together with the actor's own
        // short history: an hour usual for the actor stays usual. Where
        // that history already finds this minute busy, no reference can
        // find it quiet, and reading one (up to 24 × 24 shares) is spared;
        // the whole group's hours alone still judge a newcomer below
        // `min_days`.
        let blended =
            s.days >= cfg.min_days || seen != 0 && peers.is_some_and(|p| p.alike.knows(seen));
        let own_decides =
            s.days >= cfg.settled_days || blended && s.days > 0.0 && !quiet(&own, minute, cfg);
        // The peer reference read with the actor's short history: those
        // who work the actor's hours, or else the whole group (its share
        // of days active in each hour, its minutes, whose, days behind).
        let reference = if own_decides {
            None
        } else if let Some((p, (share, days))) = peers
            .filter(|_| seen != 0)
            .and_then(|p| Some((p, p.alike.given(seen)?)))
        {
            Some((&p.slots, share, Whose::Alike, days[h]))
        } else {
            // The group does not yet know enough of those who work the
            // actor's hours: the whole group must leave the hour too.
            peers
                .filter(|p| s.days >= cfg.min_days && p.days >= PEER_MIN_DAYS)
                .map(|p| {
                    let share = std::array::from_fn(|x| f64::from(p.slots.hours[x]) / p.days);
                    (&p.slots, share, Whose::OwnAndPeers, p.days)
                })
        };
        let alike;
        let (habit, whose, behind) = if own_decides {
            (Some(own), Whose::Own, s.days)
        } else if let Some((slots, share, whose, behind)) = reference {
            // The actor's own hours stay usual (a short history shows
            // part of their shift).
            alike = blend(&s.slots, s.days, &share, slots);
            let habit = Hours {
                slots: &alike,
                days: 1.0,
            };
            (Some(habit), whose, behind)
        } else if s.days >= cfg.min_days {
            // No peer group that knows enough: the actor's own short
            // history decides, on more evidence (below).
            (Some(own), Whose::Own, s.days)
        } else if let Some(p) = peers.filter(|p| p.days >= PEER_MIN_DAYS) {
            let habit = Hours {
                slots: &p.slots,
                days: p.days,
            };
            (Some(habit), Whose::Peers, p.days)
        } else {
            (None, Whose::Peers, 0.0)
        };
        // Where the actor's own hours are known (their history, short or
        // not), the envelope is their own working day (the whole group's
        // hours cover every shift of the department).
        // A night read of a patient the actor treats themselves (their own
        // earlier care, or a care-team row naming them) is on-call
        // continuity of care: the physician called about their inpatient
        // at 02:00. It is not part of an off-hours run; everything else
        // is, the department's other patients included.
        let on_call = ctx.own_care && event.patient().is_some();
        if !on_call
            && let Some(habit) = habit.filter(|x| x.days > 0.0)
            && quiet(&habit, minute, cfg)
            && !match whose {
                Whose::Own => fits_working_day(
                    usual_hours(&habit.slots.hours, habit.days, cfg.max_share),
                    h,
                    cfg,
                ),
                Whose::Alike | Whose::OwnAndPeers => fits_working_day(seen, h, cfg),
                Whose::Peers => false,
            }
        {
            let (hours, days) = (&habit.slots.hours, habit.days);
            if secs.saturating_sub(s.run_last) > 3600 {
                s.run_count = 0;
                s.run_patients = 0;
                s.run_fired = false;
                s.evidence.clear();
            }
            s.run_last = secs;
            s.run_count += 1;
            if event.patient().is_some() {
                s.run_patients += 1;
            }
            if s.evidence.len() < cfg.max_evidence {
                s.evidence.push(event.id.clone());
            }
            // A week of one's own hours, or peers who confirm the hour is
            // left, make one chart opened in it telling. A few days of
            // one's own with no peers to ask show part of someone's
            // hours: a chart then is as likely a shift not seen yet, and
            // a run of `min_events` accesses is needed.
            let patients_needed = if whose == Whose::Own && s.days < cfg.settled_days {
                cfg.min_events
            } else {
                cfg.min_patient_events
            };
            if !s.run_fired && (s.run_count >= cfg.min_events || s.run_patients >= patients_needed)
            {
                s.run_fired = true;
                let share = f64::from(hours[h]) / days;
                let usual: Vec<String> = each_hour(usual_hours(hours, days, cfg.max_share))
                    .map(|x| format!("{x:02}"))
                    .collect();
                let nearest = match nearest_usual(&habit, minute, cfg) {
                    Some((d, at)) => format!(
                        "; nearest usual activity {:02}:{:02}, {} h {:02} min away",
                        at / 60,
                        at % 60,
                        d / 60,
                        d % 60
                    ),
                    None => String::new(),
                };
                let summary = format!(
                    "{} accesses at {h:02}:{m:02} UTC, an hour active on {:.0}% of {:.0} days of \
                     {}{nearest} (usual hours: {})",
                    s.run_count,
                    100.0 * share,
                    behind,
                    whose.history(),
                    if usual.is_empty() {
                        "none".into()
                    } else {
                        usual.join(",")
                    }
                );
                let start = chrono::DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0)
                    .unwrap_or_default();
                findings.push(Finding {
                    detector: "off_hours".into(),
                    severity: Severity::Medium,
                    actor: event.actor.id.clone(),
                    patient: None,
                    model: None,
                    window_start: start,
                    window_end: start + chrono::Duration::hours(1),
                    score: 1.0 - share / cfg.max_share,
                    observed: f64::from(s.run_count),
                    expected: share * f64::from(cfg.min_events),
                    summary,
                    evidence: s.evidence.clone(),
                    evidence_total: u64::from(s.run_count),
                });
            }
        }
        s.slots.see_minute(h, m);
        s.day_hours |= 1 << h;
    }

    fn keys(&self) -> usize {
        self.actors.len()
    }

    fn evictions(&self) -> u64 {
        self.evictions
    }

    fn save(&self) -> Vec<u8> {
        let actors: std::collections::BTreeMap<String, &Habit> = self
            .actors
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let groups: std::collections::BTreeMap<String, &Peers> = self
            .groups
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        StateWriter::new()
            .field("actor_keys", &actors)
            .field("evictions", &self.evictions)
            .field("groups", &groups)
            .finish()
    }

    fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            actor_keys: Option<ActorTable<Habit>>,
            actors: Option<std::collections::HashMap<String, Habit>>,
            groups: std::collections::HashMap<String, Peers>,
            evictions: u64,
        }
        let s: Saved = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        self.actors = super::memory::actor_state(s.actor_keys, s.actors)?;
        self.groups = super::memory::numeric_keys(s.groups)?;
        self.evictions = s.evictions;
        Ok(())
    }
}
