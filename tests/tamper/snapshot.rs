//! Snapshots of a store: every folder and file with its content, taken
//! once from the honest store and restored into a working copy after
//! each case (only what differs is rewritten).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Every folder and file of a store, with content.
#[derive(Default)]
pub struct Snapshot {
    pub dirs: BTreeSet<String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Calls `f(rel, is_dir)` for everything under `root`, parents first.
fn walk(root: &Path, rel: &str, f: &mut impl FnMut(String, bool)) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            f(child.clone(), true);
            walk(root, &child, f);
        } else {
            f(child, false);
        }
    }
}

impl Snapshot {
    pub fn take(root: &Path) -> Snapshot {
        let mut snap = Snapshot::default();
        walk(root, "", &mut |rel, is_dir| {
            if is_dir {
                snap.dirs.insert(rel);
            } else {
                let bytes = fs::read(root.join(&rel)).unwrap();
                snap.files.insert(rel, bytes);
            }
        });
        snap
    }

    /// Makes `root` hold exactly the snapshot (creating it if need be).
    pub fn restore(&self, root: &Path) {
        fs::create_dir_all(root).unwrap();
        let (mut seen, mut extra_dirs) = (BTreeSet::new(), Vec::new());
        walk(root, "", &mut |rel, is_dir| {
            let path = root.join(&rel);
            if is_dir {
                if !self.dirs.contains(&rel) {
                    extra_dirs.push(rel);
                }
                return;
            }
            match self.files.get(&rel) {
                None => fs::remove_file(&path).unwrap(),
                Some(bytes) => {
                    let same = fs::metadata(&path).unwrap().len() == bytes.len() as u64
                        && fs::read(&path).unwrap() == *bytes;
                    if !same {
                        fs::write(&path, bytes).unwrap();
                    }
                    seen.insert(rel);
                }
            }
        });
        for dir in extra_dirs.iter().rev() {
            fs::remove_dir_all(root.join(dir)).unwrap();
        }
        for dir in &self.dirs {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (rel, bytes) in &self.files {
            if !seen.contains(rel) {
                fs::write(root.join(rel), bytes).unwrap();
            }
        }
    }
}
