//! The `custos` command: wiring only. Each subcommand builds the stages from
//! the validated configuration and runs them.

use std::path::PathBuf;
use std::sync::Arc;

/// The pipeline allocates on its prepare thread what its loop frees:
/// glibc's allocator serializes that on an arena lock (measured: a fifth
/// of the CPU in lock handoffs, docs/performance.md); mimalloc frees
/// across threads without one. Built without the `mimalloc` feature
/// (`--no-default-features`), for heap profilers that hook `malloc`
/// (heaptrack), the binary uses the system's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use custos::alert::{Alerter, JsonlConfig, SinkConfig};
use custos::config::Config;
use custos::detect::{DetectorConfig, RateConfig};
use custos::event::{Decoder, Pseudonymizer, RejectSealer};
use custos::ledger::Store;
use custos::metrics::metrics;
use custos::pipeline::{CheckpointPolicy, Continuity, FlushPolicy, Pipeline, Summary};
use custos::source::demo::{DemoCluster, ProducerSettings, WorkloadProducer};
use custos::source::hospital::{self, GenConfig};
use custos::source::kafka::{DeadLetters, KafkaSettings, KafkaSource};
use custos::source::synth::{Workload, WorkloadConfig};
use custos::source::{NoCommit, file};

mod cli_erase;
mod cli_eval;
mod cli_ledger;
mod cli_query;
mod cli_rejects;

#[derive(Parser)]
#[command(
    name = "custos",
    version,
    about = "Live, tamper-evident audit of who touches patient data and clinical AI models"
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, global = true, env = "CUSTOS_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "CUSTOS_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(long, short, env = "CUSTOS_CONFIG")]
    config: Option<PathBuf>,
    /// Override one key, e.g. `--set kafka.group_id=audit` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on an embedded Kafka (mock cluster) fed by a
    /// synthetic hospital workload; no external services needed.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Live events per second.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Seconds of past activity produced first (the mock cluster serves
        /// a backlog slowly, so the live part then runs behind).
        #[arg(long, default_value_t = 0)]
        history: u64,
        /// Store folder (replaced if it holds an earlier demo).
        #[arg(long, default_value = "custos-demo-store")]
        store: PathBuf,
        /// Metrics and health address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        http: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Consume from Kafka (the production job).
    Run {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Ingest JSON lines from files (`-` for stdin) through the same pipeline.
    Ingest {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Recompute every hash of a store; exit 1 naming the first bad record.
    Verify {
        /// The store folder.
        #[arg(default_value = "custos-store")]
        store: PathBuf,
        /// Verifier key file for checkpoint signatures (else the key text
        /// in `CUSTOS_VERIFIER_KEY`; with neither, signatures are not
        /// checked and a warning says so).
        #[arg(long, value_name = "VERIFIER_KEY_FILE")]
        key: Option<PathBuf>,
        /// A signed checkpoint kept outside the store; the store must still
        /// hold the tree it commits to (repeatable).
        #[arg(long = "checkpoint", value_name = "NOTE_FILE")]
        checkpoints: Vec<PathBuf>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a JSON inclusion proof of an event (by id) or of any row (by
    /// `--stream`, `--partition`, `--table`, `--seq`).
    Prove {
        /// The event id.
        event_id: Option<String>,
        #[arg(long, default_value = "custos-store")]
        store: PathBuf,
        #[command(flatten)]
        log: cli_ledger::LogArgs,
        /// The row's seq (instead of an event id).
        #[arg(long, conflicts_with = "event_id")]
        seq: Option<u64>,
        /// Prove against the stored checkpoint of this size, not the latest.
        #[arg(long)]
        at: Option<u64>,
    },
    /// Print a JSON consistency proof between two tree sizes of a log. Each
    /// of OLD and NEW is a size or a file holding a signed checkpoint.
    Consistency {
        old: String,
        new: String,
        #[arg(long, default_value = "custos-store")]
        store: PathBuf,
        #[command(flatten)]
        log: cli_ledger::LogArgs,
    },
    /// Rejected messages: `custos rejects show` prints them with their
    /// original bytes, unsealed with the configured pseudonym key.
    Rejects {
        #[command(subcommand)]
        command: cli_rejects::RejectsCommand,
    },
    /// Erase a patient's rows (GDPR Art. 17): each becomes a tombstone that
    /// keeps its leaf hash, so the logs, checkpoints and the other rows'
    /// proofs still verify.
    Erase(cli_erase::EraseArgs),
    /// Delete the segments of flushes whose events are all older than the
    /// retention period; their leaf hashes stay in the tree.
    Prune(cli_erase::PruneArgs),
    /// Run one read-only SQL statement over a store (`docs/sql.md`).
    Query(cli_query::QueryArgs),
    /// Serve the SQL surfaces (`POST /v1/sql`, the PostgreSQL endpoint of
    /// `api.pg_listen`), proofs and checkpoints over a store, without
    /// consuming anything.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Read a secret (token or password) on stdin and print the
    /// `token_sha256` and `password_sha256` values of an `[[api.users]]`
    /// entry.
    HashSecret {
        /// The password's salt (default: 8 random bytes, in hex).
        #[arg(long)]
        salt: Option<String>,
    },
    /// Write a synthetic workload as JSON lines (for ingest benchmarks).
    Synth {
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Simulated events per second of event time.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the ground truth, one `id<TAB>truth<TAB>actor` line per
        /// event (for evaluating detectors).
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// Run the configured detectors over a labelled workload (from `custos
    /// gen`) and print recall per scenario, time to detect and false alerts
    /// per 1,000 benign actor-days.
    Eval {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: cli_eval::EvalArgs,
    },
    /// Write a labelled synthetic hospital workload (events, reference
    /// tables, misuse labels, a config) for evaluating detectors.
    Gen {
        /// Output folder (created if needed; files in it are replaced).
        #[arg(long)]
        out: PathBuf,
        /// Simulated days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Staff employed during the run.
        #[arg(long, default_value_t = 240)]
        staff: usize,
        #[arg(long, default_value_t = 6000)]
        patients: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First instant of the run (RFC 3339).
        #[arg(long, default_value = "2026-03-02T00:00:00Z")]
        start: String,
    },
    /// Validate the configuration and list every problem.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print a new random pseudonym key (64 hex digits), or with
    /// `--checkpoint` a new checkpoint signing key and its verifier key.
    Keygen {
        /// Make an Ed25519 checkpoint signer with this key name instead.
        #[arg(long, value_name = "NAME")]
        checkpoint: Option<String>,
        /// Write the signer key to this new file (mode 0600) instead of
        /// stdout; the verifier key then goes to stdout.
        #[arg(long, requires = "checkpoint")]
        out: Option<PathBuf>,
    },
    /// Check an inclusion or consistency proof document offline; exit 1
    /// with the reason if it does not hold.
    VerifyProof {
        /// The proof document (`-` for stdin).
        file: PathBuf,
        /// The log's verifier key file (else the key text in
        /// `CUSTOS_VERIFIER_KEY`; with neither, signatures are not checked).
        #[arg(long, value_name = "VERIFIER_KEY_FILE")]
        key: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log, cli.log_format) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(dispatch(cli.command)));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // `{:#}` prints the cause chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) -> Result<()> {
    // rdkafka's consumer logs an error when dropped after an explicit,
    // successful close (it closes again); nothing is wrong then.
    let filter = format!("{filter},rdkafka::consumer::base_consumer=off");
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("bad --log filter")?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// The segment key of the commands that take a store folder without a
/// configuration (`verify`, `prove`, `consistency`, `query`): from
/// `CUSTOS_STORE_ENCRYPTION_KEY` or `CUSTOS_STORE_ENCRYPTION_KEY_FILE`, the
/// variables that set `store.encryption_key` and `store.encryption_key_file`.
fn segment_key_from_env() -> Result<Option<custos::ledger::SegmentKey>> {
    let store = custos::config::StoreConfig {
        encryption_key: std::env::var("CUSTOS_STORE_ENCRYPTION_KEY")
            .ok()
            .map(custos::config::Secret),
        encryption_key_file: std::env::var_os("CUSTOS_STORE_ENCRYPTION_KEY_FILE")
            .map(PathBuf::from),
        ..custos::config::StoreConfig::default()
    };
    store.segment_key().map_err(anyhow::Error::msg)
}

fn load(args: &ConfigArgs) -> Result<Config> {
    Ok(Config::load(
        args.config.as_deref(),
        std::env::vars(),
        &args.sets,
    )?)
}

async fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Demo {
            duration,
            rate,
            history,
            store,
            http,
            seed,
        } => demo(duration, rate, history, store, http, seed).await,
        Command::Run { config } => run_kafka(load(&config)?).await,
        Command::Eval { config, args } => cli_eval::eval(load(&config)?, args),
        Command::Ingest { config, files } => ingest(load(&config)?, files).await,
        Command::Verify {
            store,
            key,
            checkpoints,
            json,
        } => cli_ledger::verify(store, key, checkpoints, json).await,
        Command::Prove {
            event_id,
            store,
            log,
            seq,
            at,
        } => cli_ledger::prove(&store, event_id.as_deref(), &log, seq, at),
        Command::Consistency {
            old,
            new,
            store,
            log,
        } => cli_ledger::consistency(&store, &old, &new, &log),
        Command::Rejects { command } => cli_rejects::run(command),
        Command::Erase(args) => cli_erase::erase(args),
        Command::Prune(args) => cli_erase::prune(args),
        Command::Query(args) => cli_query::query(args, segment_key_from_env()?).await,
        Command::Serve { config } => cli_query::serve(load(&config)?).await,
        Command::HashSecret { salt } => cli_query::hash_secret(salt),
        Command::Synth {
            events,
            rate,
            seed,
            out,
            labels,
        } => synth(events, rate, seed, out, labels),
        Command::Gen {
            out,
            days,
            staff,
            patients,
            seed,
            start,
        } => gen_workload(out, days, staff, patients, seed, &start),
        Command::CheckConfig { config } => {
            let c = load(&config)?;
            println!(
                "configuration ok: store {}, topics {:?}, {} detector(s), {} sink(s)",
                c.store.path.display(),
                c.kafka.topics,
                c.detectors.len(),
                c.sinks.len()
            );
            Ok(0)
        }
        Command::Keygen {
            checkpoint: Some(name),
            out,
        } => cli_ledger::keygen_checkpoint(&name, out.as_deref()),
        Command::VerifyProof { file, key } => cli_ledger::verify_proof(&file, key.as_deref()),
        Command::Keygen {
            checkpoint: None, ..
        } => {
            use rand::{RngCore, SeedableRng};
            let mut key = [0u8; 32];
            rand::rngs::StdRng::from_os_rng().fill_bytes(&mut key);
            println!("{}", hex::encode(key));
            Ok(0)
        }
    }
}

/// The stages every pipeline shares, built from the configuration.
struct Stages {
    decoder: Decoder,
    sealer: RejectSealer,
    store: Store,
    detectors: Vec<DetectorConfig>,
    reference: custos::detect::reference::ReferenceWatch,
    sql: custos::detect::sql::SqlDetectors,
    continuity: Continuity,
    alerter: Alerter,
    policy: FlushPolicy,
    checkpoints: Option<CheckpointPolicy>,
}

async fn stages(config: &Config) -> Result<Stages> {
    let key = config.privacy.key().map_err(anyhow::Error::msg)?;
    let pseudonymizer = Pseudonymizer::new(&key);
    let sealer = RejectSealer::new(&key);
    // Key ids only, never keys: they say which key a store's pseudonyms and
    // sealed rejects need, e.g. after a rotation.
    tracing::info!(
        pseudonym_key_id = pseudonymizer.key_id(),
        reject_key_id = sealer.key_id(),
        demo_key = config.privacy.demo_key,
        "patient identifiers are pseudonymized and rejected messages sealed"
    );
    let mut options = config.store.options();
    options.pseudonym_key_id = Some(pseudonymizer.key_id().to_owned());
    options.encryption = config.store.segment_key().map_err(anyhow::Error::msg)?;
    if let Some(key) = &options.encryption {
        tracing::info!(segment_key_id = key.id(), "segments are encrypted at rest");
    }
    let store = Store::open(&config.store.path, options)
        .with_context(|| format!("cannot open the store {}", config.store.path.display()))?;
    let users = Arc::new(custos::query::Users::from_config(&config.api));
    let engine = cli_query::engine_for(config, store.clone())?;
    let tls = config.api.tls().map_err(anyhow::Error::msg)?;
    if config.http.enabled {
        let addr = config.http.listen.parse()?;
        let api = custos::http::Api {
            users: users.clone(),
            engine: Some(engine.clone()),
        };
        let bound = custos::http::serve(addr, Some(store.clone()), api, tls.clone())
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(%bound, "metrics on http://{bound}/metrics");
    }
    if !config.api.pg_listen.is_empty() {
        let addr = config.api.pg_listen.parse()?;
        let bound = custos::query::pg::serve(addr, engine, users, tls.clone())
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(%bound, "PostgreSQL endpoint on {bound}");
    }
    let (reference, problems) = custos::detect::reference::ReferenceWatch::new(
        config.reference.clone(),
        pseudonymizer.clone(),
    )
    .context("cannot load the reference tables")?;
    for p in &problems {
        tracing::warn!(problem = %p, "skipped a bad reference row; the rest is loaded");
    }
    let (sql, problems) =
        custos::detect::sql::SqlDetectors::load(config.sql_detectors.clone()).await;
    for p in &problems {
        tracing::error!(problem = %p, "a SQL detector does not load; the others run");
    }
    let mut decoder = Decoder::new(pseudonymizer).with_models(config.events.model_features.clone());
    if config.events.max_future_secs > 0 {
        decoder = decoder.with_max_future(chrono::Duration::seconds(
            config.events.max_future_secs.min(i64::MAX as u64 / 1000) as i64,
        ));
    }
    let checkpoints = match config.checkpoints.signer().map_err(anyhow::Error::msg)? {
        Some(signer) => {
            tracing::info!(
                verifier = %signer.verifier().to_text(),
                every_secs = config.checkpoints.interval_secs,
                origin = store.origin(),
                "signing checkpoints"
            );
            Some(CheckpointPolicy {
                signer: Arc::new(signer),
                interval: Duration::from_secs(config.checkpoints.interval_secs),
            })
        }
        None => {
            tracing::warn!(
                "no checkpoint key (checkpoints.key or checkpoints.key_file): no signed checkpoints \
                 are written, so a consistent rewrite of the store could not be detected"
            );
            None
        }
    };
    // Incident revisions are recorded in the store's `+incidents/<n>`
    // chain before any sink sees them.
    let alerter = Alerter::start(
        config.alert_setup(),
        Some(custos::alert::IncidentLedger {
            store: store.clone(),
            chain: config.incidents.chain,
            checkpoints: checkpoints.as_ref().map(|c| (c.signer.clone(), c.interval)),
        }),
    )?;
    Ok(Stages {
        checkpoints,
        decoder,
        sealer,
        store,
        detectors: config.detectors.clone(),
        reference,
        sql,
        continuity: Continuity {
            dedup_window: Duration::from_secs(config.events.dedup_window_secs),
            dedup_max_ids: config.events.dedup_max_ids,
            snapshot_interval: Duration::from_secs(config.store.snapshot_interval_secs.max(1)),
            replay_max_events: config.store.replay_max_events,
            retention: (config.store.retention_days > 0)
                .then(|| Duration::from_secs(config.store.retention_days * 86_400)),
        },
        alerter,
        policy: FlushPolicy {
            max_rows: config.store.flush_rows,
            max_age: Duration::from_millis(config.store.flush_interval_ms),
        },
    })
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves on Ctrl-C or SIGTERM. SIGTERM is caught from the moment this
/// is called, not from the first poll: a stop asked for while the stages
/// start (opening the store, loading reference tables and SQL detectors)
/// is kept, and the pipeline drains as soon as it runs, instead of the
/// process dying half-started.
fn terminated() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! { _ = ctrl_c() => {}, _ = term.recv() => {} }
            return;
        }
        let _ = ctrl_c().await;
    }
}

async fn run_kafka(config: Config) -> Result<i32> {
    let shutdown = terminated();
    let s = stages(&config).await?;
    let k = &config.kafka;
    let dead_letters = if k.dead_letter_topic.is_empty() {
        None
    } else {
        Some(DeadLetters::new(
            &k.brokers,
            &k.dead_letter_topic,
            &k.client,
        )?)
    };
    let source = KafkaSource::start(&KafkaSettings {
        brokers: k.brokers.clone(),
        group_id: k.group_id.clone(),
        topics: k.topics.clone(),
        channel_capacity: k.channel_capacity,
        client: k.client.clone(),
    })?;
    tracing::info!(brokers = %k.brokers, group = %k.group_id, topics = ?k.topics, "consuming");
    let summary = consume(s, source, dead_letters, shutdown).await?;
    tracing::info!(?summary, "stopped");
    Ok(0)
}

/// Runs the pipeline over a Kafka source until `shutdown`, then drains.
async fn consume(
    s: Stages,
    mut source: KafkaSource,
    dead_letters: Option<DeadLetters>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Summary> {
    let stop = source.stop_handle();
    let events = std::mem::replace(&mut source.events, tokio::sync::mpsc::channel(1).1);
    let pipeline = Pipeline::new(
        s.decoder,
        s.store,
        s.detectors,
        s.alerter,
        dead_letters,
        Arc::new(source.committer.clone()),
        s.policy,
    )
    .with_checkpoints(s.checkpoints)
    .with_continuity(s.continuity)
    .with_sealer(s.sealer)
    .with_reference(s.reference)
    .with_sql_detectors(s.sql);
    let result = pipeline.run(events, shutdown, move || stop.stop()).await;
    let joined = tokio::task::spawn_blocking(move || source.join()).await?;
    let summary = result?;
    if let Err(fatal) = joined {
        bail!(
            "the Kafka consumer stopped on a fatal error: {fatal} (what was flushed before it is stored; whatever was not committed is read again, and skipped if stored, after a restart)"
        );
    }
    Ok(summary)
}

async fn ingest(config: Config, files: Vec<PathBuf>) -> Result<i32> {
    let shutdown = terminated();
    // Every input must open before anything is stored.
    for f in files.iter().filter(|f| f.as_os_str() != "-") {
        std::fs::File::open(f).with_context(|| format!("cannot read {}", f.display()))?;
    }
    let s = stages(&config).await?;
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || file::read_files(&files, &tx, &stop))
    };
    let pipeline = Pipeline::new(
        s.decoder,
        s.store,
        s.detectors,
        s.alerter,
        None,
        Arc::new(NoCommit),
        s.policy,
    )
    .with_checkpoints(s.checkpoints)
    .with_continuity(s.continuity)
    .with_sealer(s.sealer)
    .with_reference(s.reference)
    .with_sql_detectors(s.sql);
    let on_stop = move || stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let summary = pipeline.run(rx, shutdown, on_stop).await?;
    let lines = reader.await?.context("reading input")?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ingested {lines} lines in {secs:.2}s ({:.0}/s): {} accepted, {} rejected, {} duplicate ids, {} already stored, {} alerts",
        lines as f64 / secs,
        summary.accepted,
        summary.rejected,
        summary.duplicates,
        summary.redelivered,
        summary.alerts
    );
    Ok(0)
}

fn synth(
    events: u64,
    rate: u64,
    seed: u64,
    out: Option<PathBuf>,
    labels: Option<PathBuf>,
) -> Result<i32> {
    use std::io::Write;
    if rate == 0 {
        bail!("--rate must be at least 1");
    }
    let mut w: Box<dyn Write> = match &out {
        Some(p) => Box::new(std::fs::File::create(p)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut w);
    let mut labels = match &labels {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let mut workload = Workload::new(WorkloadConfig {
        seed,
        ..WorkloadConfig::default()
    });
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")?.to_utc();
    for i in 0..events {
        let t = start + chrono::Duration::microseconds((i * 1_000_000 / rate) as i64);
        let m = workload.next_message(t);
        w.write_all(&m.payload)?;
        w.write_all(b"\n")?;
        if let (Some(l), Some(id)) = (&mut labels, &m.id) {
            writeln!(l, "{id}\t{}\t{}", m.truth.as_str(), m.key)?;
        }
    }
    w.flush()?;
    if let Some(l) = &mut labels {
        l.flush()?;
    }
    Ok(0)
}

fn gen_workload(
    out: PathBuf,
    days: u32,
    staff: usize,
    patients: usize,
    seed: u64,
    start: &str,
) -> Result<i32> {
    if days == 0 || days > 366 {
        bail!("--days must be between 1 and 366");
    }
    if !(20..=100_000).contains(&staff) {
        bail!("--staff must be between 20 and 100000");
    }
    if !(100..=10_000_000).contains(&patients) {
        bail!("--patients must be between 100 and 10000000");
    }
    let start = chrono::DateTime::parse_from_rfc3339(start)
        .context("--start must be an RFC 3339 time")?
        .to_utc();
    let began = Instant::now();
    let workload = hospital::generate(&GenConfig {
        seed,
        days,
        staff,
        patients,
        start,
    });
    hospital::write_dir(&workload, &out)
        .with_context(|| format!("cannot write into {}", out.display()))?;
    print!("{}", workload.summary);
    println!(
        "written to {} in {:.1}s",
        out.display(),
        began.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// The demo's configuration: the defaults with a demo key, short windows
/// so baselines form within the demo's history, and alerts to a file.
fn demo_config(store: &std::path::Path, http: &str) -> Result<Config> {
    let mut config = Config::load(
        None,
        [("CUSTOS_PRIVACY_DEMO_KEY".into(), "true".into())],
        &[],
    )?;
    config.store.path = store.to_owned();
    config.http.listen = http.to_owned();
    config.detectors = vec![DetectorConfig::AccessRate(RateConfig {
        window_secs: 10,
        min_count: 15,
        warmup_windows: 6,
        ..RateConfig::default()
    })];
    config.sinks = vec![SinkConfig::Jsonl(JsonlConfig {
        path: store.join("alerts.jsonl").display().to_string(),
        ..JsonlConfig::default()
    })];
    // A fresh signer per demo; its verifier key is written beside the store.
    let mut seed = [0u8; 32];
    {
        use rand::{RngCore, SeedableRng};
        rand::rngs::StdRng::from_os_rng().fill_bytes(&mut seed);
    }
    let signer = custos::ledger::checkpoint::NoteSigner::from_seed("custos-demo", seed)?;
    config.checkpoints.key = Some(custos::config::Secret(signer.to_text()));
    config.checkpoints.interval_secs = 10;
    Ok(config)
}

async fn demo(
    duration: Option<u64>,
    rate: u64,
    history: u64,
    store: PathBuf,
    http: String,
    seed: u64,
) -> Result<i32> {
    // Replace only a folder an earlier demo made: never someone's ledger.
    const DEMO_MARKER: &str = "custos-demo";
    if store.join(DEMO_MARKER).exists() {
        std::fs::remove_dir_all(&store).with_context(|| {
            format!("cannot replace the earlier demo store {}", store.display())
        })?;
    } else if store.exists() && std::fs::read_dir(&store)?.next().is_some() {
        bail!(
            "{} exists and was not made by `custos demo`; choose another --store",
            store.display()
        );
    }
    std::fs::create_dir_all(&store)?;
    let config = demo_config(&store, &http)?;
    let topic = "custos.events";
    let cluster = DemoCluster::start(&[topic, "custos.dead-letter"], 3)?;
    let bootstrap = cluster.bootstrap().to_owned();
    eprintln!("custos demo: embedded Kafka (mock cluster) at {bootstrap}, topic {topic}");
    eprintln!(
        "  send your own events: kcat -P -b {bootstrap} -t {topic} -k emp-0001 <<< '{{\"id\":\"my-1\",...}}'"
    );
    eprintln!(
        "  metrics: http://{http}/metrics   alerts: {}",
        store.join("alerts.jsonl").display()
    );
    let s = stages(&config).await?;
    std::fs::write(
        store.join(DEMO_MARKER),
        "made by `custos demo`; the next demo replaces this folder\n",
    )?;
    // The demo's checkpoint verifier key, for `custos verify --key`.
    let verifier = store.join("checkpoint-verifier.key");
    if let Some(signer) = config.checkpoints.signer().map_err(anyhow::Error::msg)? {
        std::fs::write(&verifier, signer.verifier().to_text() + "\n")?;
    }
    let client: std::collections::BTreeMap<String, String> = [
        ("fetch.wait.max.ms", "10"),
        ("fetch.error.backoff.ms", "10"),
        ("reconnect.backoff.ms", "10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let dead_letters = Some(DeadLetters::new(
        &bootstrap,
        "custos.dead-letter",
        &Default::default(),
    )?);
    let source = KafkaSource::start(&KafkaSettings {
        brokers: bootstrap.clone(),
        group_id: "custos-demo".into(),
        topics: vec![topic.into()],
        channel_capacity: config.kafka.channel_capacity,
        client,
    })?;
    let producer = WorkloadProducer::start(ProducerSettings {
        bootstrap: bootstrap.clone(),
        topic: topic.into(),
        rate,
        history_secs: history,
        workload: WorkloadConfig {
            seed,
            ..WorkloadConfig::default()
        },
    })?;
    let status = tokio::spawn(status_line(producer.produced.clone()));
    let stop = terminated();
    let shutdown = async move {
        match duration {
            Some(secs) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(secs)) => {},
                _ = stop => {},
            },
            None => stop.await,
        }
    };
    let summary = consume(s, source, dead_letters, shutdown).await;
    status.abort();
    eprintln!();
    tokio::task::spawn_blocking(move || producer.stop()).await?;
    drop(cluster);
    let summary = summary?;
    eprintln!(
        "demo stopped: {} accepted, {} rejected, {} alerts; verifying the store…",
        summary.accepted, summary.rejected, summary.alerts
    );
    cli_ledger::verify(store, Some(verifier), Vec::new(), false).await
}

/// Prints a one-line live status to stderr every second.
async fn status_line(produced: Arc<std::sync::atomic::AtomicU64>) {
    use std::io::Write;
    let m = metrics();
    let total = |v: &prometheus::IntCounterVec| -> u64 {
        use prometheus::core::Collector;
        v.collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|x| x.get_counter().get_value() as u64)
            .sum()
    };
    let started = Instant::now();
    let mut last = (0u64, Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let consumed = total(&m.messages_consumed);
        let rate = (consumed - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (consumed, Instant::now());
        eprint!(
            "\r[{:>4}s] produced {} | consumed {} ({:.0}/s) | accepted {} | rejected {} | stored {} | findings {} | alerts {}   ",
            started.elapsed().as_secs(),
            produced.load(std::sync::atomic::Ordering::Relaxed),
            consumed,
            rate,
            total(&m.events_accepted),
            total(&m.events_rejected),
            total(&m.ledger_records),
            total(&m.findings),
            total(&m.alerts),
        );
        let _ = std::io::stderr().flush();
    }
}
