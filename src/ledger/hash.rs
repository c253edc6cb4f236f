//! Hash values and their text form. How leaves and nodes are hashed is in
//! [`super::merkle`]; which function a store uses is in its marker.

/// A 32-byte digest (BLAKE3-256 or SHA-256, per store).
pub type Hash = [u8; 32];

/// Parses 64 lowercase or uppercase hex digits.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_other_text() {
        let h = *blake3::hash(b"x").as_bytes();
        assert_eq!(parse_hash(&hex::encode(h)), Some(h));
        assert_eq!(parse_hash(&hex::encode(h).to_uppercase()), Some(h));
        assert_eq!(parse_hash("zz"), None);
        assert_eq!(parse_hash(&"0".repeat(63)), None);
    }
}
