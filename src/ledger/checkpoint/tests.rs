use super::*;

fn signer() -> NoteSigner {
    NoteSigner::from_seed("custos.example/ledger", [7; 32]).unwrap()
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "custos.example/ledger".into(),
        size: 12345,
        root: *blake3::hash(b"root").as_bytes(),
    }
}

#[test]
fn a_signed_checkpoint_opens_with_its_verifier_key() {
    let s = signer();
    let note = s.sign(&checkpoint().body()).unwrap();
    let text = s.verifier().open(&note).unwrap();
    assert_eq!(Checkpoint::parse(text).unwrap(), checkpoint());
    assert!(note.contains("\n\n\u{2014} custos.example/ledger "));
}

#[test]
fn the_key_id_follows_the_signed_note_formula() {
    let s = signer();
    let public = s.verifier().key.to_bytes();
    let mut input = b"custos.example/ledger\n\x01".to_vec();
    input.extend_from_slice(&public);
    let digest = sha2::Sha256::digest(&input);
    let text = s.verifier().to_text();
    assert!(text.starts_with(&format!(
        "custos.example/ledger+{}+",
        hex::encode(&digest[..4])
    )));
}

#[test]
fn keys_round_trip_through_text() {
    let s = signer();
    let again = NoteSigner::parse(&s.to_text()).unwrap();
    assert_eq!(again.verifier().to_text(), s.verifier().to_text());
    let v = NoteVerifier::parse(&s.verifier().to_text()).unwrap();
    let note = again.sign("hello\n").unwrap();
    assert_eq!(v.open(&note).unwrap(), "hello\n");
    assert!(!format!("{s:?}").contains(&s.to_text()[12..]));
}

#[test]
fn any_change_to_a_signed_checkpoint_is_refused() {
    let s = signer();
    let v = s.verifier();
    let note = s.sign(&checkpoint().body()).unwrap();
    let body_len = checkpoint().body().len();
    for i in 0..body_len {
        let mut bytes = note.clone().into_bytes();
        bytes[i] ^= 0x01;
        if let Ok(changed) = String::from_utf8(bytes) {
            assert!(
                v.open(&changed).is_err(),
                "byte {i} changed and still verified"
            );
        }
    }
    let rolled_back = note.replace("12345", "12344");
    assert!(v.open(&rolled_back).is_err());
    let other = NoteSigner::from_seed("custos.example/ledger", [8; 32]).unwrap();
    assert!(
        other.verifier().open(&note).is_err(),
        "another key's verifier"
    );
}

#[test]
fn malformed_input_is_an_error_never_a_panic() {
    let v = signer().verifier();
    for note in [
        "",
        "\n\n",
        "text\n\n",
        "text\n\nno dash\n",
        "text\n\n\u{2014} name\n",
        "text\n\n\u{2014} custos.example/ledger !!!\n",
        "text\n\n\u{2014} custos.example/ledger AAAA\n",
    ] {
        assert!(v.open(note).is_err(), "{note:?}");
    }
    for key in ["", "a+b", "name+zz+AAAA", "name+00000000+", "PRIVATE+KEY+x"] {
        assert!(NoteVerifier::parse(key).is_err(), "{key}");
        assert!(NoteSigner::parse(key).is_err(), "{key}");
    }
    for body in [
        "",
        "o\n1\n",
        "o\n01\nAAAA\n",
        "o\n-1\nAAAA\n",
        "o\n1\nAAAA\n",
        "\n1\nAAAA\n",
    ] {
        assert!(Checkpoint::parse(body).is_err(), "{body:?}");
    }
    assert!(signer().sign("no newline").is_err());
    assert!(signer().sign("blank\n\nline\n").is_err());
}

/// Base64 key material often holds `+`; keys must still read back.
#[test]
fn random_keys_read_back_whatever_their_base64_holds() {
    let mut with_plus = 0;
    for i in 0..300u32 {
        let seed = *blake3::hash(&i.to_le_bytes()).as_bytes();
        let signer = NoteSigner::from_seed("log.example/a", seed).unwrap();
        let text = signer.to_text();
        let verifier = signer.verifier().to_text();
        with_plus += usize::from(text.matches('+').count() > 4);
        let again = NoteSigner::parse(&text).unwrap();
        assert_eq!(again.to_text(), text);
        assert_eq!(NoteVerifier::parse(&verifier).unwrap().to_text(), verifier);
    }
    assert!(
        with_plus > 50,
        "the test must cover keys with + in their base64"
    );
}
