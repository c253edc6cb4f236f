//! Segments encrypted at rest (`store.encryption_key`), end to end with the
//! real binary: an encrypted store verifies and answers SQL with the key;
//! its segment files hold no plaintext column value (where plaintext
//! segments of the same store do, in their statistics); without the key,
//! or with another one, custos refuses clearly and changes nothing;
//! erasure rewrites encrypted segments encrypted.

mod common;

use std::path::Path;

use serde_json::Value;

use common::run;

const SEGMENT_KEY: &str = "5e6e3e47c0de5e6e3e47c0de5e6e3e47c0de5e6e3e47c0de5e6e3e47c0de0001";
const OTHER_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000002";

/// `n` events whose actor, role and department are distinctive texts.
fn input(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"{prefix}-{i}","time":"2026-03-02T10:{:02}:00Z","kind":"access","actor":{{"id":"{prefix}-actor-zq{}","role":"{prefix}-role-xv","dept":"{prefix}-dept-kw"}},"action":"read","patient":"MRN-{}"}}"#,
                i % 60,
                i % 7,
                i % 11
            ) + "\n"
        })
        .collect()
}

fn segments(store: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![store.join("events"), store.join("rejects")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn holds(path: &Path, text: &str) -> bool {
    memchr::memmem::find(&std::fs::read(path).unwrap(), text.as_bytes()).is_some()
}

fn count(store: &str, env: &[(&str, &str)], sql: &str) -> Result<u64, String> {
    let r = run(&["query", "--store", store, "--format", "json", sql], env);
    if r.code != 0 {
        return Err(r.err);
    }
    let row: Value = serde_json::from_str(r.out.lines().next().unwrap()).unwrap();
    Ok(row["n"].as_u64().unwrap())
}

#[test]
fn an_encrypted_store_verifies_answers_sql_and_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let store = at("store");
    std::fs::write(at("plain.jsonl"), input("plain", 300)).unwrap();
    std::fs::write(at("secret.jsonl"), input("secret", 300)).unwrap();
    let signer = at("signer.key");
    common::keygen_checkpoint(&signer);
    let keyed = [("CUSTOS_STORE_ENCRYPTION_KEY", SEGMENT_KEY)];
    let signed = ("CUSTOS_CHECKPOINTS_KEY_FILE", signer.as_str());
    let plain_env = [("CUSTOS_STORE_PATH", store.as_str()), signed];
    let secret_env = [("CUSTOS_STORE_PATH", store.as_str()), keyed[0], signed];

    // First without encryption, then with it: one store, both kinds.
    let r = run(&["ingest", &at("plain.jsonl")], &plain_env);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run(&["ingest", &at("secret.jsonl")], &secret_env);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains("segments are encrypted at rest"),
        "{}",
        r.err
    );
    let files = segments(Path::new(&store));
    let (plain, secret): (Vec<_>, Vec<_>) = files.iter().partition(|p| holds(p, "PAR1"));
    assert!(!plain.is_empty() && !secret.is_empty(), "{files:?}");
    // The plaintext segments show their values (statistics), so the
    // search below could fail; the encrypted ones show none.
    assert!(plain.iter().any(|p| holds(p, "plain-actor-zq")));
    for path in &secret {
        for text in [
            "secret-actor-zq",
            "secret-role-xv",
            "secret-dept-kw",
            "secret-",
            "pt_",
            "access",
            "custos.table",
            "ARROW:schema",
        ] {
            assert!(!holds(path, text), "{} holds {text:?}", path.display());
        }
    }
    let manifest =
        std::fs::read_to_string(dir.path().join("store/manifests/+file/0.jsonl")).unwrap();
    assert!(manifest.contains(r#""key_id":"sk1-"#), "{manifest}");

    // With the key: verify passes and SQL reads both kinds.
    let v = run(&["verify", &store], &keyed);
    assert_eq!(v.code, 0, "{}{}", v.out, v.err);
    assert_eq!(
        count(&store, &keyed, "select count(*) as n from events").unwrap(),
        600
    );
    let sql = "select count(*) as n from events where actor_dept = 'secret-dept-kw'";
    assert_eq!(count(&store, &keyed, sql).unwrap(), 300);
    let proof = run(&["prove", "secret-7", "--store", &store], &keyed);
    assert_eq!(proof.code, 0, "{}", proof.err);
    assert!(
        proof.out.contains("secret-actor-zq"),
        "the proof carries the decrypted record"
    );

    // Without it, or with another: clear refusals naming the key.
    let v = run(&["verify", &store], &[]);
    assert_eq!(v.code, 1, "{}", v.out);
    assert!(
        v.out.contains("rows not checked") && v.out.contains("sk1-"),
        "{}",
        v.out
    );
    let err = count(&store, &[], "select count(*) as n from events").unwrap_err();
    assert!(
        err.contains("is encrypted with key sk1-") && err.contains("no key is configured"),
        "{err}"
    );
    let before: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let other = [
        ("CUSTOS_STORE_PATH", store.as_str()),
        ("CUSTOS_STORE_ENCRYPTION_KEY", OTHER_KEY),
    ];
    let r = run(&["ingest", &at("plain.jsonl")], &other);
    assert_ne!(r.code, 0);
    assert!(r.err.contains("the configured key is sk1-"), "{}", r.err);
    let r = run(&["ingest", &at("plain.jsonl")], &plain_env);
    assert_ne!(r.code, 0);
    assert!(r.err.contains("no key is configured"), "{}", r.err);
    let after: Vec<Vec<u8>> = segments(Path::new(&store))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "a refused start changes nothing");

    // An erasure rewrites encrypted segments encrypted.
    let r = run(
        &[
            "erase",
            "--store",
            &store,
            "--patient",
            "MRN-3",
            "--reason",
            "DSR-5",
        ],
        &secret_env,
    );
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let rewritten: Vec<_> = segments(Path::new(&store))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".e1."))
        .collect();
    assert_eq!(
        rewritten.len(),
        2,
        "one plaintext and one encrypted segment hold MRN-3"
    );
    assert_eq!(
        rewritten.iter().filter(|p| holds(p, "PARE")).count(),
        2,
        "both now encrypted"
    );
    let v = run(&["verify", &store], &keyed);
    assert_eq!(v.code, 0, "{}{}", v.out, v.err);
}
