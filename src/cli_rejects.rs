//! `custos rejects show`: stored rejected messages with their reason,
//! detail and original bytes, for an operator who holds the pseudonym key.
//! Wiring only: the ledger reads the rows, `custos::event::RejectSealer`
//! opens them.
//!
//! The store keeps rejected messages sealed (`docs/ledger-format.md`,
//! "Sealed bytes"); this command is the one place custos turns them back
//! into the original bytes, and it prints them on stdout only. A row that
//! does not open (another key, changed bytes) is reported on stderr with
//! the reason and the command exits 1; nothing undecrypted is printed as if
//! it were the message.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Subcommand;
use custos::event::{RejectSealer, SealedPart};
use custos::ledger::{ChainId, Store, StoredReject, Table};

#[derive(Subcommand)]
pub enum RejectsCommand {
    /// Print stored rejects with their reason, detail and original bytes,
    /// unsealed with the configured pseudonym key (`privacy.*`).
    Show {
        #[command(flatten)]
        config: crate::ConfigArgs,
        /// The store folder (default: the configuration's `store.path`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// The chain's stream (Kafka topic, or `+file`); with
        /// `--partition`. Default: every chain.
        #[arg(long, requires = "partition")]
        stream: Option<String>,
        #[arg(long, requires = "stream")]
        partition: Option<i32>,
        /// Only the reject with this seq in its chain's rejects log.
        #[arg(long)]
        seq: Option<u64>,
        /// One JSON object per reject and line; the bytes as a string when
        /// they are UTF-8 (`payload`, `key`), else base64 (`payload_base64`,
        /// `key_base64`).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: RejectsCommand) -> Result<i32> {
    let RejectsCommand::Show {
        config,
        store,
        stream,
        partition,
        seq,
        json,
    } = command;
    let config = crate::load(&config)?;
    let key = config.privacy.key().map_err(anyhow::Error::msg)?;
    let sealer = RejectSealer::new(&key);
    let path = store.unwrap_or_else(|| config.store.path.clone());
    let segment_key = config.store.segment_key().map_err(anyhow::Error::msg)?;
    let store = Store::open_existing_with(&path, segment_key)
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    let chains = match (stream, partition) {
        (Some(stream), Some(partition)) => {
            let chain = ChainId::new(stream, partition);
            chain.validate()?;
            vec![chain]
        }
        _ => store.chains_with(Table::Rejects)?,
    };
    if seq.is_some() && chains.len() != 1 {
        bail!(
            "the store has {} chains: name one with --stream and --partition",
            chains.len()
        );
    }
    let mut out = std::io::stdout().lock();
    let mut failed = 0u64;
    for chain in &chains {
        let shown = store.read_rejects(chain, seq, |reject| -> Result<()> {
            let opened = open(&sealer, &reject);
            if let Err(why) = &opened
                && !reject.erased
            {
                failed += 1;
                eprintln!("error: {} rejects seq {}: {why}", reject.chain, reject.seq);
            }
            let text = if json {
                json_line(&reject, &opened)
            } else {
                text_lines(&reject, &opened)
            };
            match writeln!(out, "{text}") {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        })?;
        if let Some(seq) = seq
            && shown == 0
        {
            let pruned = store.manifest(chain)?.iter().any(|l| {
                l.table == Table::Rejects
                    && l.is_pruned()
                    && (l.first_seq..l.end_seq()).contains(&seq)
            });
            if pruned {
                bail!(
                    "reject seq {seq} of chain {chain} was pruned (retention): only its leaf hash is kept"
                );
            }
            bail!("chain {chain} holds no reject with seq {seq}");
        }
    }
    out.flush()?;
    Ok(if failed == 0 { 0 } else { 1 })
}

/// The original bytes of a reject: (key, payload).
struct Opened {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// Opens a reject's stored bytes (or takes them as they are when the
/// record says they were stored unsealed).
fn open(sealer: &RejectSealer, r: &StoredReject) -> Result<Opened, String> {
    if r.erased {
        return Err("the message was erased (only its leaf hash is kept)".into());
    }
    if !r.matches_record {
        return Err(
            "the stored bytes are not those the record hashes (the store was \
                    changed: run `custos verify`)"
                .into(),
        );
    }
    let open = |label: Option<&String>, part: SealedPart, bytes: &[u8]| match label {
        None => Ok(bytes.to_vec()),
        Some(label) => sealer
            .open(label, part, bytes)
            .map_err(|e| format!("cannot unseal the {}: {e}", part.as_str())),
    };
    let key = match &r.key {
        None => None,
        Some(k) => Some(open(r.key_sealed.as_ref(), SealedPart::Key, k)?),
    };
    let payload = open(r.payload_sealed.as_ref(), SealedPart::Payload, &r.payload)?;
    Ok(Opened { key, payload })
}

/// Bytes for a terminal: UTF-8 text with control characters escaped (a
/// message must not drive the terminal), else base64.
fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
        Err(_) => format!(
            "(not UTF-8) base64:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

fn text_lines(r: &StoredReject, opened: &Result<Opened, String>) -> String {
    let mut text = format!("{} rejects seq {} offset {}", r.chain, r.seq, r.offset);
    if let (Some(file), Some(line)) = (&r.file, r.line) {
        text.push_str(&format!(" ({file} line {line})"));
    }
    text.push_str(&format!(": {}: {}\n", r.reason, r.detail));
    let sealing = |label: &Option<String>| match label {
        Some(label) => format!("sealed {label}"),
        None => "stored unsealed".to_owned(),
    };
    match opened {
        Ok(o) => {
            text.push_str(&format!(
                "  payload ({} bytes, {}): {}",
                o.payload.len(),
                sealing(&r.payload_sealed),
                printable(&o.payload)
            ));
            if let Some(key) = &o.key {
                text.push_str(&format!(
                    "\n  key ({} bytes, {}): {}",
                    key.len(),
                    sealing(&r.key_sealed),
                    printable(key)
                ));
            }
        }
        Err(why) => text.push_str(&format!("  not shown: {why}")),
    }
    text
}

fn json_line(r: &StoredReject, opened: &Result<Opened, String>) -> String {
    let mut m = serde_json::Map::new();
    m.insert("stream".into(), r.chain.stream.clone().into());
    m.insert("partition".into(), r.chain.partition.into());
    m.insert("seq".into(), r.seq.into());
    m.insert("offset".into(), r.offset.into());
    if let (Some(file), Some(line)) = (&r.file, r.line) {
        m.insert("file".into(), file.clone().into());
        m.insert("line".into(), line.into());
    }
    m.insert("reason".into(), r.reason.clone().into());
    m.insert("detail".into(), r.detail.clone().into());
    m.insert("sealed".into(), r.payload_sealed.clone().into());
    let mut bytes = |name: &str, b: &[u8]| match std::str::from_utf8(b) {
        Ok(text) => m.insert(name.into(), text.into()),
        Err(_) => m.insert(
            format!("{name}_base64"),
            base64::engine::general_purpose::STANDARD.encode(b).into(),
        ),
    };
    match opened {
        Ok(o) => {
            bytes("payload", &o.payload);
            if let Some(key) = &o.key {
                bytes("key", key);
            }
        }
        Err(why) => {
            m.insert("error".into(), why.clone().into());
        }
    }
    serde_json::Value::Object(m).to_string()
}
