//! Segments encrypted at rest: Parquet modular encryption with AES-256-GCM
//! and an encrypted footer, so that a segment's pages, statistics, schema
//! and metadata are all ciphertext (`docs/ledger-format.md`, section 17).
//!
//! The deployment configures 32 bytes of key material
//! (`store.encryption_key`); the Parquet key is
//! `BLAKE3-derive_key("custos 2026-11 segment encryption v1", material)`.
//! Its key id (`sk1-` and 8 hex digits) is in the manifest line of every
//! segment encrypted with it and in the segment's footer key metadata, so
//! a reader knows which key a segment needs without trying it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;

use super::error::LedgerError;

const SEGMENT_KEY_CONTEXT: &str = "custos 2026-11 segment encryption v1";

/// The key segments are encrypted with. Never printed.
#[derive(Clone)]
pub struct SegmentKey {
    key: [u8; 32],
    id: String,
}

impl fmt::Debug for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentKey({}, <redacted>)", self.id)
    }
}

impl SegmentKey {
    /// The key made from 32 bytes of key material.
    pub fn from_material(material: &[u8; 32]) -> Self {
        let key = blake3::derive_key(SEGMENT_KEY_CONTEXT, material);
        SegmentKey {
            id: crate::event::key_id("sk1", &key),
            key,
        }
    }

    /// The key made from 64 hex digits of key material (surrounding
    /// whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let wrong =
            || "the key must be 64 hex digits (32 bytes; `custos keygen` makes them)".to_owned();
        let bytes = hex::decode(text.trim()).map_err(|_| wrong())?;
        let material: [u8; 32] = bytes.try_into().map_err(|_| wrong())?;
        Ok(SegmentKey::from_material(&material))
    }

    /// `sk1-` and 8 hex digits: names the key, never reveals it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The Parquet key in hex (what DataFusion's decryption options take).
    pub fn parquet_key_hex(&self) -> String {
        hex::encode(self.key)
    }

    pub(crate) fn encryption(
        &self,
        path: &Path,
    ) -> Result<Arc<FileEncryptionProperties>, LedgerError> {
        FileEncryptionProperties::builder(self.key.to_vec())
            .with_footer_key_metadata(self.id.as_bytes().to_vec())
            .build()
            .map_err(|e| LedgerError::parquet(path, e))
    }

    pub(crate) fn decryption(
        &self,
        path: &Path,
    ) -> Result<Arc<FileDecryptionProperties>, LedgerError> {
        FileDecryptionProperties::builder(self.key.to_vec())
            .build()
            .map_err(|e| LedgerError::parquet(path, e))
    }
}
