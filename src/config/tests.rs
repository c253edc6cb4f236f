use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

#[test]
fn defaults_need_only_a_key() {
    let err = Config::load(None, env(&[]), &[]).unwrap_err().to_string();
    assert!(err.contains("privacy.pseudonym_key is not set"), "{err}");
    let c = Config::load(None, env(&[("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)]), &[]).unwrap();
    assert_eq!(c.kafka.group_id, "custos");
    // One detector of every access type and model abuse (`access_rate`,
    // which `pace` supersedes, only when named).
    assert_eq!(c.detectors.len(), 13);
    assert!(
        c.detectors
            .iter()
            .all(|d| !matches!(d, crate::detect::DetectorConfig::AccessRate(_)))
    );
}

#[test]
fn env_then_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custos.toml");
    std::fs::write(
        &file,
        "[kafka]\ngroup_id = \"from-file\"\ntopics = [\"a\"]\n[store]\nflush_rows = 10\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&file),
        env(&[
            ("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY),
            ("CUSTOS_KAFKA_GROUP_ID", "from-env"),
            ("CUSTOS_KAFKA_TOPICS", "x,y"),
            ("CUSTOS_STORE_FLUSH_ROWS", "20"),
            ("CUSTOS_TEST_KAFKA_DIR", "/ignored"),
        ]),
        &["store.flush_rows=30".into()],
    )
    .unwrap();
    assert_eq!(c.kafka.group_id, "from-env");
    assert_eq!(c.kafka.topics, vec!["x", "y"]);
    assert_eq!(c.store.flush_rows, 30);
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Config::load(
        None,
        env(&[
            ("CUSTOS_PRIVACY_PSEUDONYM_KEY", "beef"),
            ("CUSTOS_STORE_FLUSH_ROWS", "0"),
            ("CUSTOS_HTTP_LISTEN", "nowhere"),
            ("CUSTOS_KAFKA_TOPICS", "bad topic!"),
        ]),
        &[],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "store.flush_rows",
        "http.listen",
        "bad topic!",
        "privacy.pseudonym_key: the key must be 64 hex digits",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    assert!(
        !err.contains("beef"),
        "a secret leaked into the error: {err}"
    );
}

#[test]
fn unknown_keys_and_bad_types_are_refused() {
    let err = Config::load(
        None,
        env(&[
            ("CUSTOS_PRIVACY_DEMO_KEY", "true"),
            ("CUSTOS_STORE_FLUSH_ROWS", "many"),
        ]),
        &["store.colour=blue".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("CUSTOS_STORE_FLUSH_ROWS: expected an integer"),
        "{err}"
    );
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn secrets_never_show_in_debug() {
    let c = Config::load(None, env(&[("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)]), &[]).unwrap();
    assert!(!format!("{c:?}").contains(KEY));
}

#[test]
fn librdkafka_properties_take_dotted_names_and_reserved_ones_are_refused() {
    let c = Config::load(
        None,
        env(&[
            ("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY),
            ("CUSTOS_KAFKA_CLIENT_SASL_PASSWORD", "pw"),
        ]),
        &["kafka.client.fetch.wait.max.ms=10".into()],
    )
    .unwrap();
    assert_eq!(
        c.kafka.client.get("sasl.password").map(String::as_str),
        Some("pw")
    );
    assert_eq!(
        c.kafka.client.get("fetch.wait.max.ms").map(String::as_str),
        Some("10")
    );
    let err = Config::load(
        None,
        env(&[("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)]),
        &["kafka.client.enable.auto.commit=true".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("enable.auto.commit"), "{err}");
}

#[test]
fn the_segment_key_comes_from_text_or_a_file_never_both() {
    let load = |pairs: &[(&str, &str)]| {
        let mut all = vec![("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)];
        all.extend_from_slice(pairs);
        Config::load(None, env(&all), &[])
            .unwrap()
            .store
            .segment_key()
    };
    assert!(load(&[]).unwrap().is_none());
    assert!(
        load(&[("CUSTOS_STORE_ENCRYPTION_KEY", "")])
            .unwrap()
            .is_none()
    );
    let key = load(&[("CUSTOS_STORE_ENCRYPTION_KEY", KEY)])
        .unwrap()
        .unwrap();
    assert!(key.id().starts_with("sk1-") && key.id().len() == 12);
    assert!(!format!("{key:?}").contains(&key.parquet_key_hex()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("segment.key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let path = file.display().to_string();
    let from_file = load(&[("CUSTOS_STORE_ENCRYPTION_KEY_FILE", &path)])
        .unwrap()
        .unwrap();
    assert_eq!(from_file.id(), key.id());
    let err = load(&[("CUSTOS_STORE_ENCRYPTION_KEY", "abc")]).unwrap_err();
    assert!(
        err.contains("64 hex digits") && !err.contains("abc"),
        "{err}"
    );
    let both = [
        ("CUSTOS_STORE_ENCRYPTION_KEY", KEY),
        ("CUSTOS_STORE_ENCRYPTION_KEY_FILE", &path),
    ];
    assert!(load(&both).unwrap_err().contains("only one"));
}

#[test]
fn reference_files_come_from_the_file_env_and_flags_and_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let care = dir.path().join("care team.csv");
    let vip = dir.path().join("vip.parquet");
    std::fs::write(&care, "patient,dept\n").unwrap();
    std::fs::write(&vip, "").unwrap();
    let file = dir.path().join("custos.toml");
    std::fs::write(&file, "[reference]\nroster = \"absent.csv\"\n").unwrap();
    let err = Config::load(
        Some(&file),
        env(&[("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)]),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("reference.roster absent.csv: no such file"),
        "{err}"
    );
    let c = Config::load(
        Some(&file),
        env(&[
            ("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY),
            ("CUSTOS_REFERENCE_CARE_TEAM", &care.display().to_string()),
            ("CUSTOS_REFERENCE_ROSTER", ""),
            ("CUSTOS_REFERENCE_RELOAD_SECS", "5"),
        ]),
        &[format!("reference.vip={}", vip.display())],
    )
    .unwrap();
    assert_eq!(c.reference.care_team.as_deref(), Some(care.as_path()));
    assert_eq!(c.reference.vip.as_deref(), Some(vip.as_path()));
    assert_eq!(c.reference.reload_secs, 5);
    let tables: Vec<&str> = c.reference.files().iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tables,
        ["vip", "care_team"],
        "an empty value unsets a table"
    );
}
