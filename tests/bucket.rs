//! A store in an S3-compatible bucket (moto's standalone server, started
//! by the test): the conditional writes the write protocol rests on, and a
//! store written, verified, proved and queried through `s3://` with the
//! real binary. (The crash test against a bucket is in `crash.rs`.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use custos::ledger::LedgerError;
use custos::ledger::storage::{Bucket, Storage};

use common::{BUCKET, moto, run, unique};

/// A client of the store at `url` in the test bucket.
fn connect(url: &str, lease: Duration) -> Bucket {
    let endpoint = moto().endpoint.as_str();
    let settings = [
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
    ];
    Bucket::connect_with(url, lease, &settings).unwrap()
}

/// A client of the test bucket under a fresh prefix.
fn bucket(lease: Duration) -> Bucket {
    connect(&format!("s3://{BUCKET}/{}", unique("storage")), lease)
}

#[test]
fn conditional_writes_fence_a_second_writer() {
    let b = bucket(Duration::from_secs(10));

    // A whole file is created once; a second create changes nothing.
    b.create("events/s/0/a.parquet", Bytes::from("first"), true)
        .unwrap();
    let err = b
        .create("events/s/0/a.parquet", Bytes::from("second"), true)
        .unwrap_err();
    assert!(matches!(err, LedgerError::Conflict { .. }), "{err}");
    assert_eq!(b.read("events/s/0/a.parquet").unwrap().unwrap(), "first");

    // Appends: each is a part at its offset; a writer whose idea of the
    // length is stale is refused, and so is a second append at an offset
    // another writer took.
    let m = "manifests/s/0.jsonl";
    b.append(m, 0, Bytes::from("one\n"), true).unwrap();
    b.append(m, 4, Bytes::from("two\n"), true).unwrap();
    let stale = b.append(m, 4, Bytes::from("TWO\n"), true).unwrap_err();
    assert!(matches!(stale, LedgerError::Conflict { .. }), "{stale}");
    let other = bucket_at(&b);
    assert!(matches!(
        other.append(m, 0, Bytes::from("x"), true),
        Err(LedgerError::Conflict { .. })
    ));
    b.append(m, 8, Bytes::from("three\n"), true).unwrap();
    assert_eq!(b.read(m).unwrap().unwrap(), "one\ntwo\nthree\n");
    assert_eq!(b.len(m).unwrap(), Some(14));
    let mut reader = b.open(m).unwrap().unwrap();
    assert_eq!(reader.read_at(2, 7).unwrap(), "e\ntwo\nt", "across parts");
    assert!(reader.read_at(10, 5).is_err(), "past the end");

    // Truncation drops whole parts, never cuts one.
    assert!(matches!(b.truncate(m, 6), Err(LedgerError::Corrupt { .. })));
    b.truncate(m, 8).unwrap();
    assert_eq!(b.read(m).unwrap().unwrap(), "one\ntwo\n");
    b.append(m, 8, Bytes::from("3\n"), true).unwrap();
    assert_eq!(b.read(m).unwrap().unwrap(), "one\ntwo\n3\n");

    // Listing shows an append-only file as the file.
    assert_eq!(b.list("manifests/s").unwrap(), vec!["0.jsonl"]);
    assert_eq!(b.list("").unwrap(), vec!["events", "manifests"]);
    assert_eq!(b.read("nothing").unwrap(), None);
    assert_eq!(b.len("nothing").unwrap(), None);
}

/// Another client of the same prefix (another process, as far as the
/// bucket can tell).
fn bucket_at(b: &Bucket) -> Bucket {
    connect(&b.url_of(""), Duration::from_secs(1))
}

#[test]
fn a_chain_lease_is_held_renewed_and_taken_over_once_expired() {
    let b = bucket(Duration::from_secs(1));
    let m = "manifests/s/0.jsonl";
    let mut held = b.lock(m, "s/0").unwrap();
    let err = bucket_at(&b).lock(m, "s/0").err().unwrap();
    assert!(matches!(err, LedgerError::Locked { .. }), "{err}");
    // Renewed in time, it stays held.
    std::thread::sleep(Duration::from_millis(600));
    held.renew().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(bucket_at(&b).lock(m, "s/0").is_err(), "renewed lease holds");
    // Left to expire (a crashed writer: no release), another takes it,
    // and the old holder learns it lost it when it renews.
    std::mem::forget(held);
    std::thread::sleep(Duration::from_millis(1200));
    let mut successor = bucket_at(&b).lock(m, "s/0").unwrap();
    successor.renew().unwrap();
    drop(successor);
    // Released on drop: free at once.
    let again = b.lock(m, "s/0").unwrap();
    drop(again);
}

#[test]
fn a_store_in_a_bucket_is_written_verified_proved_and_queried() {
    let moto = moto();
    let store = format!("s3://{BUCKET}/{}", unique("store"));
    let dir = tempfile::tempdir().unwrap();
    let line = |i: usize| {
        format!(
            r#"{{"id":"b-{i}","time":"2026-11-29T10:{:02}:{:02}Z","kind":"access","actor":{{"id":"emp-{}"}},"action":"read","patient":"MRN-{}"}}"#,
            i / 60,
            i % 60,
            i % 7,
            i % 23
        ) + "\n"
    };
    let first: String = (0..200).map(line).collect();
    let second: String = (200..300).map(line).collect::<String>() + "{not json\n";
    let signer = dir.path().join("signer.key");
    let verifier = common::keygen_checkpoint(signer.to_str().unwrap());
    let verifier_file = dir.path().join("verifier.key");
    std::fs::write(&verifier_file, &verifier).unwrap();
    let config = common::write_config(
        dir.path(),
        std::path::Path::new(&store),
        &format!(
            "[store]\nflush_rows = 64\n[checkpoints]\nkey_file = \"{}\"\n",
            signer.display()
        ),
    );
    let config = config.to_str().unwrap();
    // Two runs: the second reopens every chain from the bucket and
    // appends to it.
    for (name, text) in [("first.jsonl", first), ("second.jsonl", second)] {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let ingest = run(
            &["ingest", "--config", config, input.to_str().unwrap()],
            &[],
        );
        assert_eq!(ingest.code, 0, "ingest {name}: {}", ingest.err);
    }

    let verify = run(
        &[
            "verify",
            &store,
            "--json",
            "--key",
            verifier_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(verify.code, 0, "verify: {}{}", verify.out, verify.err);
    let report: serde_json::Value = serde_json::from_str(&verify.out).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);

    let rows = common::query(
        std::path::Path::new(&store),
        "select count(*) as n, count(distinct id) as ids from events",
    );
    assert_eq!(
        (rows[0]["n"].as_u64(), rows[0]["ids"].as_u64()),
        (Some(300), Some(300))
    );
    let rejects = common::query(
        std::path::Path::new(&store),
        "select count(*) as n from rejects",
    );
    assert_eq!(rejects[0]["n"], 1);

    let prove = run(&["prove", "--store", &store, "b-123"], &[]);
    assert_eq!(prove.code, 0, "prove: {}", prove.err);
    assert!(prove.out.contains("\"leaf_index\""), "{}", prove.out);

    let proof = dir.path().join("proof.json");
    std::fs::write(&proof, &prove.out).unwrap();
    let offline = run(
        &[
            "verify-proof",
            proof.to_str().unwrap(),
            "--key",
            verifier_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        offline.code, 0,
        "verify-proof: {}{}",
        offline.out, offline.err
    );
    assert!(report["signatures_checked"].as_bool().unwrap());
    assert!(moto.endpoint.starts_with("http://"));
}

#[test]
fn an_unreachable_or_missing_bucket_stops_custos_with_a_clear_message() {
    let _ = moto();
    // No server on this port.
    let dead = common::free_addr();
    let verify = run(
        &["verify", &format!("s3://{BUCKET}/x")],
        &[("AWS_ENDPOINT_URL", &format!("http://{dead}"))],
    );
    assert_ne!(verify.code, 0);
    assert!(
        verify.err.contains(&format!("s3://{BUCKET}")),
        "names the bucket: {}",
        verify.err
    );
    let missing = run(&["verify", "s3://no-such-bucket/x"], &[]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.err.contains("s3://no-such-bucket"),
        "{}",
        missing.err
    );

    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        std::path::Path::new("s3://no-such-bucket/x"),
        "",
    );
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let ingest = run(
        &[
            "ingest",
            "--config",
            config.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(ingest.code, 0, "ingest must not start");
    assert!(ingest.err.contains("s3://no-such-bucket"), "{}", ingest.err);
}
