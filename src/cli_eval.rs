//! `custos eval`: runs the configured detectors over a labelled workload
//! (from `custos gen`) and scores them (see `custos::detect::eval`).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use custos::config::Config;
use custos::detect::eval::{Label, Raised, Report, score};
use custos::detect::{DetectorSetup, reference};
use custos::event::{Decoder, Pseudonymizer};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The workload's events, JSON lines (`events.jsonl` of `custos gen`).
    pub events: PathBuf,
    /// The labelled misuse, JSON lines (default: `labels.jsonl` beside the events).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Also write every finding, one JSON object per line, to this file
    /// (with `at`, the event time of the event that raised it).
    #[arg(long)]
    pub findings: Option<PathBuf>,
    /// Hours at the start of the stream in which detectors learn: instances
    /// detectable then are reported apart, findings then are not false
    /// alerts (see docs/detection.md).
    #[arg(long, default_value_t = 48)]
    pub learn_hours: u64,
    /// Also print one row per labelled instance (detected or not, events
    /// up to the first alert).
    #[arg(long)]
    pub per_instance: bool,
}

pub fn eval(config: Config, args: EvalArgs) -> Result<i32> {
    let labels_path = args.labels.clone().unwrap_or_else(|| {
        args.events
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("labels.jsonl")
    });
    let labels = read_labels(&labels_path)?;
    let key = config.privacy.key().map_err(anyhow::Error::msg)?;
    let pseudonymizer = Pseudonymizer::new(&key);
    let (reference, problems) = reference::load(&config.reference, &pseudonymizer)
        .context("cannot load the reference tables")?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let decoder = Decoder::new(pseudonymizer).with_models(config.events.model_features.clone());
    let mut sketcher = decoder.sketcher();
    let labelled: HashSet<&str> = labels
        .iter()
        .flat_map(|l| l.events.iter().map(String::as_str))
        .collect();
    let mut times: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
    let mut detectors = DetectorSetup {
        configs: config.detectors.clone(),
        reference: Arc::new(reference),
    }
    .build();

    let file = std::fs::File::open(&args.events)
        .with_context(|| format!("cannot read {}", args.events.display()))?;
    let mut raised = Vec::new();
    let mut actor_days: HashSet<(String, i64)> = HashSet::new();
    let (mut events, mut rejected) = (0u64, 0u64);
    let mut detect_time = std::time::Duration::ZERO;
    let mut first_time = None;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("cannot read {}", args.events.display()))?;
        if line.is_empty() {
            continue;
        }
        let event = match decoder.decode_with(&line, Some(&mut sketcher)) {
            Ok(e) => e,
            Err(_) => {
                rejected += 1;
                continue;
            }
        };
        events += 1;
        let at = event.time.with_timezone(&Utc);
        if labelled.contains(event.id.as_str()) {
            times.insert(event.id.clone(), at);
        }
        first_time = first_time.min(Some(at)).or(Some(at));
        let day = at.timestamp().div_euclid(86_400);
        if !actor_days.contains(&(event.actor.id.clone(), day)) {
            actor_days.insert((event.actor.id.clone(), day));
        }
        let started = Instant::now();
        let found: Vec<_> = detectors.observe(&event).collect();
        detect_time += started.elapsed();
        raised.extend(found.into_iter().map(|finding| Raised { finding, at }));
    }
    if let Some(path) = &args.findings {
        let mut out = String::new();
        for r in &raised {
            // The finding with the event time of the event that raised it
            // (`at`), which is what the scoring matches on.
            let mut v = serde_json::to_value(&r.finding)?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("at".into(), r.at.to_rfc3339().into());
            }
            let _ = writeln!(out, "{v}");
        }
        std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let learn = chrono::Duration::hours(i64::try_from(args.learn_hours.min(1 << 30)).unwrap_or(0));
    let learned_from = first_time.unwrap_or_default() + learn;
    let report = score(&labels, &raised, &actor_days, &times, learned_from);
    print!("{}", render(&report));
    if args.per_instance {
        print!("\n{}", render_instances(&report));
    }
    println!(
        "\n{events} events ({rejected} rejected), {} labelled instances; detectors: {:.2} s, \
         {:.0} events/s on one core (including the reference lookups)",
        labels.len(),
        detect_time.as_secs_f64(),
        events as f64 / detect_time.as_secs_f64().max(1e-9)
    );
    Ok(0)
}

fn read_labels(path: &std::path::Path) -> Result<Vec<Label>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a label", path.display(), i + 1))
        })
        .collect()
}

/// The report as Markdown tables.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | instances | detected | recall | time to detect p50 | p95 | max | events to detect max | detectors that matched |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (name, s) in &r.scenarios {
        let secs = |q: f64| s.delay(q).map_or("–".into(), |d| format!("{d:.0} s"));
        let by: Vec<String> = s
            .by_detector
            .iter()
            .map(|(d, n)| format!("{d} ({n})"))
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.2} | {} | {} | {} | {} | {} |",
            s.instances,
            s.detected,
            s.recall(),
            secs(0.5),
            secs(0.95),
            secs(1.0),
            s.events_to_detect
                .iter()
                .max()
                .map_or("–".into(), |n| n.to_string()),
            by.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n{} findings; {} false alerts over {} benign actor-days ({} actor-days in all): \
         **{:.2} false alerts per 1,000 benign actor-days**",
        r.findings,
        r.false_alerts,
        r.benign_actor_days,
        r.actor_days,
        r.false_per_1000_actor_days()
    );
    let _ = writeln!(
        out,
        "\nActors with a false alert: {}{}",
        r.false_actors.len(),
        if r.false_actors.is_empty() || r.false_actors.len() > 20 {
            String::new()
        } else {
            format!(
                " ({})",
                r.false_actors
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        out,
        "\nLearning period: {} instances were detectable in it ({} of them detected); not in the table.",
        r.learning.0, r.learning.1
    );
    if !r.false_by_detector.is_empty() {
        let by: Vec<String> = r
            .false_by_detector
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        let _ = writeln!(out, "\nFalse alerts by detector: {}", by.join(", "));
    }
    out
}

/// One row per instance outside the learning period.
pub fn render_instances(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | actor | events | detected | events up to the first alert | time to detect |"
    );
    let _ = writeln!(out, "|---|---|---:|---|---:|---:|");
    for i in &r.instances {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            i.scenario,
            i.actor,
            i.events,
            if i.events_to_detect.is_some() {
                "yes"
            } else {
                "no"
            },
            i.events_to_detect.map_or("–".into(), |n| n.to_string()),
            i.delay_secs.map_or("–".into(), |d| format!("{d:.0} s")),
        );
    }
    out
}
