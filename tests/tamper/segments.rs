//! Tamperings of segments, strata and manifest lines: digits flipped,
//! cells, records and rows changed with the manifest resealed (so only
//! the row and tree checks can catch them).

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use custos::ledger::Table;
use rand::Rng;
use rand::rngs::StdRng;

use crate::cases::Expect;
use crate::edit::{
    changed_record, edit_lines, first_difference, pick, pick_row, read_segment, reseal, string_at,
    value_span, with_cell_changed, with_string, write_segment,
};
use crate::lab::Lab;

impl Lab {
    /// A stratum file of some log (0.hashes or a higher one).
    pub fn pick_stratum(&self, rng: &mut StdRng) -> String {
        let strata: Vec<&String> = self
            .honest
            .files
            .iter()
            .filter(|(f, b)| f.starts_with("tree/") && f.ends_with(".hashes") && !b.is_empty())
            .map(|(f, _)| f)
            .collect();
        strata[rng.random_range(0..strata.len())].clone()
    }

    /// Changes one digit of a field value of a manifest line, keeping the
    /// line valid JSON.
    pub fn flip_manifest_digit(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        const FIELDS: [&str; 11] = [
            "root",
            "file_blake3",
            "rows",
            "bytes",
            "first_seq",
            "first_offset",
            "last_offset",
            "min_time_us",
            "max_time_us",
            "flush",
            "flush_segments",
        ];
        let (ci, li) = self.pick_line(rng, |_| true);
        let c = &self.chains[ci];
        let text = String::from_utf8(self.honest.files[&c.manifest].clone()).unwrap();
        let line = text.lines().nth(li).unwrap();
        let spans: Vec<(&str, (usize, usize))> = FIELDS
            .iter()
            .filter_map(|&f| value_span(line, f).map(|s| (f, s)))
            .collect();
        let (field, (start, end)) = spans[rng.random_range(0..spans.len())];
        let hex = line.as_bytes()[start] == b'"';
        let digits: Vec<usize> = (start..end)
            .filter(|&i| line.as_bytes()[i].is_ascii_hexdigit())
            .collect();
        let at = digits[rng.random_range(0..digits.len())];
        let old = line.as_bytes()[at];
        let choices: &[u8] = if hex {
            b"0123456789abcdef"
        } else if at == digits[0] && digits.len() > 1 {
            b"123456789"
        } else {
            b"0123456789"
        };
        let new = loop {
            let c = choices[rng.random_range(0..choices.len())];
            if c != old {
                break c;
            }
        };
        let mut edited = line.as_bytes().to_vec();
        edited[at] = new;
        let edited = String::from_utf8(edited).unwrap();
        edit_lines(root, &c.manifest, |i, _| {
            (i == li).then(|| Some(edited.clone()))
        });
        let file = &c.lines[li].file;
        (
            format!(
                "{} line {} ({file}) {field} {:?} -> {:?}",
                c.manifest,
                li + 1,
                &line[start..end],
                &edited[start..end]
            ),
            vec![Expect::file(&c.manifest)],
        )
    }

    /// Rewrites segment `at` with `edit` and reseals its manifest line;
    /// returns the first row that differs.
    pub fn rewrite(
        &self,
        root: &Path,
        at: (usize, usize),
        edit: impl FnOnce(&RecordBatch) -> RecordBatch,
    ) -> u64 {
        let line = self.line(at);
        let path = root.join(&line.file);
        let (old, meta) = read_segment(&path);
        let new = edit(&old);
        write_segment(&path, &new, meta);
        reseal(root, &self.chains[at.0].manifest, &line.file);
        first_difference(&old, &new)
    }

    pub fn change_column(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_line(rng, |_| true);
        let line = self.line(at);
        let columns: &[&str] = match line.table {
            Table::Events => &[
                "seq",
                "stream",
                "partition",
                "offset",
                "id",
                "time",
                "kind",
                "actor_id",
                "actor_role",
                "patient",
                "action",
                "records",
            ],
            Table::Rejects => &[
                "seq", "stream", "offset", "reason", "detail", "key", "payload",
            ],
            Table::Incidents => &["seq", "stream", "offset"],
            Table::QueryLog => &["seq", "stream", "offset", "who", "sql"],
        };
        let column = columns[rng.random_range(0..columns.len())];
        let r = pick_row(rng, line.rows as u32) as usize;
        let row = self.rewrite(root, at, |b| with_cell_changed(b, column, r));
        (
            format!("{} row {r} column {column}", line.file),
            vec![Expect::row(&line.file, row)],
        )
    }

    /// Changes the record of one row: with its column (so only the tree
    /// can tell), alone, or only in its bytes (same JSON, other leaf).
    pub fn change_record(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_line(rng, |_| true);
        let line = self.line(at);
        let r = pick_row(rng, line.rows as u32) as usize;
        let how = ["with its column", "alone", "in its bytes only"][rng.random_range(0..3)];
        let table = line.table;
        let row = self.rewrite(root, at, |b| match how {
            "in its bytes only" => {
                let record = format!("{} ", string_at(b, "record", r));
                with_string(b, "record", r, &record)
            }
            _ => changed_record(b, table, r, how == "with its column").0,
        });
        (
            format!("{} row {r} record changed {how}", line.file),
            vec![Expect::row(&line.file, row)],
        )
    }

    pub fn edit_rows(
        &self,
        root: &Path,
        rng: &mut StdRng,
        what: &str,
        rows: impl FnOnce(&mut StdRng, u32) -> Vec<u32>,
    ) -> (String, Vec<Expect>) {
        let min = if what == "swapped" { 2 } else { 1 };
        let at = self.pick_line(rng, |l| l.rows >= min);
        let line = self.line(at);
        let order = rows(rng, line.rows as u32);
        let row = self.rewrite(root, at, |b| pick(b, &order));
        let shown = if order.len() > 12 {
            let (a, b) = (
                row.saturating_sub(2) as usize,
                (row as usize + 3).min(order.len()),
            );
            format!("…{:?}…", &order[a..b])
        } else {
            format!("{order:?}")
        };
        (
            format!("{} rows {what}: now {shown} of {}", line.file, line.rows),
            vec![Expect::row(&line.file, row)],
        )
    }

    /// Swaps the last row of a segment with the first row of the next
    /// segment of its table.
    pub fn swap_across_segments(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let next_of = |(ci, li): (usize, usize)| {
            let lines = &self.chains[ci].lines;
            let table = lines[li].table;
            (li + 1..lines.len())
                .find(|&j| lines[j].table == table)
                .map(|j| (ci, j))
        };
        let a = loop {
            let a = self.pick_line(rng, |_| true);
            if next_of(a).is_some() {
                break a;
            }
        };
        let b = next_of(a).unwrap();
        let (la, lb) = (self.line(a), self.line(b));
        let (old_a, meta_a) = read_segment(&root.join(&la.file));
        let (old_b, meta_b) = read_segment(&root.join(&lb.file));
        let n = old_a.num_rows();
        let schema = old_a.schema();
        let new_a = concat_batches(&schema, &[old_a.slice(0, n - 1), old_b.slice(0, 1)]).unwrap();
        let new_b = concat_batches(
            &schema,
            &[old_a.slice(n - 1, 1), old_b.slice(1, old_b.num_rows() - 1)],
        )
        .unwrap();
        write_segment(&root.join(&la.file), &new_a, meta_a);
        write_segment(&root.join(&lb.file), &new_b, meta_b);
        let manifest = &self.chains[a.0].manifest;
        reseal(root, manifest, &la.file);
        reseal(root, manifest, &lb.file);
        (
            format!("{} row {} <-> {} row 0", la.file, n - 1, lb.file),
            vec![
                Expect::row(&la.file, n as u64 - 1),
                Expect::row(&lb.file, 0),
            ],
        )
    }
}
