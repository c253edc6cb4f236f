//! Configuration: one TOML file, every key overridable by `CUSTOS_*`
//! environment variables and by `--set key=value` flags.
//!
//! Precedence, lowest first: built-in defaults, the file, the environment,
//! flags. Parsing refuses unknown keys; [`Config::load`] then validates
//! everything and reports every problem at once (`custos check-config`).
//! Secrets (the pseudonym key) are wrapped in [`Secret`], whose `Debug`
//! never shows them.

mod api;
mod overrides;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alert::{IncidentConfig, OutboxConfig, SinkConfig};
use crate::detect::DetectorConfig;
use crate::detect::reference::ReferenceConfig;
use crate::detect::sql::SqlDetectorsConfig;
use crate::ledger::HashAlg;
use crate::ledger::checkpoint::NoteSigner;

pub use api::{ApiConfig, ApiUser};
pub use overrides::{apply_env, apply_set};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub events: EventsConfig,
    pub kafka: KafkaConfig,
    pub privacy: PrivacyConfig,
    pub checkpoints: CheckpointsConfig,
    pub http: HttpConfig,
    /// Users, roles and query limits of the SQL surfaces.
    pub api: ApiConfig,
    /// Reference tables (VIPs, roster, care teams, consents, export
    /// allow-list, personal links) and their files.
    pub reference: ReferenceConfig,
    pub detectors: Vec<DetectorConfig>,
    pub sql_detectors: SqlDetectorsConfig,
    /// How findings are correlated into incidents.
    pub incidents: IncidentConfig,
    /// The durable outbox between incidents and sinks.
    pub outbox: OutboxConfig,
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The store folder (created if missing).
    pub path: PathBuf,
    /// A chain's buffer is made durable when it holds this many records…
    pub flush_rows: usize,
    /// …or when its oldest record has waited this long.
    pub flush_interval_ms: u64,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Hash function of a new store's Merkle trees: `blake3` or `sha256`
    /// (RFC 6962 tooling). An existing store keeps its own.
    pub hash: String,
    /// Origin (log name prefix in checkpoints) of a new store; empty makes
    /// `custos/<random id>`. An existing store keeps its own.
    pub origin: String,
    /// Whether flushes fsync (default true). `false` is for measuring what
    /// durability costs, never for production: a power loss can then lose
    /// rows whose offsets were committed.
    pub fsync: bool,
    /// Seconds between snapshots of a partition's detector state (one is
    /// also written on every revoke and at shutdown); a new owner restores
    /// the newest and replays the stored events after it.
    pub snapshot_interval_secs: u64,
    /// Stored events replayed into a partition's detectors at most when it
    /// is opened without a usable snapshot (the newest ones).
    pub replay_max_events: u64,
    /// Days a flush's segments are kept after its newest event; 0 keeps
    /// them forever. The owner of a chain prunes it when it opens it and
    /// then hourly; `custos prune` does it for chains nobody owns. Leaf
    /// hashes are kept, so checkpoints and proofs still hold.
    pub retention_days: u64,
    /// 64 hex digits of key material: new segments are encrypted (Parquet
    /// modular encryption, AES-256-GCM, encrypted footer) under a key
    /// derived from it, and encrypted segments read with it. Unset:
    /// segments are written in plaintext.
    pub encryption_key: Option<Secret>,
    /// Or a file holding them.
    pub encryption_key_file: Option<PathBuf>,
    /// In a bucket (`path = "s3://bucket/prefix"`): seconds a chain
    /// writer's lease lasts without renewal; the writer renews it at every
    /// flush, and after a crash another process takes the chain over once
    /// it has expired. Safety does not depend on it (every append is a
    /// conditional write), only how soon a dead writer's chain moves.
    pub lease_secs: u64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointsConfig {
    /// Seconds between signed checkpoints of a log that grew (one is also
    /// written when a partition is revoked and at shutdown).
    pub interval_secs: u64,
    /// The signer key text (`PRIVATE+KEY+…`, from `custos keygen
    /// --checkpoint NAME`); or:
    pub key: Option<Secret>,
    /// a file holding it. Neither: no checkpoints are written.
    pub key_file: Option<PathBuf>,
}

impl Default for CheckpointsConfig {
    fn default() -> Self {
        CheckpointsConfig {
            interval_secs: 60,
            key: None,
            key_file: None,
        }
    }
}

impl fmt::Debug for CheckpointsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointsConfig")
            .field("interval_secs", &self.interval_secs)
            .field("key", &self.key)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl CheckpointsConfig {
    /// The signer, if one is configured.
    pub fn signer(&self) -> Result<Option<NoteSigner>, String> {
        let text = match (&self.key, &self.key_file) {
            (None, None) => return Ok(None),
            (Some(k), None) => k.0.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("checkpoints.key_file {}: {e}", path.display()))?,
            (Some(_), Some(_)) => {
                return Err("set only one of checkpoints.key and checkpoints.key_file".into());
            }
        };
        NoteSigner::parse(&text)
            .map(Some)
            .map_err(|e| format!("checkpoints key: {e}"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events timed further than this after the wall clock are refused
    /// (`invalid_time`); 0 accepts any time.
    pub max_future_secs: u64,
    /// An event whose `id` the same partition stored within this many
    /// seconds of event time is a producer retry: it is kept as a
    /// `duplicate_id` reject, not stored twice. 0 turns this off.
    pub dedup_window_secs: u64,
    /// Ids remembered per partition at most (about 50 bytes each).
    pub dedup_max_ids: usize,
    /// Input lengths of models, by `id@version` (e.g.
    /// `"tumour-malignancy@1.0" = 30`): an inference whose `input.features`
    /// has another length is refused. A model not named here takes the
    /// length of the first input each partition sees for it.
    pub model_features: std::collections::HashMap<String, usize>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_future_secs: 86_400,
            dedup_window_secs: 600,
            dedup_max_ids: 200_000,
            model_features: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// Rejected messages are copied here (with their reason in headers);
    /// empty disables the copy (they are always kept in the store).
    pub dead_letter_topic: String,
    /// Messages buffered between the consumer thread and the pipeline.
    pub channel_capacity: usize,
    /// Extra librdkafka properties, passed through as they are.
    pub client: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// 64 hex digits: the secret behind patient pseudonyms.
    pub pseudonym_key: Option<Secret>,
    /// Or a file holding them.
    pub pseudonym_key_file: Option<PathBuf>,
    /// Use the public demo key (for demos and tests only).
    pub demo_key: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    /// `host:port`; port 0 picks a free one.
    pub listen: String,
    /// This API's base URL as responders reach it (links to incidents in
    /// alerts); empty: `http://<listen>`.
    pub external_url: String,
}

/// A string that never appears in `Debug` output, logs or errors.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for PrivacyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivacyConfig")
            .field("pseudonym_key", &self.pseudonym_key)
            .field("pseudonym_key_file", &self.pseudonym_key_file)
            .field("demo_key", &self.demo_key)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreConfig::default(),
            events: EventsConfig::default(),
            kafka: KafkaConfig::default(),
            privacy: PrivacyConfig::default(),
            checkpoints: CheckpointsConfig::default(),
            http: HttpConfig::default(),
            api: ApiConfig::default(),
            reference: ReferenceConfig::default(),
            detectors: {
                let mut all = DetectorConfig::access_defaults();
                all.push(DetectorConfig::ModelAbuse(Default::default()));
                all
            },
            sql_detectors: SqlDetectorsConfig::default(),
            incidents: IncidentConfig::default(),
            outbox: OutboxConfig::default(),
            sinks: vec![SinkConfig::default()],
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("custos-store"),
            flush_rows: 50_000,
            flush_interval_ms: 1_000,
            zstd_level: 3,
            row_group_rows: 65_536,
            hash: "blake3".into(),
            origin: String::new(),
            fsync: true,
            snapshot_interval_secs: 60,
            replay_max_events: 1_000_000,
            retention_days: 0,
            encryption_key: None,
            encryption_key_file: None,
            lease_secs: 10,
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "custos".into(),
            topics: vec!["custos.events".into()],
            dead_letter_topic: "custos.dead-letter".into(),
            channel_capacity: 20_000,
            client: Default::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            external_url: String::new(),
        }
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

impl Config {
    /// Defaults, then the file (if any), then `CUSTOS_*` variables, then
    /// `key=value` overrides; parsed strictly and validated.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut tree = toml::Value::try_from(Config::default()).expect("defaults serialize");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            match text.parse::<toml::Table>() {
                Ok(table) => merge(&mut tree, toml::Value::Table(table)),
                Err(e) => problems.push(format!("{}: {}", path.display(), e.message())),
            }
        }
        apply_env(&mut tree, env, &mut problems);
        apply_set(&mut tree, sets, &mut problems);
        let config = match Config::deserialize(tree) {
            Ok(c) => c,
            Err(e) => {
                problems.push(e.message().to_owned());
                return Err(ConfigError::Invalid(problems));
            }
        };
        config.validate(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// What the alert stage is built from.
    pub fn alert_setup(&self) -> crate::alert::AlertSetup {
        let external_url = if self.http.external_url.is_empty() {
            format!("http://{}", self.http.listen)
        } else {
            self.http.external_url.clone()
        };
        crate::alert::AlertSetup {
            incidents: self.incidents.clone(),
            outbox: self.outbox.clone(),
            outbox_dir: self
                .outbox
                .dir
                .clone()
                .unwrap_or_else(|| self.store.path.join("outbox")),
            sinks: self.sinks.clone(),
            context: crate::alert::BuildContext {
                kafka_brokers: self.kafka.brokers.clone(),
                kafka_client: self.kafka.client.clone(),
                external_url,
            },
        }
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let s = &self.store;
        if s.path.as_os_str().is_empty() {
            problems.push("store.path must not be empty".into());
        }
        if s.flush_rows == 0 {
            problems.push("store.flush_rows must be at least 1".into());
        }
        if s.flush_interval_ms == 0 {
            problems.push("store.flush_interval_ms must be at least 1".into());
        }
        if !(1..=22).contains(&s.zstd_level) {
            problems.push("store.zstd_level must be between 1 and 22".into());
        }
        if s.row_group_rows == 0 {
            problems.push("store.row_group_rows must be at least 1".into());
        }
        if HashAlg::from_name(&s.hash).is_none() {
            problems.push(format!(
                "store.hash `{}` must be `blake3` or `sha256`",
                s.hash
            ));
        }
        if !s.origin.is_empty() && !crate::ledger::valid_origin(&s.origin) {
            problems.push(format!(
                "store.origin `{}` must be at most 200 bytes without spaces or `+`",
                s.origin
            ));
        }
        if s.replay_max_events == 0 {
            problems.push("store.replay_max_events must be at least 1".into());
        }
        if s.retention_days > 365 * 1000 {
            problems.push("store.retention_days must be at most 365000".into());
        }
        if !(1..=3600).contains(&s.lease_secs) {
            problems.push("store.lease_secs must be 1 to 3600".into());
        }
        if s.snapshot_interval_secs == 0 {
            problems.push("store.snapshot_interval_secs must be at least 1".into());
        }
        if self.events.dedup_window_secs > 0 && self.events.dedup_max_ids == 0 {
            problems.push(
                "events.dedup_max_ids must be at least 1 (or set events.dedup_window_secs = 0)"
                    .into(),
            );
        }
        if self.checkpoints.interval_secs == 0 {
            problems.push("checkpoints.interval_secs must be at least 1".into());
        }
        if let Err(e) = self.checkpoints.signer() {
            problems.push(e);
        }
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            problems.push("kafka.brokers must not be empty".into());
        }
        if k.group_id.trim().is_empty() {
            problems.push("kafka.group_id must not be empty".into());
        }
        if k.topics.is_empty() {
            problems.push("kafka.topics must name at least one topic".into());
        }
        for t in k.topics.iter().chain(Some(&k.dead_letter_topic)) {
            if !t.is_empty() && !valid_topic(t) {
                problems.push(format!(
                    "kafka topic `{t}` is not a valid name (letters, digits, `.`, `_`, `-`; at most 249)"
                ));
            }
        }
        for key in k.client.keys() {
            if crate::source::kafka::RESERVED_PROPERTIES.contains(&key.as_str()) {
                problems.push(format!(
                    "kafka.client.`{key}` is set by custos itself (the commit protocol depends on it)"
                ));
            }
        }
        if k.channel_capacity == 0 {
            problems.push("kafka.channel_capacity must be at least 1".into());
        }
        if let Err(e) = self.privacy.key() {
            problems.push(e);
        }
        if self.http.enabled && self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "http.listen `{}` is not an address like 127.0.0.1:9464",
                self.http.listen
            ));
        }
        for (model, &n) in &self.events.model_features {
            if !(1..=4096).contains(&n) || !model.contains('@') {
                problems.push(format!(
                    "events.model_features.`{model}` must name a model as id@version and 1 to 4096 features"
                ));
            }
        }
        self.api.validate(problems);
        self.reference.validate("reference", problems);
        for (i, d) in self.detectors.iter().enumerate() {
            d.validate(&format!("detectors[{i}]"), problems);
        }
        self.sql_detectors.validate("sql_detectors", problems);
        self.incidents.validate("incidents", problems);
        self.outbox.validate("outbox", problems);
        if self.outbox.dir.is_none() && self.store.path.to_string_lossy().starts_with("s3://") {
            problems.push(
                "outbox.dir must be set (a local folder) when the store is in a bucket".into(),
            );
        }
        let mut names = Vec::new();
        for (i, s) in self.sinks.iter().enumerate() {
            s.validate(&format!("sinks[{i}]"), problems);
            let name = s.name();
            if names.contains(&name) {
                problems.push(format!(
                    "sinks[{i}]: another sink is named `{name}`: give each a distinct `name`"
                ));
            }
            names.push(name);
        }
    }
}

impl PrivacyConfig {
    /// The pseudonym key from whichever place configures it.
    pub fn key(&self) -> Result<crate::event::PseudonymKey, String> {
        use crate::event::PseudonymKey;
        let from = |text: &str, place: &str| {
            PseudonymKey::from_hex(text).map_err(|e| format!("{place}: {e}"))
        };
        match (&self.pseudonym_key, &self.pseudonym_key_file, self.demo_key) {
            (Some(k), None, false) => from(&k.0, "privacy.pseudonym_key"),
            (None, Some(path), false) => match std::fs::read_to_string(path) {
                Ok(text) => from(&text, "privacy.pseudonym_key_file"),
                Err(e) => Err(format!(
                    "privacy.pseudonym_key_file {}: {e}",
                    path.display()
                )),
            },
            (None, None, true) => Ok(PseudonymKey::demo()),
            (None, None, false) => Err("privacy.pseudonym_key is not set: set it, \
                 CUSTOS_PRIVACY_PSEUDONYM_KEY, or privacy.pseudonym_key_file \
                 (`custos keygen` makes one)"
                .into()),
            _ => Err(
                "set only one of privacy.pseudonym_key, privacy.pseudonym_key_file and privacy.demo_key"
                    .into(),
            ),
        }
    }
}

fn valid_topic(t: &str) -> bool {
    t.len() <= 249
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Recursively overlays `top` onto `base` (tables merge, anything else
/// replaces).
fn merge(base: &mut toml::Value, top: toml::Value) {
    match (base, top) {
        (toml::Value::Table(b), toml::Value::Table(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests;

impl StoreConfig {
    /// The store options this section asks for (call after validation).
    pub fn options(&self) -> crate::ledger::StoreOptions {
        crate::ledger::StoreOptions {
            zstd_level: self.zstd_level,
            row_group_rows: self.row_group_rows,
            hash: HashAlg::from_name(&self.hash).unwrap_or(HashAlg::Blake3),
            origin: (!self.origin.is_empty()).then(|| self.origin.clone()),
            fsync: self.fsync,
            // Set by whoever holds the key (`custos` sets it from `privacy`).
            pseudonym_key_id: None,
            // Set from `segment_key`, which reads a file.
            encryption: None,
            lease: std::time::Duration::from_secs(self.lease_secs),
        }
    }

    /// The segment encryption key, if one is configured.
    pub fn segment_key(&self) -> Result<Option<crate::ledger::SegmentKey>, String> {
        use crate::ledger::SegmentKey;
        // An empty value (e.g. `CUSTOS_STORE_ENCRYPTION_KEY=`) is unset.
        let key = self
            .encryption_key
            .as_ref()
            .filter(|k| !k.0.trim().is_empty());
        let file = self
            .encryption_key_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty());
        match (key, file) {
            (None, None) => Ok(None),
            (Some(k), None) => SegmentKey::from_hex(&k.0)
                .map(Some)
                .map_err(|e| format!("store.encryption_key: {e}")),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => SegmentKey::from_hex(&text)
                    .map(Some)
                    .map_err(|e| format!("store.encryption_key_file {}: {e}", path.display())),
                Err(e) => Err(format!("store.encryption_key_file {}: {e}", path.display())),
            },
            (Some(_), Some(_)) => {
                Err("set only one of store.encryption_key and store.encryption_key_file".into())
            }
        }
    }
}
