use super::*;
use crate::ledger::merkle;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| HashAlg::Blake3.leaf(&(i as u64).to_le_bytes()))
        .collect()
}

fn built(dir: &Path, alg: HashAlg, leaves: &[Hash]) -> TreeAppender {
    let mut tree = TreeAppender::open(dir, alg, 0).unwrap();
    for (i, leaf) in leaves.iter().enumerate() {
        tree.push(*leaf);
        // Write at irregular points, as flushes do.
        if i % 97 == 0 {
            tree.write(true).unwrap();
        }
    }
    tree.write(true).unwrap();
    tree
}

#[test]
fn roots_and_proofs_match_the_in_memory_tree_across_strata() {
    for alg in [HashAlg::Blake3, HashAlg::Sha256] {
        let tmp = tempfile::tempdir().unwrap();
        let all = leaves(700);
        let tree = built(tmp.path(), alg, &all);
        assert_eq!(tree.root(), merkle::root(alg, &all));
        let mut reader = TreeReader::open(tmp.path(), alg).unwrap();
        assert_eq!(reader.leaves(), 700);
        // Every size around the stratum boundary and a spread of others.
        let sizes: Vec<u64> = (1..20)
            .chain(250..262)
            .chain([512, 513, 699, 700])
            .collect();
        for &size in &sizes {
            let prefix = &all[..size as usize];
            assert_eq!(reader.root(size).unwrap(), merkle::root(alg, prefix));
            for index in [0, size / 3, size / 2, size - 1] {
                assert_eq!(
                    reader.inclusion_proof(index, size).unwrap(),
                    merkle::inclusion_proof(alg, prefix, index as usize),
                    "inclusion {index} in {size}"
                );
            }
            for old in [1, size / 2, size - 1, size] {
                if old == 0 {
                    continue;
                }
                assert_eq!(
                    reader.consistency_proof(old, size).unwrap(),
                    merkle::consistency_proof(alg, prefix, old as usize),
                    "consistency {old} to {size}"
                );
            }
        }
        assert!(reader.root(701).is_err());
        assert!(reader.inclusion_proof(5, 5).is_err());
        assert!(reader.consistency_proof(0, 5).is_err());
    }
}

#[test]
fn strata_hold_exactly_the_complete_subtrees() {
    let tmp = tempfile::tempdir().unwrap();
    let all = leaves(600);
    built(tmp.path(), HashAlg::Blake3, &all);
    let len = |h| {
        std::fs::metadata(stratum_path(tmp.path(), h))
            .unwrap()
            .len()
    };
    assert_eq!(len(0), 600 * 32);
    assert_eq!(len(8), 2 * 32);
    assert!(!stratum_path(tmp.path(), 16).exists());
    let second = std::fs::read(stratum_path(tmp.path(), 8)).unwrap();
    assert_eq!(second[32..], merkle::root(HashAlg::Blake3, &all[256..512]));
}

#[test]
fn reopening_truncates_strata_ahead_of_the_manifest_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let alg = HashAlg::Blake3;
    let all = leaves(1100);
    // 1000 leaves written, but the manifest only covers 300 (crash).
    built(tmp.path(), alg, &all[..1000]);
    let mut tree = TreeAppender::open(tmp.path(), alg, 300).unwrap();
    assert_eq!(tree.size(), 300);
    assert_eq!(tree.root(), merkle::root(alg, &all[..300]));
    for leaf in &all[300..] {
        tree.push(*leaf);
    }
    tree.write(true).unwrap();
    assert_eq!(tree.root(), merkle::root(alg, &all));
    let mut reader = TreeReader::open(tmp.path(), alg).unwrap();
    assert_eq!(reader.root(1100).unwrap(), merkle::root(alg, &all));
    assert_eq!(
        std::fs::metadata(stratum_path(tmp.path(), 8))
            .unwrap()
            .len(),
        4 * 32
    );
}

#[test]
fn a_stratum_shorter_than_the_manifest_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    built(tmp.path(), HashAlg::Blake3, &leaves(300));
    let err = TreeAppender::open(tmp.path(), HashAlg::Blake3, 301)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("needs"), "{err}");
    let path = stratum_path(tmp.path(), 8);
    std::fs::write(&path, b"").unwrap();
    assert!(TreeAppender::open(tmp.path(), HashAlg::Blake3, 300).is_err());
}

#[test]
fn the_empty_tree_has_the_empty_root() {
    let f = Frontier::new(HashAlg::Sha256);
    assert_eq!(f.root(), HashAlg::Sha256.empty_root());
    let tmp = tempfile::tempdir().unwrap();
    let mut reader = TreeReader::open(tmp.path(), HashAlg::Sha256).unwrap();
    assert_eq!(reader.root(0).unwrap(), HashAlg::Sha256.empty_root());
}
