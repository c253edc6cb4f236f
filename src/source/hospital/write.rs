//! Rendering: events in time order as JSON lines, the six reference
//! tables as CSV, the labels, the summary, and `custos.toml`.
//!
//! Event ids are `e-<seed>-<n>`, numbered from 1 in time order (ties keep
//! the order of generation). About 3% of staff events leave out
//! `actor.role` and `actor.dept` (producers that do not know them); the
//! roster still has them. In `care_team.csv` exactly one of `actor` and
//! `dept` is set on each row.
//!
//! `detectable_at` of a label is the time of its event that first makes
//! the misuse visible in principle:
//!
//! | scenario | event |
//! |---|---|
//! | `volume_burst` | the 20th event of the burst |
//! | `breadth` | the first read of the 25th distinct patient |
//! | `bulk_export` | the export or print at which the records reach 500 |
//! | `denied_probing` | the 5th denied access |
//! | `break_glass_habit` | the first `ETREAT` read of the 4th distinct patient |
//! | `unrelated_charts` | the first read of the 2nd distinct patient (one chart without a relationship is a cover or a consult as often as not) |
//! | `snooping` | the first read of someone the actor knows (a relative, a neighbour, a coworker: a rule broken on its own) |
//! | `off_hours` | the first access to a patient's data (the login before it discloses nothing) |
//! | the others | the first event (first VIP read, first use after termination, first read without consent) |
//!
//! (the last event when an instance is smaller than the threshold).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::Path;

use super::Gen;
use super::model::{Action, Ev, MRN_BASE, NONE, RESOURCES, Role, Scenario, ShiftKind};
use super::support::EXPORT_ALLOW;
use crate::source::synth::json::{UtcTimeWriter, push_u64, write_time};
use crate::source::synth::rng::Rng;

/// The generated files, in memory.
#[derive(Debug, Clone)]
pub struct Workload {
    pub events: Vec<u8>,
    pub labels: Vec<u8>,
    pub roster: Vec<u8>,
    pub vip: Vec<u8>,
    pub care_team: Vec<u8>,
    pub consent: Vec<u8>,
    pub export_allow: Vec<u8>,
    pub links: Vec<u8>,
    pub summary: Summary,
}

/// What was generated, for the command's report.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub events: usize,
    /// People employed during the run (without former staff and services).
    pub staff: usize,
    pub roster_rows: usize,
    pub patients: usize,
    pub days: u32,
    pub care_team_rows: usize,
    pub labelled_events: usize,
    /// Instances per scenario, in [`Scenario::ALL`] order.
    pub scenarios: Vec<(&'static str, usize)>,
    /// Hard benign cases and other counts.
    pub benign: Vec<(&'static str, u64)>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} events over {} days: {} staff ({} roster rows), {} patients, {} care-team rows",
            self.events,
            self.days,
            self.staff,
            self.roster_rows,
            self.patients,
            self.care_team_rows
        )?;
        let total: usize = self.scenarios.iter().map(|s| s.1).sum();
        writeln!(
            f,
            "misuse: {total} instances, {} labelled events",
            self.labelled_events
        )?;
        for (name, n) in &self.scenarios {
            writeln!(f, "  {name:<20} {n}")?;
        }
        writeln!(f, "benign (hard cases and context):")?;
        for (name, n) in &self.benign {
            writeln!(f, "  {name:<36} {n}")?;
        }
        Ok(())
    }
}

fn rfc(ms: i64) -> String {
    let mut b = Vec::with_capacity(24);
    write_time(&mut b, ms, Some(0), true);
    String::from_utf8(b).unwrap_or_default()
}

fn mrn(p: u32) -> String {
    format!("MRN-{}", MRN_BASE + p)
}

fn push_ip(b: &mut Vec<u8>, ip: u32) {
    for (i, shift) in [24, 16, 8, 0].into_iter().enumerate() {
        if i > 0 {
            b.push(b'.');
        }
        push_u64(b, u64::from((ip >> shift) & 0xFF));
    }
}

/// The label's `detectable_at` event (see the module documentation);
/// `tied` tells whether an event is a read of someone its actor knows.
fn detectable_at(scenario: Scenario, evs: &[&Ev], tied: impl Fn(&Ev) -> bool) -> i64 {
    let nth = |n: usize| evs[(n - 1).min(evs.len() - 1)].t;
    let nth_patient = |n: usize| {
        let mut seen = BTreeSet::new();
        evs.iter()
            .find(|e| e.patient != NONE && seen.insert(e.patient) && seen.len() == n)
            .map_or(evs[evs.len() - 1].t, |e| e.t)
    };
    match scenario {
        Scenario::VolumeBurst => nth(20),
        Scenario::Breadth => nth_patient(25),
        Scenario::DeniedProbing => nth(5),
        Scenario::BreakGlassHabit => nth_patient(4),
        Scenario::UnrelatedCharts => nth_patient(2),
        Scenario::Snooping => evs.iter().find(|e| tied(e)).map_or(evs[0].t, |e| e.t),
        Scenario::OffHours => nth_patient(1),
        Scenario::BulkExport => {
            let mut sum = 0u64;
            evs.iter()
                .find(|e| {
                    sum += u64::from(e.records);
                    sum >= 500
                })
                .map_or(evs[evs.len() - 1].t, |e| e.t)
        }
        _ => evs[0].t,
    }
}

pub(super) fn render(mut g: Gen) -> Workload {
    g.events.sort_by_key(|e| e.t);
    let seed = g.cfg.seed.to_string();
    let mut bare_rng = Rng::new(g.cfg.seed ^ 0x6261_7265);
    let mut clock = UtcTimeWriter::new();
    let mut out = Vec::with_capacity(g.events.len() * 300);
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); g.labels.len()];
    let mut bare = 0u64;
    for (n, ev) in g.events.iter().enumerate() {
        let s = &g.staff[ev.actor as usize];
        if ev.label != NONE {
            by_label[ev.label as usize].push(n);
        }
        out.extend_from_slice(b"{\"id\":\"e-");
        out.extend_from_slice(seed.as_bytes());
        out.push(b'-');
        push_u64(&mut out, n as u64 + 1);
        out.extend_from_slice(b"\",\"time\":\"");
        clock.write(&mut out, ev.t);
        let lineage = ev.action == Action::Derive;
        out.extend_from_slice(if lineage {
            b"\",\"kind\":\"lineage\",\"source\":\"etl\",\"actor\":{\"id\":\""
        } else {
            b"\",\"kind\":\"access\",\"source\":\"ehr\",\"actor\":{\"id\":\""
        });
        out.extend_from_slice(s.id.as_bytes());
        out.push(b'"');
        if s.is_human() && bare_rng.chance(0.03) {
            bare += 1;
        } else {
            out.extend_from_slice(b",\"role\":\"");
            out.extend_from_slice(s.role.name().as_bytes());
            out.extend_from_slice(b"\",\"dept\":\"");
            out.extend_from_slice(s.dept.name().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"ip\":\"");
        push_ip(&mut out, ev.ip);
        out.extend_from_slice(b"\",\"session\":\"s-");
        crate::source::synth::json::push_hex(&mut out, u64::from(ev.session), 8);
        out.extend_from_slice(b"\"}");
        if lineage {
            out.extend_from_slice(
                b",\"op\":\"derive\",\"inputs\":[\"dataset:ehr-production\"],\"outputs\":[\"",
            );
            out.extend_from_slice(g.dests[ev.dest as usize].as_bytes());
            out.extend_from_slice(b"\"],\"job\":\"nightly-warehouse\"}\n");
            continue;
        }
        out.extend_from_slice(b",\"action\":\"");
        out.extend_from_slice(ev.action.name().as_bytes());
        out.extend_from_slice(if ev.denied {
            b"\",\"outcome\":\"denied\""
        } else {
            b"\",\"outcome\":\"success\""
        });
        if ev.patient != NONE {
            out.extend_from_slice(b",\"patient\":\"MRN-");
            push_u64(&mut out, u64::from(MRN_BASE + ev.patient));
            out.push(b'"');
        }
        if ev.action != Action::Login {
            out.extend_from_slice(b",\"resource\":{\"type\":\"");
            out.extend_from_slice(RESOURCES[ev.resource as usize].as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b",\"purpose\":\"");
        out.extend_from_slice(ev.purpose.code().as_bytes());
        out.push(b'"');
        if ev.records > 0 {
            out.extend_from_slice(b",\"records\":");
            push_u64(&mut out, u64::from(ev.records));
        }
        if ev.dest != 0 {
            out.extend_from_slice(b",\"destination\":");
            crate::source::synth::json::push_str(&mut out, &g.dests[ev.dest as usize]);
        }
        if let Some(to) = ev.order_to {
            out.extend_from_slice(b",\"attrs\":{\"performer_dept\":\"");
            out.extend_from_slice(to.name().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"}\n");
    }
    g.count("events_without_role_dept", bare);
    benign_stats(&mut g);

    let mut labels = Vec::new();
    let mut per_scenario: BTreeMap<Scenario, usize> = BTreeMap::new();
    let mut labelled = 0;
    for (l, idx) in g.labels.iter().zip(&by_label) {
        if idx.is_empty() {
            continue;
        }
        let evs: Vec<&Ev> = idx.iter().map(|&i| &g.events[i]).collect();
        let ids: Vec<String> = idx.iter().map(|i| format!("e-{seed}-{}", i + 1)).collect();
        let js = |v: &str| serde_json::Value::from(v).to_string();
        let patient = if l.patient == NONE {
            "null".to_owned()
        } else {
            js(&mrn(l.patient))
        };
        let line = format!(
            "{{\"scenario\":{},\"actor\":{},\"patient\":{patient},\"start\":{},\"end\":{},\"events\":{},\"detectable_at\":{}}}",
            js(l.scenario.name()),
            js(&g.staff[l.actor as usize].id),
            js(&rfc(evs[0].t)),
            js(&rfc(evs[evs.len() - 1].t)),
            serde_json::Value::from(ids),
            js(&rfc(detectable_at(l.scenario, &evs, |e| {
                g.tied(e.actor, e.patient)
            }))),
        );
        labels.extend_from_slice(line.to_string().as_bytes());
        labels.push(b'\n');
        *per_scenario.entry(l.scenario).or_default() += 1;
        labelled += idx.len();
    }

    let mut roster = b"actor,role,dept,hired,terminated,patient\n".to_vec();
    let mut order: Vec<usize> = (0..g.staff.len()).collect();
    order.sort_by(|&a, &b| g.staff[a].id.cmp(&g.staff[b].id));
    for &i in &order {
        let s = &g.staff[i];
        let term = s.terminated.map(rfc).unwrap_or_default();
        let own = match g.ties.own.get(i) {
            Some(&p) if p != NONE => mrn(p),
            _ => String::new(),
        };
        let line = format!(
            "{},{},{},{},{term},{own}\n",
            s.id,
            s.role.name(),
            s.dept.name(),
            rfc(s.hired)
        );
        roster.extend_from_slice(line.as_bytes());
    }
    let mut links = b"actor,patient,relation\n".to_vec();
    for &i in &order {
        let i = i as u32;
        for &(_, p, kind) in g.ties.links_of(i) {
            let line = format!("{},{},{}\n", g.staff[i as usize].id, mrn(p), kind.name());
            links.extend_from_slice(line.as_bytes());
        }
    }
    let mut vip = b"patient,category\n".to_vec();
    for (p, f) in g.flags.iter().enumerate() {
        if let Some(f) = f {
            vip.extend_from_slice(format!("{},{}\n", mrn(p as u32), f.name()).as_bytes());
        }
    }
    g.care.sort_by_key(|r| (r.start, r.patient, r.actor));
    let mut care_team = b"patient,actor,dept,start,end\n".to_vec();
    for r in &g.care {
        let line = if r.actor == NONE {
            format!(
                "{},,{},{},{}\n",
                mrn(r.patient),
                r.dept.name(),
                rfc(r.start),
                rfc(r.end)
            )
        } else {
            format!(
                "{},{},,{},{}\n",
                mrn(r.patient),
                g.staff[r.actor as usize].id,
                rfc(r.start),
                rfc(r.end)
            )
        };
        care_team.extend_from_slice(line.as_bytes());
    }
    g.consent.sort_by_key(|c| (c.time, c.patient));
    let mut consent = b"patient,purpose,status,time\n".to_vec();
    for c in &g.consent {
        let status = if c.granted { "granted" } else { "withdrawn" };
        consent.extend_from_slice(
            format!("{},HRESCH,{status},{}\n", mrn(c.patient), rfc(c.time)).as_bytes(),
        );
    }
    let mut export_allow = b"destination\n".to_vec();
    for d in EXPORT_ALLOW {
        export_allow.extend_from_slice(format!("{d}\n").as_bytes());
    }

    let summary = Summary {
        events: g.events.len(),
        staff: g.staff.iter().filter(|s| s.is_human() && !s.former).count(),
        roster_rows: g.staff.len(),
        patients: g.flags.len(),
        days: g.days() as u32,
        care_team_rows: g.care.len(),
        labelled_events: labelled,
        scenarios: Scenario::ALL
            .iter()
            .map(|s| (s.name(), per_scenario.get(s).copied().unwrap_or(0)))
            .collect(),
        benign: g.benign.iter().map(|(k, v)| (*k, *v)).collect(),
    };
    Workload {
        events: out,
        labels,
        roster,
        vip,
        care_team,
        consent,
        export_allow,
        links,
        summary,
    }
}

/// Counts of the hard benign cases that are easiest to read off the
/// finished stream.
fn benign_stats(g: &mut Gen) {
    let mut ed: BTreeMap<(u32, u32), BTreeSet<u32>> = BTreeMap::new();
    let mut billing: BTreeMap<(u32, i64), BTreeSet<u32>> = BTreeMap::new();
    let (mut night, mut hires, mut vip_reads, mut tied_reads) = (0, 0, 0, 0);
    for ev in g.events.iter().filter(|e| e.label == NONE) {
        let s = &g.staff[ev.actor as usize];
        if s.kind == ShiftKind::Night {
            night += 1;
        }
        if s.hired >= g.start {
            hires += 1;
        }
        if ev.patient == NONE {
            continue;
        }
        if g.flags[ev.patient as usize].is_some() {
            vip_reads += 1;
        }
        if g.tied(ev.actor, ev.patient) {
            tied_reads += 1;
        }
        if s.role == Role::Physician && s.dept == super::model::Dept::Emergency {
            ed.entry((ev.actor, ev.session))
                .or_default()
                .insert(ev.patient);
        }
        if s.role == Role::BillingClerk {
            billing
                .entry((ev.actor, ev.t / super::model::DAY))
                .or_default()
                .insert(ev.patient);
        }
    }
    let mut per_shift: Vec<u64> = ed.values().map(|p| p.len() as u64).collect();
    per_shift.sort_unstable();
    let median = per_shift.get(per_shift.len() / 2).copied().unwrap_or(0);
    g.count("ed_physician_shifts", per_shift.len() as u64);
    g.count("ed_physician_patients_per_shift_median", median);
    g.count(
        "ed_physician_patients_per_shift_max",
        per_shift.last().copied().unwrap_or(0),
    );
    let billing_max = billing.values().map(|p| p.len() as u64).max().unwrap_or(0);
    g.count("billing_clerk_patients_per_day_max", billing_max);
    g.count("night_staff_events", night);
    g.count("new_hire_events", hires);
    g.count("flagged_patient_reads_benign", vip_reads);
    g.count("known_person_reads_benign", tied_reads);
}

/// Writes the workload's files and `custos.toml` into `dir` (created if
/// needed). The configuration names the reference tables by absolute path.
pub fn write_dir(w: &Workload, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let files: [(&str, &[u8]); 8] = [
        ("events.jsonl", &w.events),
        ("labels.jsonl", &w.labels),
        ("roster.csv", &w.roster),
        ("vip.csv", &w.vip),
        ("care_team.csv", &w.care_team),
        ("consent.csv", &w.consent),
        ("export_allow.csv", &w.export_allow),
        ("links.csv", &w.links),
    ];
    for (name, bytes) in files {
        let mut f =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join(name))?);
        f.write_all(bytes)?;
        f.flush()?;
    }
    let abs = dir.canonicalize()?;
    let path = |name: &str| toml::Value::String(abs.join(name).display().to_string()).to_string();
    let config = format!(
        "# Written by `custos gen`: the reference tables of this synthetic workload,\n\
         # named by absolute path. Use: custos eval --config {dir}/custos.toml {dir}/events.jsonl\n\
         \n\
         [privacy]\n\
         # Synthetic patients: the public demo pseudonym key is enough.\n\
         demo_key = true\n\
         \n\
         [reference]\n\
         vip = {}\n\
         roster = {}\n\
         care_team = {}\n\
         consent = {}\n\
         export_allow = {}\n\
         links = {}\n",
        path("vip.csv"),
        path("roster.csv"),
        path("care_team.csv"),
        path("consent.csv"),
        path("export_allow.csv"),
        path("links.csv"),
        dir = abs.display(),
    );
    std::fs::write(dir.join("custos.toml"), config)
}
