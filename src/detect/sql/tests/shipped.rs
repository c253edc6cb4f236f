//! Each shipped detector (`queries/detectors/`) fires on a small stream
//! made for it and stays silent on a benign one.

use super::*;
use crate::detect::Finding;

const SHIPPED: [&str; 5] = [
    "sql:cross_department_breadth",
    "sql:new_export_destination",
    "sql:patient_many_unrelated_actors",
    "sql:roster_mismatch",
    "sql:use_after_consent_withdrawn",
];

async fn shipped() -> SqlDetectors {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/detectors");
    let (d, problems) = SqlDetectors::load(config(&dir)).await;
    assert!(problems.is_empty(), "{problems:#?}");
    d
}

/// Every shipped detector run once over `events` (the run at the newest).
async fn findings(events: &[Event], reference: &[(&str, RecordBatch)]) -> Vec<Finding> {
    let mut d = shipped().await;
    for e in events {
        d.push(e);
    }
    let now = events.iter().map(|e| e.time_micros()).max().unwrap() / 1_000_000;
    let report = d.tick(at(now), reference).unwrap().execute().await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.skipped_rows, 0);
    report.findings
}

fn of<'a>(found: &'a [Finding], detector: &str) -> Vec<&'a Finding> {
    found.iter().filter(|f| f.detector == detector).collect()
}

#[tokio::test]
async fn every_shipped_detector_loads() {
    let d = shipped().await;
    assert_eq!(d.names().collect::<Vec<_>>(), SHIPPED);
}

#[tokio::test]
async fn a_normal_day_is_silent() {
    let mut events = Vec::new();
    for i in 0..5 {
        let (p, q) = (format!("p{i}"), format!("q{i}"));
        for (k, (actor, dept, patient)) in [
            ("alice", "er", &p),
            ("bob", "er", &p),
            ("carol", "cardio", &q),
            ("dave", "cardio", &q),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("{actor}-{i}");
            events.push(read(&id, 100 + 60 * i + k as i64, actor, dept, patient));
        }
    }
    events.push(access("x1", 500, "alice", "er", "p1", |a| {
        a.action = "export".into();
        a.records = 50;
        a.destination = Some("sftp://research.local/drop".into());
    }));
    events.push(access("r1", 600, "alice", "er", "p1", |a| {
        a.purpose = Some("HRESCH".into());
    }));
    let reference = [
        table(
            "ref_roster",
            &[
                &[Some("alice"), None, Some("er"), Some("0"), None],
                &[Some("bob"), None, Some("er"), Some("0"), None],
                &[Some("carol"), None, Some("cardio"), Some("0"), None],
                &[Some("dave"), None, Some("cardio"), Some("0"), None],
            ],
        ),
        table("ref_export_allow", &[&[Some("sftp://research.local/*")]]),
        table(
            "ref_consent",
            &[&[Some("p1"), Some("HRESCH"), Some("granted"), Some("0")]],
        ),
    ];
    assert_eq!(findings(&events, &reference).await, []);
}

/// Cardiology's patients q0..q11, each read by two cardiologists; then
/// `eve` of the emergency department reads all twelve, `gap` s apart.
fn browsing(gap: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for i in 0..12 {
        let q = format!("q{i}");
        events.push(read(&format!("c{i}"), 100 + i, "carol", "cardio", &q));
        events.push(read(&format!("d{i}"), 200 + i, "dave", "cardio", &q));
        events.push(read(&format!("e{i}"), 1000 + gap * i, "eve", "er", &q));
    }
    events
}

#[tokio::test]
async fn cross_department_breadth() {
    let found = findings(&browsing(20), &[]).await;
    let hits = of(&found, "sql:cross_department_breadth");
    assert_eq!(hits.len(), 1, "{found:#?}");
    let f = hits[0];
    assert_eq!((f.actor.as_str(), f.severity), ("eve", Severity::Medium));
    assert_eq!((f.observed, f.evidence_total), (12.0, 12));
    assert_eq!(f.evidence[0], "e0");
    assert!(
        f.summary
            .starts_with("opened 12 patients of other departments"),
        "{}",
        f.summary
    );
    assert_eq!((f.window_start, f.window_end), (at(1000), at(1220)));
    // The same reads spread over an hour (never more than 10 in 10 min).
    assert_eq!(
        of(
            &findings(&browsing(300), &[]).await,
            "sql:cross_department_breadth"
        ),
        Vec::<&Finding>::new()
    );
    // The emergency department is on these patients' care team.
    let care: Vec<String> = (0..12).map(|i| format!("q{i}")).collect();
    let rows: Vec<[Option<&str>; 5]> = care
        .iter()
        .map(|q| [Some(q.as_str()), None, Some("er"), None, None])
        .collect();
    let rows: Vec<&[Option<&str>]> = rows.iter().map(|r| &r[..]).collect();
    let care = table("ref_care_team", &rows);
    assert_eq!(
        of(
            &findings(&browsing(20), &[care]).await,
            "sql:cross_department_breadth"
        ),
        Vec::<&Finding>::new()
    );
}

fn export(id: &str, secs: i64, actor: &str, records: u64, to: &str) -> Event {
    access(id, secs, actor, "", "p1", |a| {
        a.action = "export".into();
        a.records = records;
        a.destination = Some(to.into());
    })
}

#[tokio::test]
async fn new_export_destination() {
    let events = [
        export("x1", 100, "alice", 50, "sftp://research.local/drop"),
        export("x2", 200, "mallory", 100, "https://paste.example/u/1"),
        export("x3", 300, "mallory", 100, "https://paste.example/u/1"),
        export("x4", 400, "bob", 5, "smtp:friend@example.com"),
        export("x5", 500, "carol", 5, "smtp:friend@example.com"),
    ];
    let allow = table(
        "ref_export_allow",
        &[&[Some("sftp://research.local/*")], &[Some("s3://archive")]],
    );
    let found = findings(&events, &[allow]).await;
    let mut hits: Vec<(&str, Severity, u64)> = of(&found, "sql:new_export_destination")
        .iter()
        .map(|f| (f.actor.as_str(), f.severity, f.evidence_total))
        .collect();
    hits.sort();
    assert_eq!(
        hits,
        [
            ("bob", Severity::Medium, 1),
            ("carol", Severity::Medium, 1),
            ("mallory", Severity::High, 2)
        ]
    );
    let m = found.iter().find(|f| f.actor == "mallory").unwrap();
    assert!(
        m.summary
            .starts_with("exported 200 records in 2 exports to https://paste.example/u/1"),
        "{}",
        m.summary
    );
    assert_eq!((m.score, m.patient.as_deref()), (200.0, Some("p1")));
    // Without an allow-list only destinations new to everyone fire.
    let found = findings(&events, &[]).await;
    let mut actors: Vec<&str> = of(&found, "sql:new_export_destination")
        .iter()
        .map(|f| f.actor.as_str())
        .collect();
    actors.sort();
    assert_eq!(actors, ["alice", "mallory"]);
}

#[tokio::test]
async fn patient_many_unrelated_actors() {
    let mut events = Vec::new();
    for i in 0..6i64 {
        let dept = format!("d{}", i / 2);
        events.push(read(
            &format!("s{i}"),
            100 + 300 * i,
            &format!("a{i}"),
            &dept,
            "star",
        ));
    }
    for i in 0..3i64 {
        let dept = format!("d{}", i % 2);
        events.push(read(
            &format!("v{i}"),
            200 + i,
            &format!("b{i}"),
            &dept,
            "vip",
        ));
    }
    let flagged = table("ref_vip", &[&[Some("vip"), Some("celebrity")]]);
    let found = findings(&events, &[flagged]).await;
    let mut hits = of(&found, "sql:patient_many_unrelated_actors");
    hits.sort_by_key(|f| f.patient.clone());
    assert_eq!(hits.len(), 2, "{found:#?}");
    let (star, vip) = (hits[0], hits[1]);
    assert_eq!(
        (star.patient.as_deref(), star.severity),
        (Some("star"), Severity::Medium)
    );
    assert_eq!(
        (star.actor.as_str(), star.evidence_total, star.observed),
        ("a5", 6, 6.0)
    );
    assert!(
        star.summary
            .starts_with("patient opened by 6 actors from 3 departments"),
        "{}",
        star.summary
    );
    assert_eq!(
        (vip.patient.as_deref(), vip.severity),
        (Some("vip"), Severity::High)
    );
    // Departments d0 and d1 treat `star`: two actors of one department left.
    let care = table(
        "ref_care_team",
        &[
            &[Some("star"), None, Some("d0"), None, None],
            &[Some("star"), None, Some("d1"), None, None],
        ],
    );
    let found = findings(&events, &[care]).await;
    let hits = of(&found, "sql:patient_many_unrelated_actors");
    assert_eq!(hits.len(), 0, "{found:#?}");
}

#[tokio::test]
async fn roster_mismatch() {
    let events = [
        read("ok", 1000, "alice", "er", "p1"),
        read("t1", 1000, "tom", "er", "p2"),
        read("t2", 1100, "tom", "er", "p3"),
        read("g1", 1000, "ghost", "er", "p1"),
        read("n1", 1000, "newbie", "er", "p1"),
        read("b1", 1000, "bob", "icu", "p4"),
    ];
    let roster = table(
        "ref_roster",
        &[
            &[Some("alice"), None, Some("er"), Some("0"), None],
            &[Some("tom"), None, Some("er"), Some("0"), Some("500")],
            &[Some("newbie"), None, Some("er"), Some("10000"), None],
            &[Some("bob"), None, Some("er"), None, None],
        ],
    );
    let found = findings(&events, &[roster]).await;
    let mut hits: Vec<(&str, Severity, &str)> = of(&found, "sql:roster_mismatch")
        .iter()
        .map(|f| (f.actor.as_str(), f.severity, f.summary.as_str()))
        .collect();
    hits.sort();
    assert_eq!(
        hits,
        [
            (
                "bob",
                Severity::Medium,
                "account used outside the rostered department: 1 accesses to 1 patients (as icu, rostered in er)"
            ),
            (
                "ghost",
                Severity::High,
                "account not on the roster: 1 accesses to 1 patients"
            ),
            (
                "newbie",
                Severity::High,
                "account used before hire: 1 accesses to 1 patients"
            ),
            (
                "tom",
                Severity::Critical,
                "account used after termination: 2 accesses to 2 patients"
            ),
        ]
    );
    // No roster configured: silent.
    assert_eq!(
        of(&findings(&events, &[]).await, "sql:roster_mismatch"),
        Vec::<&Finding>::new()
    );
}

#[tokio::test]
async fn use_after_consent_withdrawn() {
    let research = |a: &mut Access| a.purpose = Some("HRESCH".into());
    let events = [
        access("before", 400, "alice", "lab", "p1", research),
        access("after", 600, "alice", "lab", "p1", research),
        inference("inf", 700, "model-svc", "p1", "HRESCH"),
        access("treat", 700, "alice", "lab", "p1", |a| {
            a.purpose = Some("TREAT".into())
        }),
        access("other", 700, "alice", "lab", "p2", research),
    ];
    let consent = table(
        "ref_consent",
        &[
            &[Some("p1"), Some("HRESCH"), Some("granted"), Some("0")],
            &[Some("p1"), Some("HRESCH"), Some("withdrawn"), Some("500")],
        ],
    );
    let found = findings(&events, &[consent]).await;
    let mut hits = of(&found, "sql:use_after_consent_withdrawn");
    hits.sort_by_key(|f| f.actor.clone());
    assert_eq!(hits.len(), 2, "{found:#?}");
    assert_eq!(
        (hits[0].actor.as_str(), hits[0].severity),
        ("alice", Severity::High)
    );
    assert_eq!(hits[0].evidence, ["after"]);
    assert_eq!(hits[0].patient.as_deref(), Some("p1"));
    assert_eq!(
        (hits[1].actor.as_str(), hits[1].severity),
        ("model-svc", Severity::Critical)
    );
}
