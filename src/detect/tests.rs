//! The detectors on hand-made streams, fed through [`Detectors`] as the
//! pipeline feeds them (context, reference tables and relationships
//! included). Time is the events' own: 2026-03-02 (a Monday) 00:00 UTC is
//! `DAY0`, and every stream is laid out in event time.

use std::sync::Arc;

use super::reference::{CareAssignment, ConsentStatus, Loaded, Staff};
use super::*;
use crate::event::{Access, Actor, Body, Event};

const DAY0: i64 = 1_772_409_600;
const H: i64 = 3600;

#[derive(Clone)]
struct Ev {
    actor: &'static str,
    role: Option<&'static str>,
    dept: Option<&'static str>,
    patient: Option<String>,
    action: &'static str,
    outcome: &'static str,
    purpose: Option<&'static str>,
    records: u64,
    destination: Option<&'static str>,
}

fn by(actor: &'static str, role: &'static str, dept: &'static str) -> Ev {
    Ev {
        actor,
        role: Some(role),
        dept: Some(dept),
        patient: None,
        action: "read",
        outcome: "success",
        purpose: Some("TREAT"),
        records: 1,
        destination: None,
    }
}

impl Ev {
    fn patient(mut self, p: impl Into<String>) -> Self {
        self.patient = Some(p.into());
        self
    }
    fn at(&self, secs: i64) -> Event {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Event {
            id: format!("e{n}"),
            time: DateTime::from_timestamp(secs, 0).unwrap().fixed_offset(),
            actor: Actor {
                id: self.actor.into(),
                role: self.role.map(Into::into),
                dept: self.dept.map(Into::into),
                ..Actor::default()
            },
            source: None,
            attrs: Default::default(),
            body: Body::Access(Access {
                action: self.action.into(),
                outcome: self.outcome.into(),
                patient: self.patient.clone(),
                resource_type: None,
                resource_id: None,
                purpose: self.purpose.map(Into::into),
                records: self.records,
                destination: self.destination.map(Into::into),
            }),
            extra: Default::default(),
        }
    }
}

fn detectors(configs: Vec<DetectorConfig>, reference: Reference) -> Detectors {
    Detectors::new(&configs, Arc::new(reference))
}

fn run(d: &mut Detectors, events: impl IntoIterator<Item = Event>) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in events {
        out.extend(d.observe(&e));
    }
    out
}

/// `per_hour` events per working hour, 08:00–16:00, on `days` days from
/// `first_day`, each of a patient of the actor's own panel.
fn workdays(ev: &Ev, panel: &str, first_day: i64, days: i64, per_hour: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for day in first_day..first_day + days {
        for h in 8..16 {
            for k in 0..per_hour {
                let t = DAY0 + day * 86_400 + h * H + k * H / per_hour;
                out.push(ev.clone().patient(format!("{panel}-{}", k % 5)).at(t));
            }
        }
    }
    out
}

fn only(found: &[Finding], detector: &str) -> Vec<Finding> {
    found
        .iter()
        .filter(|f| f.detector == detector)
        .cloned()
        .collect()
}

#[test]
fn volume_fires_on_a_burst_against_own_and_peer_baselines_only() {
    let mut d = detectors(
        vec![DetectorConfig::Volume(Default::default())],
        Reference::default(),
    );
    let nurse = by("n1", "nurse", "cardiology");
    let mut events = Vec::new();
    for (i, a) in ["n2", "n3", "n4"].into_iter().enumerate() {
        let peer = Ev {
            actor: a,
            ..nurse.clone()
        };
        events.extend(workdays(&peer, &format!("p{i}"), 0, 4, 12));
    }
    events.extend(workdays(&nurse, "q", 0, 3, 12));
    events.sort_by_key(|e| e.time);
    assert!(run(&mut d, events).is_empty(), "steady work never fires");
    // Day 4, 10:00: 90 accesses in 10 minutes.
    let burst: Vec<Event> = (0..90)
        .map(|k| {
            nurse
                .clone()
                .patient(format!("x{k}"))
                .at(DAY0 + 3 * 86_400 + 10 * H + k * 6)
        })
        .collect();
    let found = run(&mut d, burst);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!((f.detector.as_str(), f.actor.as_str()), ("volume", "n1"));
    assert!(
        f.summary.contains("own usual") && f.summary.contains("peers (nurse, cardiology)"),
        "{}",
        f.summary
    );
    assert!(f.observed >= 30.0 && f.score >= 5.0);
    assert_eq!(f.evidence.len(), 20);
}

#[test]
fn breadth_judges_an_actor_against_their_own_peer_group() {
    let mut d = detectors(
        vec![DetectorConfig::Breadth(Default::default())],
        Reference::default(),
    );
    let mut events = Vec::new();
    // Emergency physicians: 25 new patients an hour. Ward nurses: 5.
    for day in 0..3 {
        for h in 8..16 {
            for k in 0..25 {
                for a in ["ed1", "ed2", "ed3"] {
                    let ev = by(a, "physician", "emergency");
                    let t = DAY0 + day * 86_400 + h * H + k * 100;
                    events.push(ev.patient(format!("{a}-{day}-{h}-{k}")).at(t));
                }
            }
            for k in 0..5 {
                for a in ["w1", "w2", "w3"] {
                    let t = DAY0 + day * 86_400 + h * H + k * 600;
                    events.push(by(a, "nurse", "surgery").patient(format!("{a}-{k}")).at(t));
                }
            }
        }
    }
    events.sort_by_key(|e| e.time);
    assert!(run(&mut d, events).is_empty());
    let t = DAY0 + 3 * 86_400 + 9 * H;
    let ed: Vec<Event> = (0..32)
        .map(|k| {
            by("ed1", "physician", "emergency")
                .patient(format!("n{k}"))
                .at(t + k * 60)
        })
        .collect();
    assert!(
        run(&mut d, ed).is_empty(),
        "a busy emergency hour is normal for emergency"
    );
    let nurse: Vec<Event> = (0..32)
        .map(|k| {
            by("w1", "nurse", "surgery")
                .patient(format!("m{k}"))
                .at(t + k * 60)
        })
        .collect();
    let found = run(&mut d, nurse);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].summary.starts_with("") && found[0].summary.contains("distinct patients"));
    assert_eq!(found[0].actor, "w1");
}

#[test]
fn no_relationship_counts_patients_treated_elsewhere_not_own_or_care_team() {
    let mut reference = Reference::default();
    reference.add_care(
        "onc-7".into(),
        CareAssignment {
            actor: Some("c1".into()),
            ..Default::default()
        },
    );
    // Each ward's own patients are assigned to the ward.
    for (dept, panel) in [
        ("cardiology", "card-c1"),
        ("cardiology", "card-c2"),
        ("cardiology", "card-c3"),
        ("oncology", "onc"),
    ] {
        for k in 0..5 {
            reference.add_care(
                format!("{panel}-{k}"),
                CareAssignment {
                    dept: Some(dept.into()),
                    ..Default::default()
                },
            );
        }
    }
    let mut d = detectors(
        vec![DetectorConfig::NoRelationship(Default::default())],
        reference,
    );
    let mut events = Vec::new();
    for a in ["c1", "c2", "c3"] {
        events.extend(workdays(
            &by(a, "nurse", "cardiology"),
            &format!("card-{a}"),
            0,
            8,
            6,
        ));
    }
    // Oncology treats its own patients.
    events.extend(workdays(&by("o1", "nurse", "oncology"), "onc", 0, 8, 6));
    events.sort_by_key(|e| e.time);
    assert!(run(&mut d, events).is_empty());
    let t = DAY0 + 8 * 86_400 + 10 * H;
    // c1 opens oncology patients: onc-7 is on c1's care team, the rest not.
    let snoop: Vec<Event> = ["onc-0", "onc-1", "onc-2", "onc-7", "onc-3", "onc-4"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            by("c1", "nurse", "cardiology")
                .patient(*p)
                .at(t + i as i64 * 120)
        })
        .collect();
    let found = run(&mut d, snoop.clone());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].observed, 4.0,
        "onc-7 is on the care team: {}",
        found[0].summary
    );
    assert!(!found[0].evidence.contains(&snoop[3].id));
    // c2 re-reads its own panel: nothing.
    let own: Vec<Event> = (0..10)
        .map(|k| {
            by("c2", "nurse", "cardiology")
                .patient(format!("card-c2-{}", k % 5))
                .at(t + k * 60)
        })
        .collect();
    assert!(run(&mut d, own).is_empty());
}

#[test]
fn off_hours_fires_in_the_night_but_not_on_overtime() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    let ev = by("day1", "nurse", "surgery");
    assert!(run(&mut d, workdays(&ev, "s", 0, 5, 4)).is_empty());
    // Overtime until 17:30 on day 5 (the next hour after the shift).
    let overtime: Vec<Event> = (0..8)
        .map(|k| {
            ev.clone()
                .patient("s-1")
                .at(DAY0 + 5 * 86_400 + 16 * H + k * 200)
        })
        .collect();
    assert!(
        run(&mut d, overtime).is_empty(),
        "an hour past the shift is not the night"
    );
    // 02:00 on day 6.
    let night: Vec<Event> = (0..8)
        .map(|k| {
            ev.clone()
                .patient(format!("z{k}"))
                .at(DAY0 + 6 * 86_400 + 2 * H + k * 60)
        })
        .collect();
    let found = run(&mut d, night.clone());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].evidence,
        night[..5].iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );
    assert!(found[0].summary.contains("02:00"), "{}", found[0].summary);
    // A new actor has no habit yet.
    let fresh: Vec<Event> = (0..8)
        .map(|k| {
            by("new", "nurse", "surgery")
                .patient("a")
                .at(DAY0 + 6 * 86_400 + 3 * H + k * 60)
        })
        .collect();
    assert!(run(&mut d, fresh).is_empty());
}

#[test]
fn vip_fires_without_a_relationship_once_per_actor_and_day() {
    let mut reference = Reference::default();
    reference.add_vip("star".into(), "vip".into());
    reference.add_care(
        "star".into(),
        CareAssignment {
            dept: Some("icu".into()),
            ..Default::default()
        },
    );
    let mut d = detectors(vec![DetectorConfig::Vip(Default::default())], reference);
    let t = DAY0 + 10 * H;
    let care = by("i1", "nurse", "icu").patient("star");
    assert!(
        run(&mut d, [care.at(t), care.at(t + 60)]).is_empty(),
        "the care team reads VIPs"
    );
    let curious = by("x1", "registrar", "billing").patient("star");
    let found = run(&mut d, [curious.at(t + 100), curious.at(t + 200)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::High);
    assert!(found[0].patient.as_deref() == Some("star"));
    assert!(
        found[0].summary.contains("vip patient"),
        "{}",
        found[0].summary
    );
    // Missing role and department: still judged (the care team is by department).
    let bare = Ev {
        role: None,
        dept: None,
        ..by("x2", "", "")
    }
    .patient("star");
    assert_eq!(run(&mut d, [bare.at(t + 300)]).len(), 1);
}

#[test]
fn termination_is_critical_after_the_roster_end_and_silent_before() {
    let mut reference = Reference::default();
    let end = DateTime::from_timestamp(DAY0 + 2 * 86_400, 0).unwrap();
    reference.add_staff(
        "gone".into(),
        Staff {
            terminated: Some(end),
            ..Default::default()
        },
    );
    reference.mark_loaded(Loaded {
        roster: true,
        ..Default::default()
    });
    let mut d = detectors(
        vec![DetectorConfig::Termination(Default::default())],
        reference,
    );
    let ev = Ev {
        role: None,
        dept: None,
        ..by("gone", "", "")
    }
    .patient("p");
    assert!(run(&mut d, [ev.at(DAY0 + 86_400)]).is_empty());
    let found = run(
        &mut d,
        [
            ev.at(DAY0 + 2 * 86_400 + 7200),
            ev.at(DAY0 + 2 * 86_400 + 7300),
        ],
    );
    assert_eq!(found.len(), 1, "one finding per hour: {found:?}");
    assert_eq!(found[0].severity, Severity::Critical);
    assert!(
        found[0].summary.contains("terminated 2 h before"),
        "{}",
        found[0].summary
    );
}

#[test]
fn bulk_export_sums_records_off_the_allow_list() {
    let mut reference = Reference::default();
    reference.add_export_allow("sftp://registry.local/*".into());
    reference.mark_loaded(Loaded {
        export_allow: true,
        ..Default::default()
    });
    let mut d = detectors(
        vec![DetectorConfig::BulkExport(Default::default())],
        reference,
    );
    let t = DAY0 + 2 * H;
    let allowed = Ev {
        action: "export",
        records: 50_000,
        destination: Some("sftp://registry.local/nightly"),
        ..by("svc-etl", "service", "it")
    };
    assert!(run(&mut d, [allowed.at(t)]).is_empty());
    let out = Ev {
        action: "export",
        records: 30,
        destination: Some("dropbox.com"),
        ..by("n1", "nurse", "icu")
    };
    let found = run(&mut d, [out.at(t), out.at(t + 60), out.at(t + 120)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.starts_with("60 records") && found[0].summary.contains("dropbox.com"),
        "{}",
        found[0].summary
    );
    assert_eq!(found[0].evidence.len(), 2);
}

#[test]
fn denied_bursts_and_break_glass_habits_fire_against_the_norm() {
    let mut d = detectors(
        vec![
            DetectorConfig::DeniedBurst(Default::default()),
            DetectorConfig::BreakGlass(Default::default()),
        ],
        Reference::default(),
    );
    let mut events = Vec::new();
    for a in ["e1", "e2", "e3"] {
        let ev = by(a, "physician", "emergency");
        events.extend(workdays(&ev, a, 0, 4, 6));
        // One break-the-glass a day each.
        for day in 0..4 {
            events.push(
                Ev {
                    purpose: Some("ETREAT"),
                    ..ev.clone()
                }
                .patient("bg")
                .at(DAY0 + day * 86_400 + 9 * H + 1),
            );
        }
    }
    events.sort_by_key(|e| e.time);
    assert!(run(&mut d, events).is_empty());
    let t = DAY0 + 4 * 86_400 + 9 * H;
    let probe = Ev {
        outcome: "denied",
        ..by("e1", "physician", "emergency")
    };
    let found = run(
        &mut d,
        (0..12).map(|k| probe.clone().patient(format!("d{k}")).at(t + k * 20)),
    );
    assert_eq!(only(&found, "denied_burst").len(), 1, "{found:?}");
    let glass = Ev {
        purpose: Some("ETREAT"),
        ..by("e2", "physician", "emergency")
    };
    let found = run(
        &mut d,
        (0..9).map(|k| glass.clone().patient(format!("g{k}")).at(t + k * 600)),
    );
    let bg = only(&found, "break_glass");
    assert_eq!(bg.len(), 1, "{found:?}");
    assert!(bg[0].summary.contains("break-the-glass"));
}

#[test]
fn consent_checks_secondary_use_against_the_consent_in_force() {
    let mut reference = Reference::default();
    let t0 = DateTime::from_timestamp(DAY0, 0).unwrap();
    reference.add_consent("yes".into(), "HRESCH".into(), t0, ConsentStatus::Granted);
    reference.add_consent("no".into(), "HRESCH".into(), t0, ConsentStatus::Withdrawn);
    reference.mark_loaded(Loaded {
        consent: true,
        ..Default::default()
    });
    let mut d = detectors(vec![DetectorConfig::Consent(Default::default())], reference);
    let r = |a| Ev {
        purpose: Some("HRESCH"),
        ..by(a, "researcher", "research")
    };
    assert!(run(&mut d, [r("r1").patient("yes").at(DAY0 + H)]).is_empty());
    let found = run(&mut d, [r("r1").patient("no").at(DAY0 + H + 1)]);
    assert_eq!(found[0].severity, Severity::High);
    assert!(found[0].summary.contains("withdrawn"));
    let found = run(&mut d, [r("r2").patient("never").at(DAY0 + H + 2)]);
    assert_eq!(found[0].severity, Severity::Medium);
    assert!(found[0].summary.contains("not recorded"));
    // Treatment never needs research consent.
    assert!(
        run(
            &mut d,
            [by("n", "nurse", "icu").patient("no").at(DAY0 + H + 3)]
        )
        .is_empty()
    );
}

#[test]
fn a_restored_state_decides_exactly_like_the_live_one() {
    let mut configs = DetectorConfig::access_defaults();
    configs.push(DetectorConfig::default());
    let mut events = Vec::new();
    for a in ["a1", "a2", "a3"] {
        events.extend(workdays(&by(a, "nurse", "icu"), a, 0, 4, 10));
    }
    events.sort_by_key(|e| e.time);
    let t = DAY0 + 5 * 86_400 + 2 * H;
    let tail: Vec<Event> = (0..60)
        .map(|k| {
            by("a1", "nurse", "icu")
                .patient(format!("z{k}"))
                .at(t + k * 10)
        })
        .collect();
    let mut live = detectors(configs.clone(), Reference::default());
    run(&mut live, events.clone());
    let saved = live.save();
    let mut restored = detectors(configs.clone(), Reference::default());
    restored
        .load(serde_json::from_str(&saved.to_string()).unwrap())
        .unwrap();
    assert_eq!(restored.save(), saved);
    let a = run(&mut live, tail.clone());
    let b = run(&mut restored, tail);
    assert!(!a.is_empty(), "the tail is unusual enough to fire");
    assert_eq!(a, b);
    // Another configuration's state is refused.
    let mut other = detectors(
        vec![DetectorConfig::Vip(Default::default())],
        Reference::default(),
    );
    assert!(other.load(saved).is_err());
}

#[test]
fn state_is_capped_and_evictions_are_counted() {
    let cfg: CountConfig<Volume> =
        serde_json::from_value(serde_json::json!({ "max_actors": 100 })).unwrap();
    let mut d = detectors(vec![DetectorConfig::Volume(cfg)], Reference::default());
    let events: Vec<Event> = (0..1000)
        .map(|k| {
            let actor: &'static str = Box::leak(format!("u{k}").into_boxed_str());
            by(actor, "nurse", "icu").patient("p").at(DAY0 + k)
        })
        .collect();
    run(&mut d, events);
    let keys = d.report();
    let (_, held) = keys.iter().find(|(n, _)| *n == "volume").unwrap();
    assert!(*held <= 100, "{held}");
    assert!(d.list[0].evictions() >= 900);
}

#[test]
fn count_detector_parameters_validate_and_default_per_type() {
    let v: DetectorConfig = toml::from_str("type = \"breadth\"\nthreshold = 3.5").unwrap();
    let DetectorConfig::Breadth(b) = &v else {
        panic!()
    };
    assert_eq!(b.resolved().threshold, 3.5);
    assert_eq!(b.resolved().window_secs, 3600, "breadth's own default");
    let bad: DetectorConfig =
        toml::from_str("type = \"volume\"\nalpha = 2.0\nmin_count = 0").unwrap();
    let mut problems = Vec::new();
    bad.validate("detectors[0]", &mut problems);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(toml::from_str::<DetectorConfig>("type = \"volume\"\nwindow = 3").is_err());
    assert!(toml::from_str::<DetectorConfig>("type = \"snooping\"").is_err());
}

#[test]
fn reference_tables_have_the_schemas_sql_detectors_plan_against() {
    let tables = reference::tables(&Reference::default());
    assert_eq!(tables.len(), sql::REFERENCE_TABLES.len());
    for (name, batch) in tables {
        let expected = sql::reference_schema(name).unwrap();
        let shape = |s: &arrow::datatypes::Schema| -> Vec<(String, arrow::datatypes::DataType)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        assert_eq!(shape(&batch.schema()), shape(&expected), "{name}");
    }
}
