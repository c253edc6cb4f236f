//! Tests of the generated workload as a whole, with the default arguments
//! (7 days, 240 staff, 6,000 patients): determinism, the files' formats,
//! every event accepted by the decoder, the labels, and the invariants the
//! evaluation relies on (terminated staff, research consent).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{GenConfig, Scenario, Workload, generate};
use crate::event::{Decoder, PseudonymKey, Pseudonymizer};

fn workload() -> &'static Workload {
    static W: OnceLock<Workload> = OnceLock::new();
    W.get_or_init(|| generate(&GenConfig::default()))
}

fn lines(bytes: &[u8]) -> Vec<&str> {
    std::str::from_utf8(bytes).unwrap().lines().collect()
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn events() -> &'static Vec<Value> {
    static E: OnceLock<Vec<Value>> = OnceLock::new();
    E.get_or_init(|| {
        lines(&workload().events)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    })
}

fn labels() -> Vec<Value> {
    lines(&workload().labels)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Event id → index, and the ids that belong to some label.
fn labelled_ids() -> HashSet<String> {
    labels()
        .iter()
        .flat_map(|l| l["events"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, p| v.get(p))?.as_str()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = workload();
    let b = generate(&GenConfig::default());
    assert_eq!(a.events, b.events);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.roster, b.roster);
    assert_eq!(a.vip, b.vip);
    assert_eq!(a.care_team, b.care_team);
    assert_eq!(a.consent, b.consent);
    let c = generate(&GenConfig {
        seed: 7,
        days: 2,
        ..GenConfig::default()
    });
    assert_ne!(a.events[..4096], c.events[..4096]);
}

#[test]
fn csv_headers_are_exact() {
    let w = workload();
    let first = |b: &[u8]| lines(b)[0].to_owned();
    assert_eq!(first(&w.roster), "actor,role,dept,hired,terminated,patient");
    assert_eq!(first(&w.vip), "patient,category");
    assert_eq!(first(&w.care_team), "patient,actor,dept,start,end");
    assert_eq!(first(&w.consent), "patient,purpose,status,time");
    assert_eq!(first(&w.export_allow), "destination");
    assert_eq!(first(&w.links), "actor,patient,relation");
    for (b, cols) in [
        (&w.roster, 6),
        (&w.vip, 2),
        (&w.care_team, 5),
        (&w.consent, 4),
        (&w.links, 3),
    ] {
        for l in lines(b) {
            assert_eq!(l.split(',').count(), cols, "{l}");
        }
    }
}

#[test]
fn every_event_is_accepted_by_the_decoder_in_time_order_with_unique_ids() {
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let mut ids = HashSet::new();
    let mut last = None;
    let mut bare = 0;
    let all = lines(&workload().events);
    assert!(
        (150_000..700_000).contains(&all.len()),
        "{} events",
        all.len()
    );
    for (l, v) in all.iter().zip(events()) {
        decoder
            .decode(l.as_bytes())
            .unwrap_or_else(|e| panic!("{e:?}: {l}"));
        assert!(ids.insert(s(v, &["id"]).unwrap().to_owned()));
        let t = time(s(v, &["time"]).unwrap());
        assert!(last.is_none_or(|p| p <= t), "out of order: {l}");
        last = Some(t);
        assert!(s(v, &["time"]).unwrap().ends_with('Z') && s(v, &["time"]).unwrap().len() == 24);
        assert!(s(v, &["actor", "session"]).is_some() && s(v, &["actor", "ip"]).is_some());
        if s(v, &["actor", "role"]).is_none() {
            bare += 1;
        }
        if s(v, &["kind"]) == Some("access") {
            assert!(
                s(v, &["purpose"]).is_some() && s(v, &["outcome"]).is_some(),
                "{l}"
            );
        }
    }
    let share = bare as f64 / all.len() as f64;
    assert!((0.02..0.04).contains(&share), "{share}");
}

#[test]
fn every_scenario_is_present_at_least_ten_times_by_several_actors() {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in labels() {
        by.entry(l["scenario"].as_str().unwrap().to_owned())
            .or_default()
            .push(l["actor"].as_str().unwrap().to_owned());
    }
    for sc in Scenario::ALL {
        let actors = by.get(sc.name()).cloned().unwrap_or_default();
        assert!(actors.len() >= 10, "{}: {}", sc.name(), actors.len());
        let distinct: HashSet<_> = actors.iter().collect();
        assert!(distinct.len() >= 5, "{}: {distinct:?}", sc.name());
    }
}

#[test]
fn label_events_exist_belong_to_the_actor_and_bound_detectable_at() {
    let index: HashMap<&str, &Value> = events()
        .iter()
        .map(|v| (s(v, &["id"]).unwrap(), v))
        .collect();
    for l in labels() {
        let actor = l["actor"].as_str().unwrap();
        let (start, end) = (
            time(l["start"].as_str().unwrap()),
            time(l["end"].as_str().unwrap()),
        );
        let at = time(l["detectable_at"].as_str().unwrap());
        assert!(start <= at && at <= end, "{l}");
        let ids = l["events"].as_array().unwrap();
        assert!(!ids.is_empty());
        let mut times = Vec::new();
        for id in ids {
            let ev = index[id.as_str().unwrap()];
            assert_eq!(s(ev, &["actor", "id"]), Some(actor), "{l}");
            times.push(time(s(ev, &["time"]).unwrap()));
            if let Some(p) = l["patient"].as_str()
                && let Some(q) = s(ev, &["patient"])
            {
                assert_eq!(p, q);
            }
        }
        assert!(times.contains(&at) && times.contains(&start) && times.contains(&end));
        if l["scenario"] == "off_hours" {
            let h = start.format("%H").to_string();
            assert!(h.as_str() < "05", "{l}");
        }
    }
}

#[test]
fn terminated_actors_are_silent_after_termination_except_labelled_use() {
    let labelled = labelled_ids();
    let mut roster: HashMap<String, (DateTime<Utc>, Option<DateTime<Utc>>)> = HashMap::new();
    let mut terminated = 0;
    for l in lines(&workload().roster).iter().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let term = (!f[4].is_empty()).then(|| time(f[4]));
        terminated += usize::from(term.is_some());
        roster.insert(f[0].to_owned(), (time(f[3]), term));
    }
    assert!(terminated >= 10);
    let after_term: HashSet<String> = labels()
        .iter()
        .filter(|l| l["scenario"] == "after_termination")
        .flat_map(|l| l["events"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for v in events() {
        let (hired, term) = roster[s(v, &["actor", "id"]).unwrap()];
        let t = time(s(v, &["time"]).unwrap());
        let id = s(v, &["id"]).unwrap();
        assert!(t >= hired || labelled.contains(id), "{v}");
        if term.is_some_and(|x| t >= x) {
            assert!(after_term.contains(id), "{v}");
        } else {
            assert!(!after_term.contains(id), "{v}");
        }
    }
}

#[test]
fn benign_research_reads_have_granted_consent() {
    let labelled = labelled_ids();
    let mut consent: HashMap<String, Vec<(DateTime<Utc>, bool)>> = HashMap::new();
    for l in lines(&workload().consent).iter().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[1], "HRESCH");
        consent
            .entry(f[0].to_owned())
            .or_default()
            .push((time(f[3]), f[2] == "granted"));
    }
    let mut checked = 0;
    for v in events() {
        if s(v, &["purpose"]) != Some("HRESCH") || labelled.contains(s(v, &["id"]).unwrap()) {
            continue;
        }
        let Some(p) = s(v, &["patient"]) else {
            continue;
        };
        let t = time(s(v, &["time"]).unwrap());
        let newest = consent
            .get(p)
            .and_then(|d| d.iter().filter(|x| x.0 <= t).max_by_key(|x| x.0));
        assert!(newest.is_some_and(|x| x.1), "{v}");
        checked += 1;
    }
    assert!(checked > 1000, "{checked}");
    // And every consent_violation read lacks it.
    let index: HashMap<&str, &Value> = events()
        .iter()
        .map(|v| (s(v, &["id"]).unwrap(), v))
        .collect();
    for l in labels()
        .iter()
        .filter(|l| l["scenario"] == "consent_violation")
    {
        for id in l["events"].as_array().unwrap() {
            let v = index[id.as_str().unwrap()];
            let t = time(s(v, &["time"]).unwrap());
            let newest = consent
                .get(s(v, &["patient"]).unwrap())
                .and_then(|d| d.iter().filter(|x| x.0 <= t).max_by_key(|x| x.0));
            assert!(!newest.is_some_and(|x| x.1), "{v}");
        }
    }
}

#[test]
fn hard_benign_cases_are_present() {
    let w = workload();
    let b: HashMap<&str, u64> = w.summary.benign.iter().copied().collect();
    for key in [
        "nightly_exports",
        "research_exports",
        "break_glass_benign",
        "denied_benign",
        "flagged_patient_reads_benign",
        "new_hire_events",
        "night_staff_events",
        "cover_visits_without_care_row",
        "billing_accounts",
    ] {
        assert!(b.get(key).copied().unwrap_or(0) > 0, "{key}: {b:?}");
    }
    assert!(b["ed_physician_patients_per_shift_median"] >= 10, "{b:?}");
    // Benign exports go to allow-listed destinations only.
    let allow: Vec<String> = lines(&w.export_allow)[1..]
        .iter()
        .map(|d| d.trim_end_matches('*').to_owned())
        .collect();
    let labelled = labelled_ids();
    for v in events() {
        if let Some(d) = s(v, &["destination"])
            && !labelled.contains(s(v, &["id"]).unwrap())
        {
            assert!(allow.iter().any(|a| d.starts_with(a.as_str())), "{v}");
        }
    }
}

#[test]
fn orders_come_from_the_care_team_and_precede_medication_verification() {
    let w = workload();
    let care: Vec<Vec<String>> = lines(&w.care_team)[1..]
        .iter()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    // (patient, actor) → care-team rows' (start, end).
    let mut rows: HashMap<(&str, &str), Vec<(DateTime<Utc>, DateTime<Utc>)>> = HashMap::new();
    for r in &care {
        if !r[1].is_empty() {
            rows.entry((&r[0], &r[1]))
                .or_default()
                .push((time(&r[3]), time(&r[4])));
        }
    }
    let mut first_order: HashMap<&str, DateTime<Utc>> = HashMap::new();
    let (mut orders, mut verifications, mut unordered) = (0, 0, 0);
    for e in events() {
        let (Some(actor), Some(patient), Some(t)) =
            (s(e, &["actor", "id"]), s(e, &["patient"]), s(e, &["time"]))
        else {
            continue;
        };
        let t = time(t);
        if let Some(to) = s(e, &["attrs", "performer_dept"]) {
            orders += 1;
            assert_eq!(s(e, &["action"]), Some("create"), "{e}");
            assert!(
                [
                    "radiology",
                    "pharmacy",
                    "cardiology",
                    "neurology",
                    "icu",
                    "oncology",
                    "surgery"
                ]
                .contains(&to),
                "{e}"
            );
            assert!(
                rows.get(&(patient, actor))
                    .is_some_and(|v| v.iter().any(|(a, b)| *a <= t && t < *b)),
                "the orderer is on the patient's care team: {e}"
            );
            if to == "pharmacy" {
                first_order.entry(patient).or_insert(t);
            }
        } else if s(e, &["actor", "dept"]) == Some("pharmacy")
            && s(e, &["purpose"]) == Some("TREAT")
        {
            verifications += 1;
            unordered += usize::from(first_order.get(patient).is_none_or(|o| *o > t));
        }
    }
    assert!(orders > 1000, "{orders}");
    // Verification waits for an order, except where nobody on the team was
    // on shift to place one (and patients admitted before the run).
    assert!(
        unordered * 10 < verifications,
        "{unordered} of {verifications} verifications without an earlier order"
    );
}

#[test]
fn snooping_reads_people_the_actor_knows_and_no_one_reads_their_own_record() {
    let w = workload();
    // Own records (roster `patient`) and links, as the files give them.
    let mut own: HashMap<String, String> = HashMap::new();
    let mut dept: HashMap<String, String> = HashMap::new();
    for l in lines(&w.roster).iter().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 6, "{l}");
        dept.insert(f[0].to_owned(), f[2].to_owned());
        if !f[5].is_empty() {
            assert!(
                own.insert(f[5].to_owned(), f[0].to_owned()).is_none(),
                "{l}"
            );
        }
    }
    let mut links: HashSet<(String, String)> = HashSet::new();
    for l in lines(&w.links).iter().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        assert!(["family", "neighbour"].contains(&f[2]), "{l}");
        links.insert((f[0].to_owned(), f[1].to_owned()));
    }
    let staff = lines(&w.roster).len() - 1;
    assert!(
        own.len() * 5 > staff && own.len() * 2 < staff,
        "{}",
        own.len()
    );
    assert!(links.len() > staff, "{}", links.len());
    assert_eq!(links.len(), lines(&w.links).len() - 1, "one row per pair");
    let flagged: HashSet<&str> = lines(&w.vip)
        .iter()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert!(own.keys().all(|p| !flagged.contains(p.as_str())));
    let known = |actor: &str, patient: &str| {
        own.get(patient).is_some_and(|o| dept[o] == dept[actor])
            || links.contains(&(actor.to_owned(), patient.to_owned()))
    };
    let index: HashMap<&str, &Value> = events()
        .iter()
        .map(|v| (s(v, &["id"]).unwrap(), v))
        .collect();
    let mut instances = 0;
    for l in labels().iter().filter(|l| l["scenario"] == "snooping") {
        instances += 1;
        let actor = l["actor"].as_str().unwrap();
        let at = l["detectable_at"].as_str().unwrap();
        let first_known = l["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| index[id.as_str().unwrap()])
            .find(|e| known(actor, s(e, &["patient"]).unwrap()))
            .unwrap_or_else(|| panic!("no one the actor knows: {l}"));
        assert_eq!(s(first_known, &["time"]), Some(at), "{l}");
        for id in l["events"].as_array().unwrap() {
            let p = s(index[id.as_str().unwrap()], &["patient"]).unwrap();
            assert!(!flagged.contains(p), "{l}");
        }
    }
    assert!(instances >= 10);
    // Staff meet coworkers and relatives in ordinary work, never their
    // own record (a coworker of the same department is `known`, and so is
    // oneself).
    let labelled = labelled_ids();
    let mut benign_known = 0;
    for e in events() {
        let (Some(actor), Some(p)) = (s(e, &["actor", "id"]), s(e, &["patient"])) else {
            continue;
        };
        if labelled.contains(s(e, &["id"]).unwrap()) {
            continue;
        }
        assert_ne!(own.get(p).map(String::as_str), Some(actor), "{e}");
        benign_known += usize::from(known(actor, p));
    }
    assert!(benign_known > 100, "{benign_known}");
}

#[test]
fn on_call_reads_are_of_the_physicians_own_inpatients_from_the_vpn_at_night() {
    let care = lines(&workload().care_team);
    let labelled = labelled_ids();
    let mut n = 0;
    for e in events() {
        if !s(e, &["actor", "ip"]).is_some_and(|ip| ip.starts_with("172.16."))
            || labelled.contains(s(e, &["id"]).unwrap())
        {
            continue;
        }
        n += 1;
        assert_eq!(s(e, &["actor", "role"]).unwrap_or("physician"), "physician");
        let at = time(s(e, &["time"]).unwrap());
        let hour = at.format("%H").to_string();
        assert!(hour.as_str() >= "20" || hour.as_str() < "07", "{e}");
        let Some(p) = s(e, &["patient"]) else {
            continue;
        };
        let actor = s(e, &["actor", "id"]).unwrap();
        let covered = care.iter().any(|row| {
            let f: Vec<&str> = row.split(',').collect();
            f[0] == p && f[1] == actor && time(f[3]) <= at && at < time(f[4])
        });
        assert!(covered, "{e}");
    }
    assert!(n > 20, "{n}");
}
