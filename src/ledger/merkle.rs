//! Merkle trees with the structure of RFC 6962 (section 2.1) and the proof
//! verification algorithms of RFC 9162 (sections 2.1.3.2 and 2.1.4.2),
//! over BLAKE3-256 or SHA-256.
//!
//! ```text
//! MTH({})      = H()                       (the hash of no bytes)
//! leaf         = H(0x00 ‖ entry)
//! node         = H(0x01 ‖ left ‖ right)
//! MTH(D[0:n])  = node(MTH(D[0:k]), MTH(D[k:n])),  k = largest power of two < n
//! ```
//!
//! Everything here works on leaf hashes already computed. Building proofs
//! from a full list of leaves is O(n); the store-wide log (subtrees kept
//! per segment) builds on these functions. Verification never panics on
//! any input: a proof that does not fit is an error.

use sha2::Digest;

use super::hash::Hash;

/// The hash function of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Blake3,
    Sha256,
}

impl HashAlg {
    /// The name used in the store marker and in proofs: `blake3`, `sha256`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Blake3 => "blake3",
            HashAlg::Sha256 => "sha256",
        }
    }

    /// Parses [`Self::name`].
    pub fn from_name(name: &str) -> Option<HashAlg> {
        match name {
            "blake3" => Some(HashAlg::Blake3),
            "sha256" => Some(HashAlg::Sha256),
            _ => None,
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Hash {
        match self {
            HashAlg::Blake3 => {
                let mut h = blake3::Hasher::new();
                for p in parts {
                    h.update(p);
                }
                *h.finalize().as_bytes()
            }
            HashAlg::Sha256 => {
                let mut h = sha2::Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
        }
    }

    /// The root of the empty tree.
    pub fn empty_root(self) -> Hash {
        self.digest(&[])
    }

    /// `H(0x00 ‖ entry)`.
    pub fn leaf(self, entry: &[u8]) -> Hash {
        self.digest(&[&[0x00], entry])
    }

    /// `H(0x01 ‖ left ‖ right)`.
    pub fn node(self, left: &Hash, right: &Hash) -> Hash {
        self.digest(&[&[0x01], left, right])
    }
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the old size {old} is larger than the new size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("a consistency proof needs a non-empty old tree")]
    EmptyOldTree,
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH over leaf hashes.
pub fn root(alg: HashAlg, leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => alg.empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            alg.node(&root(alg, &leaves[..k]), &root(alg, &leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the audit path of leaf `index` (RFC 6962, 2.1.1).
pub fn inclusion_proof(alg: HashAlg, leaves: &[Hash], index: usize) -> Vec<Hash> {
    assert!(index < leaves.len(), "index inside the tree");
    let mut path = Vec::new();
    inclusion_into(alg, leaves, index, &mut path);
    path
}

fn inclusion_into(alg: HashAlg, leaves: &[Hash], index: usize, path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        inclusion_into(alg, &leaves[..k], index, path);
        path.push(root(alg, &leaves[k..]));
    } else {
        inclusion_into(alg, &leaves[k..], index - k, path);
        path.push(root(alg, &leaves[..k]));
    }
}

/// PROOF(m, D[n]): the consistency proof from the first `old` leaves to all
/// of `leaves` (RFC 6962, 2.1.2). `0 < old <= leaves.len()`.
pub fn consistency_proof(alg: HashAlg, leaves: &[Hash], old: usize) -> Vec<Hash> {
    assert!(old > 0 && old <= leaves.len(), "0 < old <= new");
    let mut proof = Vec::new();
    subproof(alg, old, leaves, true, &mut proof);
    proof
}

fn subproof(alg: HashAlg, m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(root(alg, leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(alg, m, &leaves[..k], whole, proof);
        proof.push(root(alg, &leaves[k..]));
    } else {
        subproof(alg, m - k, &leaves[k..], false, proof);
        proof.push(root(alg, &leaves[..k]));
    }
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose root
/// is `root` (RFC 9162, 2.1.3.2).
pub fn verify_inclusion(
    alg: HashAlg,
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = alg.node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = alg.node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of
/// the tree of `new` leaves with root `new_root` (RFC 9162, 2.1.4.2).
pub fn verify_consistency(
    alg: HashAlg,
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = alg.node(c, &fr);
            sr = alg.node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = alg.node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
