//! `text_file_stream(dir)`: files present before start are ignored; files moved into the
//! directory between batches (written elsewhere on the same file system, then renamed in)
//! are read once each, line by line, and no batch before the move holds their lines.
//! Hidden (`.name`) and temporary (`_name`) files are ignored, and entries that cannot be
//! read (a directory, a broken symlink) are skipped while the stream goes on. The stream is
//! polled as each batch is cut (no receiver), so the first batches after start see the files.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::*;
use rivulet::prelude::*;

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, text(lines)).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Writes `lines` to `staging/name`, then renames the file into `dir`.
fn move_in(staging: &Path, dir: &Path, name: &str, lines: &[String]) {
    let tmp = staging.join(name);
    write_lines(&tmp, lines);
    fs::rename(&tmp, dir.join(name)).unwrap();
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

#[actix::test]
async fn moved_files_are_read_once_and_old_ones_ignored() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("incoming");
        let staging = root.path().join("staging");
        fs::create_dir(&dir).unwrap();
        fs::create_dir(&staging).unwrap();
        write_lines(&dir.join("old.txt"), &numbered("old", 3));

        let ssc = context(2, 3);
        let lines = ssc.text_file_stream(&dir).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();

        // First file.
        let a = numbered("a", 3);
        let before_a = lines.len();
        move_in(&staging, &dir, "a.txt", &a);
        advance_until(&ssc, || lines.records().len() >= a.len()).await;
        assert_eq!(lines.records(), a);

        // Ignored and unreadable entries, then two files at once (one of them large, read
        // in several chunks).
        move_in(&staging, &dir, ".hidden", &numbered("hidden", 2));
        move_in(&staging, &dir, "_temporary", &numbered("temporary", 2));
        fs::create_dir(staging.join("subdir")).unwrap();
        fs::rename(staging.join("subdir"), dir.join("subdir")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.path().join("nowhere"), dir.join("broken-link")).unwrap();
        let b = numbered("b", 10);
        let c = numbered("c", 9000);
        let before_bc = lines.len();
        move_in(&staging, &dir, "b.txt", &b);
        move_in(&staging, &dir, "c.txt", &c);
        let total = a.len() + b.len() + c.len();
        advance_until(&ssc, || lines.records().len() >= total).await;
        // The old file changes after start: still not a new file. A last file moved in
        // after it is read after it would have been, had it counted as new.
        fs::write(dir.join("old.txt"), "old again\n").unwrap();
        let last = numbered("last", 1);
        move_in(&staging, &dir, "zz-last.txt", &last);
        advance_until(&ssc, || lines.records().len() > total).await;
        ssc.advance(3).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        let batches = lines.batches();
        assert_eq!(lines.records(), [a.clone(), b, c, last].concat());
        assert!(
            batches[..before_a].iter().all(Vec::is_empty),
            "no batch before the move holds the file's lines"
        );
        assert_eq!(batches[..before_bc].concat(), a);
        assert!(batches[batches.len() - 3..].iter().all(Vec::is_empty));
        let times: Vec<i64> = lines
            .timed_batches()
            .iter()
            .map(|(t, _)| t.as_ms())
            .collect();
        let expected_times: Vec<i64> = (1..=batches.len() as i64).map(|i| i * BATCH_MS).collect();
        assert_eq!(times, expected_times);
    })
    .await
}

#[actix::test]
async fn files_moved_between_batches_land_in_later_batches_only() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("in");
        let staging = root.path().join("tmp");
        fs::create_dir(&dir).unwrap();
        fs::create_dir(&staging).unwrap();
        let ssc = context(1, 2);
        let counts = ssc
            .text_file_stream(&dir)
            .flat_map(|l: String| words_of(&l))
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .collect_batches();
        ssc.start().await.unwrap();

        let mut expected: HashMap<String, u64> = HashMap::new();
        for round in 0..3usize {
            let before = counts.len();
            let marker = format!("round{round}");
            // Round r: r + 1 lines of 3 words each.
            let file_lines: Vec<String> = ["alpha", "beta", "gamma"][..=round]
                .iter()
                .map(|w| format!("{w} Alpha, {marker}"))
                .collect();
            for l in &file_lines {
                for w in words_of(l) {
                    *expected.entry(w).or_default() += 1;
                }
            }
            move_in(&staging, &dir, &format!("f{round}.txt"), &file_lines);
            let target: u64 = expected.values().sum();
            advance_until(&ssc, || {
                counts.records().iter().map(|(_, n)| n).sum::<u64>() >= target
            })
            .await;
            assert!(
                counts.batches()[..before]
                    .iter()
                    .flatten()
                    .all(|(w, _)| *w != marker),
                "round {round}'s file counted before it was moved in"
            );
        }
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        // Summed over all batches, each file's words are counted once.
        let mut summed: HashMap<String, u64> = HashMap::new();
        for (w, n) in counts.records() {
            *summed.entry(w).or_default() += n;
        }
        assert_eq!(summed, expected);
    })
    .await
}
