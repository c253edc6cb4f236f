//! Read-only SQL over the ledger with DataFusion, for every query surface
//! (`custos query`, `POST /v1/sql`, the PostgreSQL endpoint).
//!
//! Tables: `events`, `rejects`, `incidents` and `query_log`, over exactly the segments the chains'
//! manifests name as durable (a segment being written, or left by a crash,
//! is never read); with a [`Reference`] snapshot, also its `ref_*` tables
//! (in memory, see [`crate::detect::reference::tables`]); and the views,
//! `checkpoints` and functions of [`catalog`]. Statements go through
//! [`QueryEngine::execute`]: [`guard`] lets only queries through and checks
//! what each role may read, [`engine`] bounds memory, time and rows, and
//! [`audit::QueryLog`] records who asked what.

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod engine;
pub mod guard;
pub mod pg;

pub use audit::{QueryLog, Surface};
pub use auth::Users;
pub use engine::{Answer, Caller, Limits, QueryEngine, ReferenceSource};
pub use guard::Role;

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SessionContext;

use datafusion::common::config::{ConfigFileDecryptionProperties, TableParquetOptions};

use crate::detect::reference::{Reference, tables};
use crate::ledger::{LedgerError, SegmentKey, Store, Table, table_schema};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(datafusion::error::DataFusionError),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0} is not a custos store (no custos-store.json)")]
    NoStore(String),
    /// Not a query (DDL, DML, `COPY`, `SET`, …) or a table it may not
    /// read: the store is read-only.
    #[error("refused: {0}")]
    Refused(String),
    /// The caller's role may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("query time limit of {0:?} exceeded (api.query_timeout_secs)")]
    TimeLimit(std::time::Duration),
    #[error("query memory limit exceeded (api.query_memory_mb): {0}")]
    MemoryLimit(String),
    #[error("the answer has more than {0} rows (api.max_rows); narrow the query or add LIMIT")]
    TooManyRows(usize),
    /// The query log could not record the statement, so it is not
    /// answered.
    #[error("not answered: the query log cannot record the statement ({0})")]
    Unrecorded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// The class of failure, as `custos_queries_total` counts it.
    pub fn outcome(&self) -> &'static str {
        match self {
            QueryError::Refused(_) => "refused",
            QueryError::Forbidden(_) => "forbidden",
            QueryError::TimeLimit(_) => "time_limit",
            QueryError::MemoryLimit(_) => "memory_limit",
            QueryError::TooManyRows(_) => "too_many_rows",
            QueryError::Unrecorded(_) => "unrecorded",
            _ => "error",
        }
    }

    /// Whether the statement itself is at fault (bad SQL, refused), as
    /// opposed to a limit or a failure of the store.
    pub fn is_bad_statement(&self) -> bool {
        match self {
            QueryError::Refused(_) => true,
            QueryError::DataFusion(e) => matches!(
                e.find_root(),
                datafusion::error::DataFusionError::SQL(..)
                    | datafusion::error::DataFusionError::Plan(_)
                    | datafusion::error::DataFusionError::SchemaError(..)
                    | datafusion::error::DataFusionError::NotImplemented(_)
            ),
            _ => false,
        }
    }
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        if let datafusion::error::DataFusionError::ResourcesExhausted(m) = e.find_root() {
            return QueryError::MemoryLimit(m.clone());
        }
        QueryError::DataFusion(e)
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::DataFusion(e.into())
    }
}

/// A session with the store's tables (`events`, `rejects`) registered;
/// `key` decrypts encrypted segments.
pub async fn session(root: &Path, key: Option<&SegmentKey>) -> Result<SessionContext, QueryError> {
    let ctx = SessionContext::new();
    register_store(&ctx, root, key)?;
    Ok(ctx)
}

/// Registers `events` and `rejects` of the store at `root` on `ctx`.
pub fn register_store(
    ctx: &SessionContext,
    root: &Path,
    key: Option<&SegmentKey>,
) -> Result<Store, QueryError> {
    let bucket = root
        .to_str()
        .is_some_and(crate::ledger::storage::is_bucket_url);
    if !bucket && !root.join("custos-store.json").is_file() {
        return Err(QueryError::NoStore(root.display().to_string()));
    }
    let store = Store::open_existing_with(root, key.cloned())?;
    // Files are named by URL: `file:///…` in a folder, `s3://…` in a
    // bucket, read through the store's own client.
    let url_of: Box<dyn Fn(&str) -> String> = match store.bucket() {
        Some(bucket) => {
            let base = url::Url::parse(&bucket.url_of(""))
                .map_err(|e| LedgerError::InvalidOptions(format!("bucket URL: {e}")))?;
            ctx.register_object_store(&base, bucket.object_store());
            let bucket = bucket.clone();
            Box::new(move |rel| bucket.url_of(rel))
        }
        None => {
            let root = root.canonicalize().map_err(|e| LedgerError::io(root, e))?;
            Box::new(move |rel| root.join(rel).display().to_string())
        }
    };
    let mut files: [Vec<String>; Table::ALL.len()] = Default::default();
    for chain in store.chains()? {
        for line in store
            .manifest(&chain)?
            .into_iter()
            .filter(|l| !l.is_pruned())
        {
            // A segment under another key would fail the whole query later
            // with a less clear error.
            store.check_key(&line)?;
            files[line.table as usize].push(url_of(&line.file));
        }
    }
    for (table, files) in Table::ALL.into_iter().zip(files) {
        register(ctx, table.as_str(), table_schema(table), files, key)?;
    }
    Ok(store)
}

fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    files: Vec<String>,
    key: Option<&SegmentKey>,
) -> Result<(), QueryError> {
    if files.is_empty() {
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(name, Arc::new(empty))?;
        return Ok(());
    }
    let urls = files
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let mut format = ParquetFormat::default();
    if let Some(key) = key {
        let mut options = TableParquetOptions::default();
        options.crypto.file_decryption = Some(ConfigFileDecryptionProperties {
            footer_key_as_hex: key.parquet_key_hex(),
            ..ConfigFileDecryptionProperties::default()
        });
        format = format.with_options(options);
    }
    let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Registers the reference tables (`ref_vip`, `ref_roster`,
/// `ref_care_team`, `ref_consent`, `ref_export_allow`, `ref_links`) of one
/// snapshot.
pub fn register_reference(ctx: &SessionContext, reference: &Reference) -> Result<(), QueryError> {
    for (name, batch) in tables(reference) {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        ctx.register_table(name, Arc::new(table))?;
    }
    Ok(())
}
