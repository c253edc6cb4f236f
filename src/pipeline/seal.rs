//! A rejected message's bytes as the pipeline hands them to the ledger:
//! sealed under the deployment's reject key (see `event::RejectSealer`),
//! so a malformed message that carries a raw identifier puts only
//! ciphertext on disk. The ledger stores them opaquely and records the
//! seal label.

use std::sync::Once;

use crate::event::{RejectSealer, SealError, SealedPart};
use crate::ledger::RejectBytes;

/// The stored form of one rejected message.
pub(super) enum StoredReject<'a> {
    Sealed {
        label: &'a str,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
    /// No sealer was configured (library users and tests; the `custos`
    /// binary always configures one).
    Received {
        key: Option<&'a [u8]>,
        payload: &'a [u8],
    },
}

impl StoredReject<'_> {
    pub(super) fn bytes(&self) -> RejectBytes<'_> {
        match self {
            StoredReject::Sealed {
                label,
                key,
                payload,
            } => RejectBytes::sealed(label, key.as_deref(), payload),
            StoredReject::Received { key, payload } => RejectBytes::received(*key, payload),
        }
    }
}

/// Seals a rejected message's key (if any) and payload with `sealer`; with
/// none, keeps them as received and warns once.
pub(super) fn seal<'a>(
    sealer: Option<&'a RejectSealer>,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
) -> Result<StoredReject<'a>, SealError> {
    let Some(sealer) = sealer else {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "no reject sealer configured: rejected messages are stored as received, \
                 raw identifiers included"
            );
        });
        return Ok(StoredReject::Received { key, payload });
    };
    Ok(StoredReject::Sealed {
        label: sealer.label(),
        key: key.map(|k| sealer.seal(SealedPart::Key, k)).transpose()?,
        payload: sealer.seal(SealedPart::Payload, payload)?,
    })
}
