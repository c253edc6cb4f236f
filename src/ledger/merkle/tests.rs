use super::*;

fn unhex(s: &str) -> Hash {
    let v = hex::decode(s).unwrap();
    v.try_into().unwrap()
}

/// The RFC 6962 reference entries (as in the Certificate Transparency test
/// data), their tree roots for sizes 0..=8, and published proofs.
const ENTRIES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn sha_leaves() -> Vec<Hash> {
    ENTRIES
        .iter()
        .map(|e| HashAlg::Sha256.leaf(&hex::decode(e).unwrap()))
        .collect()
}

#[test]
fn sha256_roots_match_rfc6962_for_every_size() {
    let leaves = sha_leaves();
    for (n, want) in ROOTS.iter().enumerate() {
        assert_eq!(
            hex::encode(root(HashAlg::Sha256, &leaves[..n])),
            *want,
            "size {n}"
        );
    }
}

#[test]
fn sha256_inclusion_proofs_match_the_published_ones() {
    let leaves = sha_leaves();
    let cases: [(usize, [&str; 3]); 2] = [
        (
            0,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    let root8 = unhex(ROOTS[8]);
    for (index, want) in cases {
        let want: Vec<Hash> = want.iter().map(|h| unhex(h)).collect();
        assert_eq!(inclusion_proof(HashAlg::Sha256, &leaves, index), want);
        verify_inclusion(
            HashAlg::Sha256,
            index as u64,
            8,
            &leaves[index],
            &want,
            &root8,
        )
        .unwrap();
    }
}

#[test]
fn sha256_consistency_proofs_match_the_published_ones() {
    let leaves = sha_leaves();
    let cases: [(usize, usize, &[&str]); 3] = [
        (
            2,
            8,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, want) in cases {
        let want: Vec<Hash> = want.iter().map(|h| unhex(h)).collect();
        assert_eq!(
            consistency_proof(HashAlg::Sha256, &leaves[..new], old),
            want,
            "{old}->{new}"
        );
        verify_consistency(
            HashAlg::Sha256,
            old as u64,
            new as u64,
            &unhex(ROOTS[old]),
            &unhex(ROOTS[new]),
            &want,
        )
        .unwrap();
    }
}

fn blake_leaves(n: usize) -> Vec<Hash> {
    (0..n as u32)
        .map(|i| HashAlg::Blake3.leaf(&i.to_le_bytes()))
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

#[test]
fn every_blake3_inclusion_proof_up_to_64_verifies_and_tampering_fails() {
    let alg = HashAlg::Blake3;
    let all = blake_leaves(256);
    let leaves = &all[..64];
    for n in 1..=64usize {
        let tree = &leaves[..n];
        let r = root(alg, tree);
        for i in 0..n {
            let proof = inclusion_proof(alg, tree, i);
            let (i64_, n64) = (i as u64, n as u64);
            verify_inclusion(alg, i64_, n64, &tree[i], &proof, &r).unwrap();
            // Changed root, leaf, index or size: refused.
            assert!(
                verify_inclusion(alg, i64_, n64, &tree[i], &proof, &flip(&r, i % 256)).is_err()
            );
            assert!(verify_inclusion(alg, i64_, n64, &flip(&tree[i], 7), &proof, &r).is_err());
            // One-bit changes of the index: refused. Of the size: refused
            // whenever the proof's shape differs for that size. (RFC 6962
            // proofs do not bind the size where the shapes agree, e.g. leaf
            // 0 in sizes 5 and 7; the signed checkpoint binds size to root.)
            for bit in 0..8 {
                let index = i64_ ^ (1 << bit);
                assert!(
                    verify_inclusion(alg, index, n64, &tree[i], &proof, &r).is_err(),
                    "n={n} i={i} index bit {bit}"
                );
                let size = n ^ (1 << bit);
                let same_shape = i < size
                    && size <= all.len()
                    && inclusion_proof(alg, &all[..size], i).len() == proof.len();
                assert!(
                    same_shape
                        || verify_inclusion(alg, i64_, size as u64, &tree[i], &proof, &r).is_err(),
                    "n={n} i={i} size bit {bit}"
                );
            }
            // Every one-bit change anywhere in the proof: refused.
            for (k, p) in proof.iter().enumerate() {
                for bit in [0, 77, 255] {
                    let mut bad = proof.clone();
                    bad[k] = flip(p, bit);
                    assert!(verify_inclusion(alg, i64_, n64, &tree[i], &bad, &r).is_err());
                }
            }
            // A shorter or longer proof: refused.
            if !proof.is_empty() {
                let short = &proof[..proof.len() - 1];
                assert!(verify_inclusion(alg, i64_, n64, &tree[i], short, &r).is_err());
            }
            let mut long = proof.clone();
            long.push(r);
            assert!(verify_inclusion(alg, i64_, n64, &tree[i], &long, &r).is_err());
        }
    }
}

#[test]
fn every_blake3_consistency_proof_up_to_64_verifies_and_tampering_fails() {
    let alg = HashAlg::Blake3;
    let all = blake_leaves(256);
    let leaves = &all[..64];
    let roots: Vec<Hash> = (0..=64).map(|n| root(alg, &leaves[..n])).collect();
    for new in 1..=64usize {
        for old in 1..=new {
            let proof = consistency_proof(alg, &leaves[..new], old);
            let (o, n) = (old as u64, new as u64);
            verify_consistency(alg, o, n, &roots[old], &roots[new], &proof).unwrap();
            assert!(
                verify_consistency(alg, o, n, &flip(&roots[old], 3), &roots[new], &proof).is_err()
            );
            assert!(
                verify_consistency(alg, o, n, &roots[old], &flip(&roots[new], 200), &proof)
                    .is_err()
            );
            // One-bit changes of either size: refused whenever the proof's
            // shape differs for those sizes (see the inclusion test).
            for bit in 0..8 {
                let shape = |o2: usize, n2: usize| {
                    o2 > 0
                        && o2 <= n2
                        && n2 <= all.len()
                        && consistency_proof(alg, &all[..n2], o2).len() == proof.len()
                };
                let (o2, n2) = (old ^ (1 << bit), new ^ (1 << bit));
                assert!(
                    shape(o2, new)
                        || verify_consistency(alg, o2 as u64, n, &roots[old], &roots[new], &proof)
                            .is_err(),
                    "{old}->{new} old size bit {bit}"
                );
                assert!(
                    shape(old, n2)
                        || verify_consistency(alg, o, n2 as u64, &roots[old], &roots[new], &proof)
                            .is_err(),
                    "{old}->{new} new size bit {bit}"
                );
            }
            for (k, p) in proof.iter().enumerate() {
                let mut bad = proof.clone();
                bad[k] = flip(p, (k * 37) % 256);
                assert!(verify_consistency(alg, o, n, &roots[old], &roots[new], &bad).is_err());
            }
        }
    }
}

#[test]
fn malformed_requests_are_errors_not_panics() {
    let alg = HashAlg::Blake3;
    let r = alg.empty_root();
    assert!(verify_inclusion(alg, 0, 0, &r, &[], &r).is_err());
    assert!(verify_inclusion(alg, u64::MAX, 1, &r, &[], &r).is_err());
    assert!(verify_consistency(alg, 0, 5, &r, &r, &[]).is_err());
    assert!(verify_consistency(alg, 5, 3, &r, &r, &[]).is_err());
    assert!(verify_consistency(alg, 3, 5, &r, &r, &[]).is_err());
    assert!(verify_consistency(alg, u64::MAX, u64::MAX, &r, &r, &[r]).is_err());
}
