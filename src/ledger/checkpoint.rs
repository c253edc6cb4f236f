//! Checkpoints in the C2SP `tlog-checkpoint` text format, signed as C2SP
//! `signed-note`s with Ed25519.
//!
//! ```text
//! <origin>\n                 checkpoint body: origin, tree size in decimal,
//! <size>\n                   root hash in standard base64, each line ending
//! <base64 root>\n            in a newline
//! \n
//! — <key name> <base64(key id ‖ signature)>\n
//! ```
//!
//! The signature covers the body, final newline included. The key id is the
//! first 4 bytes of `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`, 0x01
//! being the Ed25519 signature type. Keys are written as text:
//!
//! - verifier key: `<name>+<hex key id>+<base64(0x01 ‖ public key)>`
//! - signer key:   `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`
//!
//! Parsing never panics: any malformed note, checkpoint or key is an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::Digest;

use super::hash::Hash;

const ED25519: u8 = 0x01;
const DASH: &str = "\u{2014} ";
/// Notes larger than this are refused unread.
const MAX_NOTE_BYTES: usize = 1 << 20;
const MAX_SIGNATURES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed key: {0}")]
    Key(&'static str),
    #[error("malformed note: {0}")]
    Note(&'static str),
    #[error("malformed checkpoint: {0}")]
    Body(&'static str),
    #[error("the note carries no valid signature by key `{0}`")]
    NotSigned(String),
}

/// A tree head: origin (the log's name), size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body (the signed text).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a body; extension lines after the root are not accepted.
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let text = body.strip_suffix('\n').ok_or(CheckpointError::Body(
            "the last line does not end in a newline",
        ))?;
        let lines: Vec<&str> = text.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(CheckpointError::Body("expected exactly three lines"));
        };
        if origin.is_empty() {
            return Err(CheckpointError::Body("empty origin"));
        }
        let digits_only = !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit());
        if !digits_only || (size.len() > 1 && size.starts_with('0')) {
            return Err(CheckpointError::Body("the size is not a decimal number"));
        }
        let size = size
            .parse()
            .map_err(|_| CheckpointError::Body("the size is out of range"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|v| <Hash>::try_from(v).ok())
            .ok_or(CheckpointError::Body("the root is not 32 bytes of base64"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Splits `<name>+<hex id>+<base64(0x01 ‖ 32 bytes)>` (after any prefix).
fn parse_key_text(text: &str) -> Result<(String, [u8; 4], [u8; 32]), CheckpointError> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CheckpointError::Key("expected name+id+key"));
    };
    if !valid_name(name) {
        return Err(CheckpointError::Key("bad key name"));
    }
    let id: [u8; 4] = hex::decode(id)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(CheckpointError::Key("the key id is not 8 hex digits"))?;
    let material = B64
        .decode(material)
        .map_err(|_| CheckpointError::Key("the key is not base64"))?;
    let [ED25519, bytes @ ..] = material.as_slice() else {
        return Err(CheckpointError::Key("not an Ed25519 key"));
    };
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CheckpointError::Key("an Ed25519 key has 32 bytes"))?;
    Ok((name.to_owned(), id, bytes))
}

/// A signer: name and Ed25519 key. `Debug` never shows the key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}, <redacted>)", self.name)
    }
}

impl NoteSigner {
    /// A signer from a 32-byte seed (e.g. random bytes for a new key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::Key("bad key name"));
        }
        Ok(NoteSigner {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>`.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CheckpointError::Key(
                "a signer key starts with PRIVATE+KEY+",
            ))?;
        let (name, id, seed) = parse_key_text(rest)?;
        let signer = NoteSigner::from_seed(&name, seed)?;
        if signer.key_id() != id {
            return Err(CheckpointError::Key("the key id does not match the key"));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.key.verifying_key().as_bytes())
    }

    /// The signer key as text (a secret).
    pub fn to_text(&self) -> String {
        let mut material = vec![ED25519];
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            B64.encode(material)
        )
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.key_id(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which must end in a newline) as a signed note.
    pub fn sign(&self, text: &str) -> Result<String, CheckpointError> {
        if !text.ends_with('\n') || text.contains("\n\n") {
            return Err(CheckpointError::Note(
                "the text must end in one newline and hold no blank line",
            ));
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.key_id().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{DASH}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// The signed text of a note, without checking any signature (to read a
/// checkpoint when no verifier key is at hand).
pub fn unverified_text(note: &str) -> Result<&str, CheckpointError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(CheckpointError::Note("larger than 1 MiB"));
    }
    note.rfind("\n\n")
        .map(|split| &note[..split + 1])
        .ok_or(CheckpointError::Note("no blank line before the signatures"))
}

/// A verifier: name, key id and Ed25519 public key.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses `<name>+<id>+<base64(0x01 ‖ public key)>`.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let (name, id, public) = parse_key_text(text)?;
        if key_id(&name, &public) != id {
            return Err(CheckpointError::Key("the key id does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| CheckpointError::Key("not a valid Ed25519 public key"))?;
        Ok(NoteVerifier { name, id, key })
    }

    pub fn to_text(&self) -> String {
        let mut material = vec![ED25519];
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(material)
        )
    }

    /// Returns the signed text if `note` carries a valid signature by this
    /// key. Signatures by other keys are ignored; a signature line with this
    /// key's name and id that does not verify rejects the note.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(CheckpointError::Note("larger than 1 MiB"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(CheckpointError::Note("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        let sigs = sigs.strip_suffix('\n').ok_or(CheckpointError::Note(
            "the last signature line does not end in a newline",
        ))?;
        let lines: Vec<&str> = sigs.split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(CheckpointError::Note("more than 100 signatures"));
        }
        for line in lines {
            let rest = line.strip_prefix(DASH).ok_or(CheckpointError::Note(
                "a signature line must start with an em dash",
            ))?;
            let (name, blob) = rest.split_once(' ').ok_or(CheckpointError::Note(
                "a signature line is `— name signature`",
            ))?;
            let blob = B64
                .decode(blob)
                .map_err(|_| CheckpointError::Note("a signature is not base64"))?;
            if blob.len() < 4 {
                return Err(CheckpointError::Note(
                    "a signature is shorter than its key id",
                ));
            }
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            let signature = Signature::from_slice(&blob[4..])
                .map_err(|_| CheckpointError::Note("an Ed25519 signature has 64 bytes"))?;
            return self
                .key
                .verify(text.as_bytes(), &signature)
                .map(|()| text)
                .map_err(|_| CheckpointError::NotSigned(self.name.clone()));
        }
        Err(CheckpointError::NotSigned(self.name.clone()))
    }
}

#[cfg(test)]
mod tests;
