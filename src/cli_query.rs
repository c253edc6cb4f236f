//! `custos query` (one statement, from the command line or a file, with
//! parameters, printed as a table, CSV, JSON lines or Parquet), `custos
//! serve` (the SQL surfaces without ingest) and `custos hash-secret`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use custos::config::Config;
use custos::event::{PseudonymKey, Pseudonymizer};
use custos::ledger::Store;
use custos::query::{Caller, Limits, QueryEngine, QueryLog, ReferenceSource, Role, Surface, Users};

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The statement (or give `-f`).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    sql: Option<String>,
    /// Read the statement from this file (e.g. `queries/audit/…sql`).
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// A parameter: `:'NAME'` in the statement becomes VALUE as a quoted
    /// string literal, `:NAME` the number VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The store folder (default: the config's `store.path`, else
    /// `custos-store`).
    #[arg(long)]
    store: Option<PathBuf>,
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    /// Write the answer to this file instead of stdout.
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// Also load the config's `[reference]` tables (as `ref_*`),
    /// pseudonymized with its key, its pseudonym key for `pseudonym()`, and
    /// its `[api]` limits.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    Parquet,
}

pub async fn query(
    args: QueryArgs,
    segment_key: Option<custos::ledger::SegmentKey>,
) -> Result<i32> {
    let text = match (&args.sql, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        (None, None) => bail!("give a statement or -f FILE"),
    };
    let sql = bind_params(&text, &args.params)?;
    let mut key = segment_key;
    let (store, reference, pseudonyms, limits, config) = match &args.config {
        None => {
            // Without a configuration, the pseudonym key may still come
            // from the environment, as it does for ingest.
            let pseudonyms = std::env::var("CUSTOS_PRIVACY_PSEUDONYM_KEY")
                .ok()
                .and_then(|k| PseudonymKey::from_hex(&k).ok())
                .map(|k| Pseudonymizer::new(&k));
            (
                args.store.clone().unwrap_or_else(|| "custos-store".into()),
                None,
                pseudonyms,
                Limits::default(),
                None,
            )
        }
        Some(file) => {
            let config = Config::load(Some(file), std::env::vars(), &[])?;
            if key.is_none() {
                key = config.store.segment_key().map_err(anyhow::Error::msg)?;
            }
            let pseudo = Pseudonymizer::new(&config.privacy.key().map_err(anyhow::Error::msg)?);
            let (reference, problems) =
                custos::detect::reference::load(&config.reference, &pseudo)?;
            for p in &problems {
                eprintln!("skipped reference row: {p}");
            }
            let reference = Arc::new(reference);
            let source: ReferenceSource = Arc::new(move || reference.clone());
            (
                args.store.clone().unwrap_or(config.store.path.clone()),
                Some(source),
                Some(pseudo),
                Limits::from_config(&config.api),
                Some(config),
            )
        }
    };
    // The statement is recorded in the store's query log (so this needs
    // write access to the store), and the entry signed when the
    // configuration has a checkpoint key.
    let opened = Store::open_existing_with(&store, key.clone())
        .with_context(|| format!("cannot open the store {}", store.display()))?;
    // Without `--config`, a checkpoint key may still come from the
    // environment (`CUSTOS_CHECKPOINTS_KEY_FILE`), as it does for ingest.
    let config = config.or_else(|| Config::load(None, std::env::vars(), &[]).ok());
    let log = query_log(opened, config.as_ref(), Duration::ZERO)?;
    let engine = QueryEngine::new(store, key, pseudonyms, reference, limits, log)?;
    // Whoever can run this command can read the store's files anyway.
    let caller = Caller {
        name: std::env::var("USER").unwrap_or_else(|_| "local".into()),
        role: Role::Admin,
    };
    let answer = engine.execute(&caller, Surface::Cli, &sql).await?;
    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    write_answer(out, args.format, &answer)?;
    Ok(0)
}

fn write_answer(
    mut out: Box<dyn Write + Send>,
    format: OutputFormat,
    answer: &custos::query::Answer,
) -> Result<()> {
    // An empty answer still has its columns (a table or CSV header).
    let empty = [arrow::record_batch::RecordBatch::new_empty(
        answer.schema.clone(),
    )];
    let batches = if answer.batches.is_empty() {
        &empty[..]
    } else {
        &answer.batches[..]
    };
    match format {
        OutputFormat::Table => {
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::Writer::new(out);
            for b in batches {
                w.write(b)?;
            }
            return Ok(());
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutputFormat::Parquet => {
            let mut w =
                parquet::arrow::ArrowWriter::try_new(&mut out, answer.schema.clone(), None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `text` with `:'NAME'` replaced by VALUE as a SQL string literal and
/// `:NAME` by VALUE if it is a number. Every parameter given must be used,
/// and every `:'NAME'` given.
pub fn bind_params(text: &str, params: &[String]) -> Result<String> {
    let mut values = std::collections::BTreeMap::new();
    for p in params {
        let Some((name, value)) = p.split_once('=') else {
            bail!("--param `{p}`: expected NAME=VALUE");
        };
        values.insert(name.trim().to_owned(), value.to_owned());
    }
    let mut used = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let rest = &text[i..];
        // String literals and comments are copied as they are.
        let skip = if c == '\'' {
            Some(rest[1..].find('\'').map_or(rest.len(), |e| e + 2))
        } else if rest.starts_with("--") {
            Some(rest.find('\n').unwrap_or(rest.len()))
        } else if rest.starts_with("::") {
            Some(2)
        } else {
            None
        };
        if let Some(n) = skip {
            out.push_str(&rest[..n]);
            i += n;
            continue;
        }
        if c == ':' {
            let after = &rest[1..];
            let (quoted, body) = match after.strip_prefix('\'') {
                Some(b) => (true, b),
                None => (false, after),
            };
            let len = body
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(body.len());
            let name = &body[..len];
            let closes = !quoted || body[len..].starts_with('\'');
            if !name.is_empty() && closes && !name.starts_with(|c: char| c.is_ascii_digit()) {
                let Some(value) = values.get(name) else {
                    bail!("the statement uses :{name} but no --param {name}=… was given");
                };
                if quoted {
                    out.push('\'');
                    out.push_str(&value.replace('\'', "''"));
                    out.push('\'');
                } else {
                    if value.trim().parse::<f64>().is_err() {
                        bail!(
                            "--param {name}: `:{name}` takes a number; write `:'{name}'` for text"
                        );
                    }
                    out.push_str(value.trim());
                }
                used.insert(name.to_owned());
                i += 1 + usize::from(quoted) * 2 + len;
                continue;
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    if let Some(unused) = values.keys().find(|k| !used.contains(*k)) {
        bail!("--param {unused} is not used by the statement");
    }
    Ok(out)
}

/// `custos serve`: the HTTP API and the PostgreSQL endpoint over a store,
/// without consuming anything.
pub async fn serve(config: Config) -> Result<i32> {
    let users = Arc::new(Users::from_config(&config.api));
    let store = Store::open_existing_with(
        &config.store.path,
        config.store.segment_key().map_err(anyhow::Error::msg)?,
    )
    .with_context(|| format!("cannot open the store {}", config.store.path.display()))?;
    let shutdown = crate::terminated();
    let engine = engine_for(&config, store.clone())?;
    let tls = config.api.tls().map_err(anyhow::Error::msg)?;
    let http: std::net::SocketAddr = config.http.listen.parse()?;
    let bound = custos::http::serve(
        http,
        Some(store),
        custos::http::Api {
            users: users.clone(),
            engine: Some(engine.clone()),
        },
        tls.clone(),
    )
    .await
    .with_context(|| format!("cannot listen on {http}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%bound, "SQL on {scheme}://{bound}/v1/sql");
    if !config.api.pg_listen.is_empty() {
        let addr: std::net::SocketAddr = config.api.pg_listen.parse()?;
        let bound = custos::query::pg::serve(addr, engine.clone(), users, tls)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(%bound, "PostgreSQL endpoint on {bound}");
    }
    shutdown.await;
    if let Err(e) = engine.sign_log() {
        tracing::warn!(error = %e, "cannot sign the query log's last entries; the next start signs them");
    }
    Ok(0)
}

/// The query log of `store`: a `+queries/<n>` chain, its entries signed
/// with the configuration's checkpoint key (if any) at most every
/// `sign_every`.
fn query_log(store: Store, config: Option<&Config>, sign_every: Duration) -> Result<QueryLog> {
    let signer = match config {
        Some(c) => c.checkpoints.signer().map_err(anyhow::Error::msg)?,
        None => None,
    };
    Ok(QueryLog::open(
        store,
        signer.map(|s| (Arc::new(s), sign_every)),
    ))
}

/// The query engine of a configuration: its store (opened by the caller,
/// where the query log is kept), keys, reference tables (reloaded as the
/// pipeline's are) and limits.
pub fn engine_for(config: &Config, store: Store) -> Result<QueryEngine> {
    let log = query_log(
        store,
        Some(config),
        Duration::from_secs(config.checkpoints.interval_secs),
    )?;
    let pseudo = Pseudonymizer::new(&config.privacy.key().map_err(anyhow::Error::msg)?);
    let (watch, _) =
        custos::detect::reference::ReferenceWatch::new(config.reference.clone(), pseudo.clone())
            .context("cannot load the reference tables")?;
    let watch = Mutex::new(watch);
    let reference: ReferenceSource = Arc::new(move || {
        let mut w = watch.lock().unwrap_or_else(|p| p.into_inner());
        if w.due(Instant::now()) {
            let _ = w.reload_if_changed();
        }
        w.current()
    });
    Ok(QueryEngine::new(
        config.store.path.clone(),
        config.store.segment_key().map_err(anyhow::Error::msg)?,
        Some(pseudo),
        Some(reference),
        Limits::from_config(&config.api),
        log,
    )?)
}

/// `custos hash-secret`: reads a secret on stdin and prints the
/// `token_sha256` and `password_sha256` lines of a user entry.
pub fn hash_secret(salt: Option<String>) -> Result<i32> {
    let mut secret = String::new();
    std::io::stdin().read_to_string(&mut secret)?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("give the secret on stdin");
    }
    let salt = salt.unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
    println!(
        "token_sha256 = \"{}\"",
        custos::query::auth::hash_token(secret)
    );
    println!(
        "password_sha256 = \"{}\"",
        custos::query::auth::hash_password(&salt, secret)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::bind_params;

    #[test]
    fn params_are_bound_as_literals() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            bind_params(
                "SELECT * FROM access WHERE patient = pseudonym(:'patient') AND x::int > :n",
                &p(&["patient=MRN-1", "n=3"])
            )
            .unwrap(),
            "SELECT * FROM access WHERE patient = pseudonym('MRN-1') AND x::int > 3"
        );
        assert_eq!(
            bind_params("SELECT :'a'", &p(&["a=O'Brien"])).unwrap(),
            "SELECT 'O''Brien'"
        );
        assert!(bind_params("SELECT :'a'", &[]).is_err());
        assert!(bind_params("SELECT 1", &p(&["a=1"])).is_err());
        assert!(bind_params("SELECT :n", &p(&["n=1; DROP"])).is_err());
        assert_eq!(
            bind_params("SELECT '12:30 :x' -- :y\n", &[]).unwrap(),
            "SELECT '12:30 :x' -- :y\n"
        );
    }
}
