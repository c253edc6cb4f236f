//! Sealing rejected messages, so raw identifiers they may carry never
//! reach disk.
//!
//! A message the decoder refuses is not pseudonymized (it could not be
//! parsed), so its bytes may hold anything: an MRN, a feature vector. The
//! pipeline seals them before the ledger stores them:
//!
//! - cipher: XChaCha20-Poly1305;
//! - key: `BLAKE3-derive_key("custos 2026-11 reject payload v1", secret)`,
//!   `secret` being the deployment's 32-byte pseudonym key;
//! - nonce: 24 fresh random bytes from the operating system per sealing
//!   (random 192-bit nonces do not repeat in practice, across processes
//!   and restarts, with no counter to keep);
//! - associated data: `custos reject payload` or `custos reject key`, so a
//!   sealed Kafka key cannot pass for a sealed payload;
//! - sealed bytes: `nonce ‖ ciphertext ‖ tag` (24 + n + 16 bytes).
//!
//! The label `xchacha20poly1305:<key id>` (key id `rk1-` + 8 hex digits of
//! the sealing key, made as the pseudonym key's id is) says how and under
//! which key bytes were sealed; the ledger records it and stores the bytes
//! opaquely.
//! Opening needs the same secret and fails with an authentication error,
//! never garbage, under any other key or after any change of the bytes.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::TryRngCore;

use super::PseudonymKey;
use super::pseudonym::key_id;

/// The scheme name in a seal label.
pub const SEAL_SCHEME: &str = "xchacha20poly1305";
const SEAL_CONTEXT: &str = "custos 2026-11 reject payload v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes sealing adds: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Which part of a rejected message is sealed (bound as associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedPart {
    /// The message value.
    Payload,
    /// The Kafka message key.
    Key,
}

impl SealedPart {
    fn aad(self) -> &'static [u8] {
        match self {
            SealedPart::Payload => b"custos reject payload",
            SealedPart::Key => b"custos reject key",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SealedPart::Payload => "payload",
            SealedPart::Key => "key",
        }
    }
}

/// Why bytes could not be sealed or opened. Never quotes the bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the operating system gave no random bytes for a nonce: {0}")]
    Nonce(String),
    #[error("the message is too large to seal")]
    TooLarge,
    #[error(
        "the sealed bytes are {0} bytes long, shorter than a nonce and a tag ({SEAL_OVERHEAD})"
    )]
    Truncated(usize),
    #[error("sealed as {0:?}, which is not `{SEAL_SCHEME}:<key id>`")]
    UnknownScheme(String),
    #[error(
        "sealed under key {sealed_with}, but the configured pseudonym key's reject key is \
         {configured}: configure the pseudonym key that was in use when it was stored"
    )]
    OtherKey {
        sealed_with: String,
        configured: String,
    },
    #[error(
        "the sealed bytes do not open (authentication failed): the key is wrong or the bytes \
         were changed"
    )]
    Authentication,
}

/// Seals and opens rejected messages under the key derived from one
/// pseudonym secret. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct RejectSealer {
    cipher: XChaCha20Poly1305,
    key_id: String,
    label: String,
}

impl fmt::Debug for RejectSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RejectSealer({}, <redacted>)", self.key_id)
    }
}

impl RejectSealer {
    pub fn new(key: &PseudonymKey) -> Self {
        let seal_key = blake3::derive_key(SEAL_CONTEXT, key.secret());
        let key_id = key_id("rk1", &seal_key);
        RejectSealer {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&seal_key)),
            label: format!("{SEAL_SCHEME}:{key_id}"),
            key_id,
        }
    }

    /// The id of the sealing key: `rk1-` and 8 hex digits.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `xchacha20poly1305:<key id>`: what the ledger records of sealed bytes.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plain`, with a fresh random nonce.
    pub fn seal(&self, part: SealedPart, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| SealError::Nonce(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: part.aad(),
                },
            )
            .map_err(|_| SealError::TooLarge)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The original bytes of sealed bytes this key made.
    pub fn unseal(&self, part: SealedPart, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::Truncated(sealed.len()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: part.aad(),
                },
            )
            .map_err(|_| SealError::Authentication)
    }

    /// Opens bytes stored with seal label `label`: the label must name this
    /// scheme and this key, then the bytes must authenticate.
    pub fn open(&self, label: &str, part: SealedPart, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        match label.split_once(':') {
            Some((SEAL_SCHEME, id)) if id == self.key_id => self.unseal(part, sealed),
            Some((SEAL_SCHEME, id)) if !id.is_empty() => Err(SealError::OtherKey {
                sealed_with: id.to_owned(),
                configured: self.key_id.clone(),
            }),
            _ => Err(SealError::UnknownScheme(label.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = br#"{"id":"x","patient":"MRN-7741239"#;

    fn demo() -> RejectSealer {
        RejectSealer::new(&PseudonymKey::demo())
    }

    #[test]
    fn sealed_bytes_open_to_the_original() {
        let s = demo();
        let sealed = s.seal(SealedPart::Payload, MESSAGE).unwrap();
        assert_eq!(sealed.len(), MESSAGE.len() + SEAL_OVERHEAD);
        assert!(
            !sealed.windows(11).any(|w| w == b"MRN-7741239"),
            "the identifier shows through"
        );
        assert_eq!(s.unseal(SealedPart::Payload, &sealed).unwrap(), MESSAGE);
        assert_eq!(
            s.open(s.label(), SealedPart::Payload, &sealed).unwrap(),
            MESSAGE
        );
        // The empty message too.
        let empty = s.seal(SealedPart::Key, b"").unwrap();
        assert_eq!(s.unseal(SealedPart::Key, &empty).unwrap(), b"");
    }

    #[test]
    fn another_key_is_refused() {
        let sealed = demo().seal(SealedPart::Payload, MESSAGE).unwrap();
        let other = RejectSealer::new(&PseudonymKey::from_bytes([7; 32]));
        assert_eq!(
            other.unseal(SealedPart::Payload, &sealed),
            Err(SealError::Authentication)
        );
        let err = other
            .open(demo().label(), SealedPart::Payload, &sealed)
            .unwrap_err();
        assert_eq!(
            err,
            SealError::OtherKey {
                sealed_with: demo().key_id().to_owned(),
                configured: other.key_id().to_owned()
            }
        );
        assert!(err.to_string().contains(demo().key_id()), "{err}");
    }

    #[test]
    fn changed_bytes_are_refused() {
        let s = demo();
        let sealed = s.seal(SealedPart::Payload, MESSAGE).unwrap();
        for at in [0, NONCE_LEN, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                s.unseal(SealedPart::Payload, &bad),
                Err(SealError::Authentication),
                "byte {at} changed"
            );
        }
        assert_eq!(
            s.unseal(SealedPart::Payload, &sealed[..sealed.len() - 1]),
            Err(SealError::Authentication)
        );
        assert_eq!(
            s.unseal(SealedPart::Payload, &sealed[..SEAL_OVERHEAD - 1]),
            Err(SealError::Truncated(SEAL_OVERHEAD - 1))
        );
        // A sealed key does not pass for a sealed payload.
        assert_eq!(
            s.unseal(SealedPart::Key, &sealed),
            Err(SealError::Authentication)
        );
        assert!(matches!(
            s.open("aes:rk1-00000000", SealedPart::Payload, &sealed),
            Err(SealError::UnknownScheme(_))
        ));
    }

    #[test]
    fn every_seal_has_a_fresh_nonce() {
        let s = demo();
        let a = s.seal(SealedPart::Payload, MESSAGE).unwrap();
        let b = s.seal(SealedPart::Payload, MESSAGE).unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a[NONCE_LEN..], b[NONCE_LEN..]);
        let nonces: std::collections::HashSet<Vec<u8>> = (0..1000)
            .map(|_| s.seal(SealedPart::Payload, b"x").unwrap()[..NONCE_LEN].to_vec())
            .collect();
        assert_eq!(nonces.len(), 1000);
    }

    #[test]
    fn key_ids_are_stable_per_key_and_differ_between_keys() {
        let a = demo();
        let b = RejectSealer::new(&PseudonymKey::from_bytes([7; 32]));
        assert_eq!(a.key_id(), demo().key_id());
        assert_ne!(a.key_id(), b.key_id());
        assert!(a.key_id().starts_with("rk1-") && a.key_id().len() == 12);
        assert_eq!(a.label(), format!("xchacha20poly1305:{}", a.key_id()));
        // Not the pseudonym key's id: another key, another id.
        let pseudonyms = super::super::Pseudonymizer::new(&PseudonymKey::demo());
        assert_ne!(a.key_id()[4..], pseudonyms.key_id()[4..]);
        assert!(!format!("{a:?}").contains(&hex::encode(PseudonymKey::demo().secret())));
    }
}
