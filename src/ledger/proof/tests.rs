use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::ledger::checkpoint::NoteSigner;
use crate::ledger::merkle::{consistency_proof, inclusion_proof, root};

const STORE: &str = "custos.test/ledger";
const ALGS: [HashAlg; 2] = [HashAlg::Blake3, HashAlg::Sha256];

fn signer() -> NoteSigner {
    NoteSigner::from_seed("custos.test", [7; 32]).unwrap()
}

fn log() -> LogId {
    LogId::new(STORE, ChainId::new("t", 0), Table::Events)
}

/// `n` event records of chain t/0 with random content, as ledger records.
fn records(n: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let noise: u64 = rng.random();
            format!(
                r#"{{"event":{{"id":"evt-{i}","n":"{noise:x}"}},"src":{{"offset":{i},"partition":0,"stream":"t"}},"v":1}}"#
            )
        })
        .collect()
}

fn leaves(alg: HashAlg, records: &[String]) -> Vec<Hash> {
    records.iter().map(|r| alg.leaf(r.as_bytes())).collect()
}

fn sign(signer: &NoteSigner, origin: &str, size: u64, root: Hash) -> String {
    let body = Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
    }
    .body();
    signer.sign(&body).unwrap()
}

/// A full inclusion proof (event id, record, signed checkpoint) of leaf
/// `index` in a tree of `size` random records.
fn inclusion(alg: HashAlg, size: usize, index: usize) -> InclusionProof {
    let records = records(size, size as u64 * 31 + index as u64);
    let leaves = leaves(alg, &records);
    let mut p = InclusionProof::new(
        alg,
        log(),
        index as u64,
        size as u64,
        leaves[index],
        inclusion_proof(alg, &leaves, index),
    );
    p.event_id = Some(format!("evt-{index}"));
    p.record = Some(records[index].clone());
    p.checkpoint = Some(sign(
        &signer(),
        &p.log.origin,
        size as u64,
        root(alg, &leaves),
    ));
    p
}

/// A consistency proof from `old` to `new` leaves with both checkpoints.
fn consistency(alg: HashAlg, old: usize, new: usize) -> ConsistencyProof {
    let leaves = leaves(alg, &records(new, 99));
    let (old_root, new_root) = (root(alg, &leaves[..old]), root(alg, &leaves));
    let mut p = ConsistencyProof::new(
        alg,
        log(),
        old as u64,
        old_root,
        new as u64,
        new_root,
        consistency_proof(alg, &leaves, old),
    );
    p.old_checkpoint = Some(sign(&signer(), &p.log.origin, old as u64, old_root));
    p.new_checkpoint = Some(sign(&signer(), &p.log.origin, new as u64, new_root));
    p
}

fn checked(text: &str) -> Result<ProofSummary, ProofCheckError> {
    check(text, Some(&signer().verifier()))
}

/// The document's JSON after `edit`.
fn edited(json: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(json).unwrap();
    edit(&mut v);
    serde_json::to_string(&v).unwrap()
}

#[test]
fn good_inclusion_proofs_pass_and_round_trip() {
    for alg in ALGS {
        for (size, index) in [(1, 0), (2, 1), (3, 2), (7, 3), (8, 0), (8, 7), (100, 17)] {
            let p = inclusion(alg, size, index);
            let text = p.to_json_pretty();
            assert_eq!(
                ProofDocument::parse(&text).unwrap(),
                ProofDocument::Inclusion(p.clone())
            );
            let s = checked(&text).unwrap();
            assert_eq!(s.kind, ProofKind::Inclusion);
            assert_eq!(
                (s.leaf_index, s.tree_size),
                (Some(index as u64), size as u64)
            );
            assert_eq!(s.log, format!("{STORE}/events/t/0"));
            assert!(s.signatures_checked && s.record_checked);
            assert_eq!(s.checkpoints, vec![size as u64]);
            assert_eq!(s.key.as_deref(), Some("custos.test"));
            let line = s.to_string();
            assert!(line.contains("signed by key custos.test"), "{line}");
            assert!(!line.contains('\n'));

            // Without a key the checkpoint is still the root, unsigned.
            let s = check(&text, None).unwrap();
            assert!(!s.signatures_checked && s.key.is_none());
            assert!(s.to_string().contains("NOT checked"), "{s}");
        }
    }
}

#[test]
fn the_json_has_the_documented_fields() {
    let p = inclusion(HashAlg::Blake3, 8, 3);
    let v: Value = serde_json::from_str(&p.to_json_pretty()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = [
        "kind",
        "version",
        "hash",
        "log",
        "table",
        "stream",
        "partition",
        "event_id",
        "leaf_index",
        "tree_size",
        "leaf_hash",
        "record",
        "path",
        "checkpoint",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(v["kind"], "inclusion");
    assert_eq!(v["version"], 1);
    assert_eq!(v["leaf_hash"], hex::encode(p.leaf_hash));

    // Optional fields are left out; a missing checkpoint is null.
    let mut bare = p.clone();
    (bare.event_id, bare.record, bare.checkpoint) = (None, None, None);
    let v: Value = serde_json::from_str(&bare.to_json_pretty()).unwrap();
    assert!(v.get("event_id").is_none() && v.get("record").is_none());
    assert_eq!(v["checkpoint"], Value::Null);
}

#[test]
fn good_consistency_proofs_pass_with_and_without_checkpoints() {
    for alg in ALGS {
        for (old, new) in [(1, 1), (1, 2), (3, 7), (4, 8), (5, 9), (8, 8), (17, 100)] {
            let p = consistency(alg, old, new);
            let text = p.to_json_pretty();
            assert_eq!(
                ProofDocument::parse(&text).unwrap(),
                ProofDocument::Consistency(p.clone())
            );
            let s = checked(&text).unwrap();
            assert_eq!((s.old_size, s.tree_size), (Some(old as u64), new as u64));
            assert!(s.signatures_checked);
            assert_eq!(s.checkpoints, vec![old as u64, new as u64]);

            let s = check(&text, None).unwrap();
            assert!(!s.signatures_checked);

            // With a key, an unsigned side is refused; without one, the
            // proof is only checked for consistency and says so.
            let mut only_old = p.clone();
            only_old.new_checkpoint = None;
            assert_eq!(
                checked(&only_old.to_json_pretty()).unwrap_err(),
                E::Unsigned("new_checkpoint")
            );
            let s = check(&only_old.to_json_pretty(), None).unwrap();
            assert_eq!(s.checkpoints, vec![old as u64]);

            let mut none = p.clone();
            (none.old_checkpoint, none.new_checkpoint) = (None, None);
            assert_eq!(
                checked(&none.to_json_pretty()).unwrap_err(),
                E::Unsigned("old_checkpoint")
            );
            let s = check(&none.to_json_pretty(), None).unwrap();
            assert!(!s.signatures_checked && s.checkpoints.is_empty());
            assert!(s.to_string().contains("unsigned"), "{s}");
        }
    }
}

#[test]
fn tampered_inclusion_proofs_are_refused() {
    let p = inclusion(HashAlg::Blake3, 100, 17);
    let good = p.to_json_pretty();
    let refuse = |text: &str| checked(text).unwrap_err();

    let mut t = p.clone();
    t.path[2][5] ^= 0x01;
    assert_eq!(
        refuse(&t.to_json_pretty()),
        E::Proof(ProofError::RootMismatch)
    );

    for index in [16, 18, 99] {
        let mut t = p.clone();
        t.leaf_index = index;
        assert!(
            matches!(refuse(&t.to_json_pretty()), E::Proof(_)),
            "{index}"
        );
    }
    let mut t = p.clone();
    t.leaf_index = 100;
    assert!(matches!(
        refuse(&t.to_json_pretty()),
        E::Proof(ProofError::IndexOutOfRange { .. })
    ));

    let mut t = p.clone();
    t.tree_size = 101;
    assert_eq!(
        refuse(&t.to_json_pretty()),
        E::CheckpointSize {
            field: "checkpoint",
            found: 100,
            expected: 101
        }
    );
    // A checkpoint of another size with the same root: the path does not
    // fit that tree. (For size 101 it would: the signer's word is trusted.)
    let root = Checkpoint::parse(
        signer()
            .verifier()
            .open(p.checkpoint.as_ref().unwrap())
            .unwrap(),
    )
    .unwrap()
    .root;
    t.tree_size = 18;
    t.checkpoint = Some(sign(&signer(), &p.log.origin, 18, root));
    assert!(matches!(refuse(&t.to_json_pretty()), E::Proof(_)));

    let mut t = p.clone();
    t.record = Some(p.record.clone().unwrap().replace("evt-17", "evt-18"));
    assert_eq!(refuse(&t.to_json_pretty()), E::RecordMismatch);

    let mut t = p.clone();
    t.event_id = Some("evt-18".into());
    assert!(matches!(refuse(&t.to_json_pretty()), E::RecordDisagrees(_)));
    t.log.table = Table::Rejects;
    t.log.origin = log_origin(STORE, &t.log.chain, Table::Rejects);
    assert_eq!(refuse(&t.to_json_pretty()), E::EventIdOutsideEvents);

    let mut t = p.clone();
    t.checkpoint = Some(sign(&signer(), "custos.test/other/events/t/0", 100, root));
    assert!(matches!(
        refuse(&t.to_json_pretty()),
        E::CheckpointOrigin { .. }
    ));

    let impostor = NoteSigner::from_seed("custos.test", [8; 32]).unwrap();
    let mut t = p.clone();
    t.checkpoint = Some(sign(&impostor, &p.log.origin, 100, root));
    let e = refuse(&t.to_json_pretty());
    assert!(matches!(e, E::SignatureInvalid { .. }), "{e}");
    assert!(e.to_string().contains("signature invalid"));

    let mut t = p.clone();
    t.path.pop();
    assert_eq!(
        refuse(&t.to_json_pretty()),
        E::Proof(ProofError::WrongLength)
    );
    let mut t = p.clone();
    t.path.push([0; 32]);
    assert_eq!(
        refuse(&t.to_json_pretty()),
        E::Proof(ProofError::WrongLength)
    );

    let mut t = p.clone();
    t.checkpoint = None;
    for verifier in [Some(signer().verifier()), None] {
        let e = check(&t.to_json_pretty(), verifier.as_ref()).unwrap_err();
        assert_eq!(e, E::NoCheckpoint);
        assert_eq!(
            e.to_string(),
            "no checkpoint: nothing to check the proof against"
        );
    }

    let mut t = p.clone();
    t.log.origin = format!("{STORE}/events/u/0");
    assert!(matches!(refuse(&t.to_json_pretty()), E::LogMismatch { .. }));
    t.log.origin = "/events/t/0".into();
    assert!(matches!(refuse(&t.to_json_pretty()), E::LogMismatch { .. }));
    let mut t = p.clone();
    t.log.chain.partition = -1;
    assert!(matches!(refuse(&t.to_json_pretty()), E::InvalidChain(_)));

    // The document was not changed by any of this.
    assert!(checked(&good).is_ok());
}

#[test]
fn malformed_documents_are_refused_by_name() {
    let good = inclusion(HashAlg::Sha256, 20, 5).to_json_pretty();
    let refuse = |text: &str| checked(text).unwrap_err();
    let malformed = |text: &str, needle: &str| match refuse(text) {
        E::Malformed(m) => assert!(m.contains(needle), "{m} lacks {needle}"),
        other => panic!("{other:?} for {text}"),
    };

    malformed(
        &edited(&good, |v| v["extra"] = 1.into()),
        "unknown field `extra`",
    );
    malformed("this is not JSON", "line 1 column 2");
    malformed("", "EOF");
    malformed("[]", "expected a map");
    malformed(r#"["inclusion", 1]"#, "expected a map");
    malformed(
        &good.replacen("\"version\"", "\"kind\": \"consistency\", \"version\"", 1),
        "duplicate field `kind`",
    );
    malformed(
        &good.replacen("\"tree_size\": 20", "\"tree_size\": 1e400", 1),
        "out of range",
    );
    malformed(
        &good.replacen(
            "\"tree_size\": 20",
            "\"tree_size\": 18446744073709551616",
            1,
        ),
        "",
    );
    malformed(&edited(&good, |v| v["leaf_index"] = (-1).into()), "");
    malformed(
        &good.replacen(
            "\"tree_size\": 20",
            "\"tree_size\": 20, \"tree_size\": 20",
            1,
        ),
        "duplicate field",
    );
    malformed(
        &edited(&good, |v| v["kind"] = "consistency".into()),
        "unknown field",
    );
    malformed(
        &edited(&good, |v| v["table"] = "audit".into()),
        "unknown variant",
    );

    assert_eq!(
        refuse(&edited(&good, |v| v["kind"] = "exclusion".into())),
        E::UnknownKind("exclusion".into())
    );
    assert_eq!(
        refuse(&edited(&good, |v| v
            .as_object_mut()
            .unwrap()
            .remove("kind")
            .map(drop)
            .unwrap())),
        E::NoKind
    );
    assert_eq!(
        refuse(&edited(&good, |v| v["version"] = 2.into())),
        E::UnsupportedVersion("2".into())
    );
    // A later version may change any field: the version is named first.
    assert_eq!(
        refuse(&edited(&good, |v| {
            v["version"] = 2.into();
            v["new_field"] = true.into();
        })),
        E::UnsupportedVersion("2".into())
    );
    assert_eq!(
        refuse(&edited(&good, |v| v["hash"] = "md5".into())),
        E::UnknownHash("md5".into())
    );
    let upper = |v: &mut Value| {
        let h = v["path"][1].as_str().unwrap().to_uppercase();
        v["path"][1] = h.into();
    };
    assert_eq!(refuse(&edited(&good, upper)), E::BadHex("path[1]".into()));
    assert_eq!(
        refuse(&edited(&good, |v| v["leaf_hash"] = "00".into())),
        E::BadHex("leaf_hash".into())
    );
    let big = format!("{}{}", " ".repeat(MAX_DOCUMENT_BYTES), good);
    assert_eq!(refuse(&big), E::TooLarge(big.len()));
}

#[test]
fn tampered_consistency_proofs_are_refused() {
    let p = consistency(HashAlg::Blake3, 5, 9);
    let refuse = |t: &ConsistencyProof| checked(&t.to_json_pretty()).unwrap_err();

    let mut t = p.clone();
    t.path[0][0] ^= 0x80;
    assert_eq!(refuse(&t), E::Proof(ProofError::RootMismatch));

    // Roots changed together with signed checkpoints: the path disagrees.
    let mut t = p.clone();
    t.old_root[0] ^= 1;
    t.old_checkpoint = Some(sign(&signer(), &p.log.origin, 5, t.old_root));
    assert_eq!(refuse(&t), E::Proof(ProofError::RootMismatch));

    let mut t = p.clone();
    t.new_root[0] ^= 1;
    assert_eq!(
        refuse(&t),
        E::CheckpointRoot {
            field: "new_checkpoint"
        }
    );

    let mut t = p.clone();
    t.old_size = 4;
    assert!(matches!(
        refuse(&t),
        E::CheckpointSize {
            field: "old_checkpoint",
            ..
        }
    ));

    let impostor = NoteSigner::from_seed("custos.test", [9; 32]).unwrap();
    let mut t = p.clone();
    t.new_checkpoint = Some(sign(&impostor, &p.log.origin, 9, p.new_root));
    assert!(matches!(
        refuse(&t),
        E::SignatureInvalid {
            field: "new_checkpoint",
            ..
        }
    ));
    // Without a key the impostor's checkpoint is read, not trusted.
    let s = check(&t.to_json_pretty(), None).unwrap();
    assert!(!s.signatures_checked);

    let mut t = p.clone();
    t.old_checkpoint = Some("no note at all".into());
    assert!(matches!(
        refuse(&t),
        E::BadCheckpoint {
            field: "old_checkpoint",
            ..
        }
    ));
    assert!(matches!(
        check(&t.to_json_pretty(), None).unwrap_err(),
        E::BadCheckpoint { .. }
    ));

    let mut t = p.clone();
    t.path.pop();
    (t.old_checkpoint, t.new_checkpoint) = (None, None);
    assert_eq!(refuse(&t), E::Proof(ProofError::WrongLength));
    t.old_size = 10;
    assert!(matches!(
        refuse(&t),
        E::Proof(ProofError::SizesOutOfOrder { .. })
    ));
}

/// Random byte changes and truncations never panic, and whatever is still
/// accepted states what the original stated, or less (a deleted optional
/// `event_id` line).
#[test]
fn random_mutations_never_panic() {
    let mut rng = StdRng::seed_from_u64(6962);
    let verifier = signer().verifier();
    let docs = [
        inclusion(HashAlg::Blake3, 21, 13).to_json_pretty(),
        consistency(HashAlg::Sha256, 6, 21).to_json_pretty(),
    ];
    let mut refused = 0;
    for round in 0..2000 {
        let doc = &docs[round % 2];
        let want = check(doc, Some(&verifier)).unwrap();
        let mut bytes = doc.clone().into_bytes();
        match rng.random_range(0..4) {
            0 => bytes.truncate(rng.random_range(0..bytes.len())),
            1 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            2 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
            }
            _ => {
                let at = rng.random_range(0..bytes.len());
                let len = rng.random_range(0..64.min(bytes.len() - at));
                bytes.drain(at..at + len);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        match check(&text, Some(&verifier)) {
            Ok(mut s) => {
                if s.event_id.is_none() {
                    s.event_id.clone_from(&want.event_id);
                }
                assert_eq!(s, want, "accepted a changed meaning:\n{text}");
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
        let _ = check(&text, None);
    }
    assert!(refused > 1500, "only {refused} of 2000 mutations refused");
}
