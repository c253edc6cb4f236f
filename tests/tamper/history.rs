//! Tamperings only the signed checkpoints (or the auditor's external
//! copies of them) can catch: history rewritten with its tree and
//! manifest roots recomputed, checkpoints forged or replayed, chains
//! rolled back or forked.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use custos::ledger::checkpoint::{Checkpoint, NoteSigner, unverified_text};
use custos::ledger::tree::{Frontier, STRIDE};
use custos::ledger::{ChainId, ManifestLine, Origin, Store, Table};
use rand::Rng;
use rand::rngs::StdRng;

use crate::build::{StoredNote, inputs, note_size};
use crate::cases::{Expect, Kind, Place};
use crate::edit::{changed_record, edit_lines, edit_manifest, pick_row, set_len};
use crate::lab::Lab;
use crate::{SIGNER, STREAM};

impl Lab {
    /// Changes one record and its column, then recomputes the log's tree
    /// strata and every manifest root after it: rows, tree and manifest
    /// agree, and only the signed checkpoints can tell.
    pub fn rewrite_history(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_line(rng, |_| true);
        let line = self.line(at);
        let c = &self.chains[at.0];
        let r = pick_row(rng, line.rows as u32) as usize;
        let mut record = String::new();
        self.rewrite(root, at, |b| {
            let (batch, new) = changed_record(b, line.table, r, true);
            record = new;
            batch
        });

        let dir = format!("tree/{}/{STREAM}/{}", line.table.as_str(), c.partition);
        let mut leaves: Vec<[u8; 32]> = self.honest.files[&format!("{dir}/0.hashes")]
            .chunks_exact(32)
            .map(|h| h.try_into().unwrap())
            .collect();
        leaves[(line.first_seq + r as u64) as usize] = self.alg.leaf(record.as_bytes());
        let ends: HashMap<u64, usize> = c
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.table == line.table)
            .map(|(i, l)| (l.end_seq(), i))
            .collect();
        let mut strata = vec![Vec::new(); 8];
        let mut roots = HashMap::new();
        let mut tree = Frontier::new(self.alg);
        for leaf in leaves {
            tree.push(leaf, |height, _, hash| {
                strata[(height / STRIDE) as usize].extend_from_slice(hash);
            });
            if let Some(&i) = ends.get(&tree.size()) {
                roots.insert(i, hex::encode(tree.root()));
            }
        }
        for (i, hashes) in strata.iter().enumerate() {
            let file = format!("{dir}/{}.hashes", i as u32 * STRIDE);
            if self.honest.files.contains_key(&file) {
                fs::write(root.join(file), hashes).unwrap();
            }
        }
        edit_manifest(root, &c.manifest, |i, v| {
            if let Some(hex) = roots.get(&i) {
                v["root"] = hex.clone().into();
            }
        });
        (
            format!("{} row {r}, with its tree and manifest roots", line.file),
            vec![Expect::file(&c.checkpoints)],
        )
    }

    /// A random stored checkpoint line: (chain index, line index).
    fn pick_checkpoint(&self, rng: &mut StdRng) -> (usize, usize) {
        let all: Vec<(usize, usize)> = self
            .chains
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| (0..c.checkpoint_lines.len()).map(move |li| (ci, li)))
            .collect();
        all[rng.random_range(0..all.len())]
    }

    /// Replaces the note of a stored checkpoint line.
    fn replace_note(&self, root: &Path, (ci, li): (usize, usize), note: String) -> Vec<Expect> {
        let c = &self.chains[ci];
        let mut line = c.checkpoint_lines[li].clone();
        line.note = note;
        let text = serde_json::to_string(&line).unwrap();
        edit_lines(root, &c.checkpoints, |i, _| {
            (i == li).then(|| Some(text.clone()))
        });
        vec![Expect::file(&c.checkpoints)]
    }

    pub fn change_checkpoint_body(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_checkpoint(rng);
        let note = &self.chains[at.0].checkpoint_lines[at.1].note;
        let split = note.rfind("\n\n").unwrap();
        let mut cp = Checkpoint::parse(&note[..split + 1]).unwrap();
        let how = match rng.random_range(0..3) {
            0 => {
                cp.size = if cp.size > 1 && rng.random_bool(0.5) {
                    cp.size - 1
                } else {
                    cp.size + 1
                };
                "size"
            }
            1 => {
                cp.root[rng.random_range(0..32)] ^= 1 << rng.random_range(0..8);
                "root"
            }
            _ => {
                cp.origin.push('0');
                "origin"
            }
        };
        let forged = format!("{}{}", cp.body(), &note[split + 1..]);
        let target = format!(
            "{} line {}: {how} changed",
            self.chains[at.0].checkpoints,
            at.1 + 1
        );
        (target, self.replace_note(root, at, forged))
    }

    pub fn sign_with_other_key(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_checkpoint(rng);
        let note = &self.chains[at.0].checkpoint_lines[at.1].note;
        let mut cp = Checkpoint::parse(unverified_text(note).unwrap()).unwrap();
        let name = if rng.random_bool(0.5) {
            SIGNER
        } else {
            "mallory"
        };
        let lie = rng.random_bool(0.5);
        if lie {
            cp.root = rng.random();
        }
        let other = NoteSigner::from_seed(name, rng.random()).unwrap();
        let forged = other.sign(&cp.body()).unwrap();
        let target = format!(
            "{} line {}: signed by another key named {name}{}",
            self.chains[at.0].checkpoints,
            at.1 + 1,
            if lie { ", other root" } else { "" }
        );
        (target, self.replace_note(root, at, forged))
    }

    /// Puts a genuine checkpoint of another log in place of one.
    pub fn replay_checkpoint(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_checkpoint(rng);
        let c = &self.chains[at.0];
        let table = c.checkpoint_lines[at.1].table;
        let others: Vec<&StoredNote> = self
            .notes
            .iter()
            .filter(|n| (n.partition, n.table) != (c.partition, table))
            .collect();
        let donor = others[rng.random_range(0..others.len())];
        let target = format!(
            "{} line {}: note of {}/{} size {} instead",
            c.checkpoints,
            at.1 + 1,
            donor.table.as_str(),
            donor.partition,
            donor.size
        );
        (target, self.replace_note(root, at, donor.note.clone()))
    }

    /// Rolls a chain back by its last flushes, consistently: manifest lines,
    /// segments and strata. `RolledBackWithCheckpoints` also drops the
    /// stored checkpoints the rollback would contradict, and `Forked` then
    /// appends other events: only the auditor's external copies catch those.
    pub fn roll_back(&self, root: &Path, kind: Kind, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let ci = rng.random_range(0..self.chains.len());
        let c = &self.chains[ci];
        let flushes = c.lines.last().unwrap().flush + 1;
        let cut = if rng.random_bool(0.1) {
            flushes
        } else {
            rng.random_range(1..=8.min(flushes))
        };
        let keep = c.lines.iter().filter(|l| l.flush < flushes - cut).count();
        for line in &c.lines[keep..] {
            fs::remove_file(root.join(&line.file)).unwrap();
        }
        edit_lines(root, &c.manifest, |i, _| (i >= keep).then_some(None));
        let mut sizes = HashMap::new();
        for table in [Table::Events, Table::Rejects] {
            let size = c.lines[..keep]
                .iter()
                .filter(|l| l.table == table)
                .map(ManifestLine::end_seq)
                .max()
                .unwrap_or(0);
            sizes.insert(table, size);
            for height in (0..64).step_by(STRIDE as usize) {
                let file = format!(
                    "tree/{}/{STREAM}/{}/{height}.hashes",
                    table.as_str(),
                    c.partition
                );
                if self.honest.files.contains_key(&file) {
                    set_len(&root.join(file), (size >> height) * 32);
                }
            }
        }
        let mut target = format!(
            "chain {STREAM}/{} rolled back by {cut} of {flushes} flushes (to {} events, {} rejects)",
            c.partition,
            sizes[&Table::Events],
            sizes[&Table::Rejects]
        );
        if kind == Kind::RolledBack {
            return (target, vec![Expect::file(&c.checkpoints)]);
        }

        edit_lines(root, &c.checkpoints, |i, _| {
            let line = &c.checkpoint_lines[i];
            (note_size(&line.note) > sizes[&line.table]).then_some(None)
        });
        target.push_str(", stored checkpoints beyond cut");
        if kind == Kind::Forked {
            let store = Store::open_existing(root).unwrap();
            let mut w = store
                .chain_writer(&ChainId::new(STREAM, c.partition))
                .unwrap();
            let next_offset = c.lines[..keep]
                .iter()
                .map(|l| l.last_offset + 1)
                .max()
                .unwrap_or(0);
            let (examples, _) = inputs();
            let n = rng.random_range(1..=600);
            for i in 0..n {
                let mut event = examples[i % examples.len()].clone();
                event.id = format!("forged-{i}");
                w.push_event(Origin::kafka(next_offset + i as i64), &event);
            }
            w.flush().unwrap();
            target.push_str(&format!(", then {n} other events appended"));
        }
        // Each log the rollback shrank has an external checkpoint beyond the cut.
        let any: Vec<Place> = self
            .external
            .iter()
            .enumerate()
            .filter(|(_, n)| n.partition == c.partition && n.size > sizes[&n.table])
            .map(|(i, _)| Place {
                file: "checkpoints".into(),
                what: Some(format!("external checkpoint {}:", i + 1)),
            })
            .collect();
        assert!(!any.is_empty(), "no external checkpoint covers the cut");
        (target, vec![Expect { any, row: None }])
    }
}
