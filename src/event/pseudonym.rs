//! Keyed pseudonyms for patient identifiers, and the keys of model input
//! sketches.
//!
//! A pseudonym is `pt_` followed by 32 hex digits: the first 128 bits of
//! BLAKE3 in keyed mode, under a key derived from the deployment's secret
//! with the context `custos 2026-11 patient pseudonym v1`. Without the
//! secret a pseudonym cannot be recomputed from a guessed identifier (MRNs
//! are short and guessable, so an unkeyed hash would not protect them).
//! The same identifier always maps to the same pseudonym under one secret,
//! so joins and detectors work on pseudonyms alone.
//!
//! Each key has a **key id** (`pk1-` and 8 hex digits for the pseudonym
//! key): 32 bits of a BLAKE3 `derive_key` of the key under a context of its
//! own. It names the key in segment metadata, sealed rejects and logs so
//! keys can rotate; it never is the key, and testing a guessed key against
//! it costs a BLAKE3 hash per guess, like any hash of the key would.

use std::fmt;

const PATIENT_CONTEXT: &str = "custos 2026-11 patient pseudonym v1";
const KEY_ID_CONTEXT: &str = "custos 2026-11 key id v1";
const SKETCH_CONTEXT: &str = "custos 2026-11 input sketch v1";

/// The key id of a 32-byte key: `<prefix>-` and the first 4 bytes, in hex,
/// of `BLAKE3-derive_key("custos 2026-11 key id v1", key)`.
pub(crate) fn key_id(prefix: &str, key: &[u8; 32]) -> String {
    let digest = blake3::derive_key(KEY_ID_CONTEXT, key);
    format!("{prefix}-{}", hex::encode(&digest[..4]))
}

/// The deployment secret (32 bytes). Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PseudonymKey(bytes)
    }

    /// Parses 64 hex digits. The error never contains the input.
    pub fn from_hex(text: &str) -> Result<Self, &'static str> {
        let bytes = hex::decode(text.trim()).map_err(|_| "the key must be 64 hex digits")?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the key must be 64 hex digits (32 bytes)")?;
        Ok(PseudonymKey(bytes))
    }

    /// A fixed, publicly known key for demos and tests only.
    pub fn demo() -> Self {
        PseudonymKey(*blake3::hash(b"custos demo key - not for production").as_bytes())
    }

    /// The secret, for deriving the other keys of this module.
    pub(super) fn secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// Derives pseudonyms and sketch keys; cheap to clone.
#[derive(Clone)]
pub struct Pseudonymizer {
    patient_key: [u8; 32],
    sketch_keys: super::sketch::SketchKeys,
    key_id: String,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer(<redacted>)")
    }
}

impl Pseudonymizer {
    pub fn new(key: &PseudonymKey) -> Self {
        Pseudonymizer {
            patient_key: blake3::derive_key(PATIENT_CONTEXT, &key.0),
            sketch_keys: {
                let k = blake3::derive_key(SKETCH_CONTEXT, &key.0);
                let word = |i: usize| {
                    u64::from_le_bytes(k[8 * i..8 * i + 8].try_into().unwrap_or_default())
                };
                super::sketch::SketchKeys {
                    window: word(0),
                    plane: word(1),
                    exact: word(2),
                }
            },
            key_id: key_id("pk1", &key.0),
        }
    }

    /// The id of the pseudonym key (`pk1-` and 8 hex digits): which key
    /// made the pseudonyms, without revealing it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The keys of input sketches (see [`super::sketch`]).
    pub fn sketch_keys(&self) -> super::sketch::SketchKeys {
        self.sketch_keys
    }

    /// The stored pseudonym of a raw patient identifier.
    pub fn patient(&self, raw: &str) -> String {
        let hash = blake3::keyed_hash(&self.patient_key, raw.as_bytes());
        let mut out = String::with_capacity(35);
        out.push_str("pt_");
        // `hex::encode` goes through a `char` iterator; this is a table.
        let mut digits = [0u8; 32];
        hex::encode_to_slice(&hash.as_bytes()[..16], &mut digits).expect("two digits a byte");
        out.push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
        out
    }

    /// A lineage reference with any patient identifier pseudonymized:
    /// `patient:<id>` and FHIR-style `Patient/<id>` both become
    /// `patient:<pseudonym>`.
    pub fn reference(&self, raw: &str) -> String {
        match raw
            .strip_prefix("patient:")
            .or_else(|| raw.strip_prefix("Patient/"))
        {
            Some(id) => format!("patient:{}", self.patient(id)),
            None => raw.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_opaque() {
        let a = Pseudonymizer::new(&PseudonymKey::demo());
        let b = Pseudonymizer::new(&PseudonymKey::from_bytes([7; 32]));
        let p = a.patient("MRN-200117");
        assert_eq!(p, a.patient("MRN-200117"));
        assert_ne!(p, a.patient("MRN-200118"));
        assert_ne!(p, b.patient("MRN-200117"), "another key, another pseudonym");
        assert!(p.starts_with("pt_") && p.len() == 35);
        assert!(!p.contains("200117"));
    }

    #[test]
    fn only_patient_references_are_rewritten() {
        let a = Pseudonymizer::new(&PseudonymKey::demo());
        assert_eq!(a.reference("dataset:cohort-42"), "dataset:cohort-42");
        let r = a.reference("patient:MRN-1");
        assert_eq!(r, format!("patient:{}", a.patient("MRN-1")));
        assert_eq!(a.reference("Patient/MRN-1"), r);
    }

    #[test]
    fn sketches_ignore_float_noise_but_not_real_changes() {
        use super::super::sketch::sketch_unscaled;
        let keys = Pseudonymizer::new(&PseudonymKey::demo()).sketch_keys();
        let f = sketch_unscaled(&keys, &[38.9, 112.0, 0.8]);
        assert_eq!(f, sketch_unscaled(&keys, &[38.900001, 112.0000003, 0.8]));
        assert_ne!(f.exact, sketch_unscaled(&keys, &[39.9, 112.0, 0.8]).exact);
        let other = Pseudonymizer::new(&PseudonymKey::from_bytes([7; 32])).sketch_keys();
        assert_ne!(f, sketch_unscaled(&other, &[38.9, 112.0, 0.8]));
    }

    #[test]
    fn key_ids_are_stable_distinct_and_not_the_key() {
        let demo = Pseudonymizer::new(&PseudonymKey::demo());
        let other = Pseudonymizer::new(&PseudonymKey::from_bytes([7; 32]));
        let id = demo.key_id();
        assert_eq!(id, Pseudonymizer::new(&PseudonymKey::demo()).key_id());
        assert_ne!(id, other.key_id());
        assert!(id.starts_with("pk1-") && id.len() == 12, "{id}");
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        let secret = hex::encode(PseudonymKey::demo().secret());
        assert!(
            !secret.contains(&id[4..]),
            "the id is not a piece of the key"
        );
        assert_eq!(key_id("pk1", &[7; 32]), other.key_id());
    }

    #[test]
    fn keys_parse_from_hex_and_never_print() {
        let key = PseudonymKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "PseudonymKey(<redacted>)");
        assert!(PseudonymKey::from_hex("abc").is_err());
        assert!(PseudonymKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
