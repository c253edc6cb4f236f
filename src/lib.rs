//! custos watches who touches patient data and clinical AI models.
//!
//! The pipeline, one module per stage (see `DESIGN.md` in the shared folder
//! and `docs/`):
//!
//! ```text
//! source ──► event (decode, validate, pseudonymize) ──► detect ──► alert
//!    │                  │ rejects                          │
//!    │                  ▼                                  ▼
//!    └── offsets committed after ──────────────────── ledger (Parquet + Merkle trees)
//!                                                          ▲
//!                                              query (DataFusion SQL, read-only)
//! ```
//!
//! `pipeline` wires the stages together for both the Kafka and the file
//! source; `metrics` holds every metric definition; `config` the validated
//! configuration.

pub mod alert;
pub mod config;
pub mod detect;
pub mod event;
pub mod failpoint;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod source;
pub mod tls;
