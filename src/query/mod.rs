//! Read-only SQL over the ledger with DataFusion.
//!
//! Registers the store's Parquet segments as tables (`events`, `rejects`)
//! and runs one statement. Only queries are allowed: DDL, DML and
//! statements such as `SET` are refused by DataFusion's SQL options before
//! planning. Queries run on their own runtime so they never hold up the
//! pipeline's threads.

use std::path::Path;

use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::execution::context::{SQLOptions, SessionContext};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("the store {0} has no such folder; has anything been ingested?")]
    NoStore(String),
}

/// The tables a store exposes, by folder.
pub const TABLES: &[&str] = &["events", "rejects"];

/// A session with the store's tables registered.
pub async fn session(store: &Path) -> Result<SessionContext, QueryError> {
    if !store.is_dir() {
        return Err(QueryError::NoStore(store.display().to_string()));
    }
    let ctx = SessionContext::new();
    for table in TABLES {
        let dir = store.join(table);
        if !dir.is_dir() {
            continue;
        }
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let url = format!(
            "{}/",
            dir.canonicalize()
                .map_err(datafusion::error::DataFusionError::IoError)?
                .display()
        );
        ctx.register_listing_table(*table, &url, options, None, None)
            .await?;
    }
    Ok(ctx)
}

/// Runs one read-only statement.
pub async fn run(store: &Path, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = session(store).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await?;
    Ok(df.collect().await?)
}
