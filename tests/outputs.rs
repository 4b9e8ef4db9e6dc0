//! Output operations: `foreach_batch`, `foreach_partition`, `save_as_text_files`, `print`.
//!
//! Input (3 default partitions, `|` separates them):
//! ```text
//! batch 1 (100 ms): a b | c d | e f g
//! batch 2 (200 ms):     |     |         (empty, 3 partitions)
//! batch 3 (300 ms):     | h   | i
//! batch 4 (400 ms): (queue used up: no partitions)
//! ```

mod common;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use rivulet::prelude::*;

fn input() -> Vec<Vec<String>> {
    vec![
        strings(&["a", "b", "c", "d", "e", "f", "g"]),
        vec![],
        strings(&["h", "i"]),
    ]
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[actix::test]
async fn foreach_batch_gets_each_batch_with_its_time_in_order() {
    within(async {
        let ssc = context(2, 3);
        let seen: Arc<Mutex<Vec<(Time, Vec<String>)>>> = Arc::default();
        let sink = seen.clone();
        ssc.queue_stream(input())
            .foreach_batch(move |t, records| sink.lock().unwrap().push((t, records)));
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (batch_time(1), strings(&["a", "b", "c", "d", "e", "f", "g"])),
                (batch_time(2), vec![]),
                (batch_time(3), strings(&["h", "i"])),
                (batch_time(4), vec![]),
            ]
        );
    })
    .await
}

#[actix::test]
async fn foreach_partition_runs_once_per_partition() {
    within(async {
        let ssc = context(2, 3);
        let seen: Arc<Mutex<Vec<(usize, Vec<String>)>>> = Arc::default();
        let sink = seen.clone();
        ssc.queue_stream(input())
            .foreach_partition(move |p, records| {
                sink.lock().unwrap().push((p, records.collect()));
                Ok(())
            });
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        let mut first = std::mem::take(&mut *seen.lock().unwrap());
        first.sort();
        assert_eq!(
            first,
            vec![
                (0, strings(&["a", "b"])),
                (1, strings(&["c", "d"])),
                (2, strings(&["e", "f", "g"])),
            ]
        );
        ssc.advance(3).await.unwrap();
        let mut rest = std::mem::take(&mut *seen.lock().unwrap());
        rest.sort();
        // Batch 2: three empty partitions; batch 3: [] [h] [i]; batch 4: no partitions.
        assert_eq!(
            rest,
            vec![
                (0, vec![]),
                (0, vec![]),
                (1, vec![]),
                (1, strings(&["h"])),
                (2, vec![]),
                (2, strings(&["i"])),
            ]
        );
        ssc.stop(StopMode::Graceful).await.unwrap();
    })
    .await
}

#[actix::test]
async fn save_as_text_files_writes_a_directory_per_batch() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ssc = context(2, 3);
        let s = ssc.queue_stream(input());
        s.save_as_text_files(dir.path().join("batch"), "");
        s.map(|w| format!("{w}\t{}", w.len()))
            .save_as_text_files(dir.path().join("out"), "txt");
        ssc.start().await.unwrap();
        ssc.advance(4).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        assert_eq!(
            names(dir.path()),
            vec![
                "batch-100",
                "batch-200",
                "batch-300",
                "batch-400",
                "out-100.txt",
                "out-200.txt",
                "out-300.txt",
                "out-400.txt"
            ]
        );
        let read = |batch: &str, part: &str| {
            fs::read_to_string(dir.path().join(batch).join(part)).unwrap()
        };
        let parts = vec!["_SUCCESS", "part-00000", "part-00001", "part-00002"];
        assert_eq!(names(&dir.path().join("batch-100")), parts);
        assert_eq!(read("batch-100", "part-00000"), "a\nb\n");
        assert_eq!(read("batch-100", "part-00001"), "c\nd\n");
        assert_eq!(read("batch-100", "part-00002"), "e\nf\ng\n");
        assert_eq!(read("batch-100", "_SUCCESS"), "");
        assert_eq!(names(&dir.path().join("batch-200")), parts);
        for p in &parts[1..] {
            assert_eq!(read("batch-200", p), "", "{p}");
        }
        assert_eq!(read("batch-300", "part-00000"), "");
        assert_eq!(read("batch-300", "part-00001"), "h\n");
        assert_eq!(read("batch-300", "part-00002"), "i\n");
        // A batch with no partitions still gets its directory and _SUCCESS.
        assert_eq!(names(&dir.path().join("batch-400")), vec!["_SUCCESS"]);
        assert_eq!(read("out-100.txt", "part-00002"), "e\t1\nf\t1\ng\t1\n");
        assert_eq!(read("out-300.txt", "part-00001"), "h\t1\n");
    })
    .await
}

#[actix::test]
async fn save_as_text_files_replaces_a_batch_that_ran_again() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("batch");
        let ckpt = dir.path().join(".ckpt");
        // First run: batch 1 in 3 partitions, checkpointed.
        let first = StreamingContext::get_or_create(&ckpt, config(2, 3), |ssc| {
            ssc.queue_stream(input()).save_as_text_files(&prefix, "");
            Ok(())
        })
        .unwrap();
        first.start().await.unwrap();
        first.advance(1).await.unwrap();
        first.stop(StopMode::Now).await.unwrap();
        drop(first);
        let parts3 = vec!["_SUCCESS", "part-00000", "part-00001", "part-00002"];
        assert_eq!(names(&dir.path().join("batch-100")), parts3);
        // The process died after batch 1's output but before its metadata checkpoint: the
        // restart resumes before batch 1, which runs again (now with other records in 2
        // partitions): the directory is replaced, not merged (no part-00002 left over).
        {
            use rivulet::framework::checkpoint::{CheckpointStore, Key, Tree};
            let store = open_store(&ckpt);
            store
                .remove(Tree::Meta, &Key::Meta { batch_ms: 100 }.encode())
                .unwrap();
            store.flush().unwrap();
        }
        let again = StreamingContext::get_or_create(&ckpt, config(2, 2), |ssc| {
            ssc.queue_stream(vec![strings(&["x", "y", "z"])])
                .save_as_text_files(&prefix, "");
            Ok(())
        })
        .unwrap();
        assert_eq!(again.restored_batch(), Some(Time::from_ms(0)));
        again.start().await.unwrap();
        again.advance(1).await.unwrap();
        again.stop(StopMode::Graceful).await.unwrap();
        // Exactly one copy, and no temporary or set-aside directory (hidden names aside from
        // the checkpoint directory).
        let listed: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n != ".ckpt")
            .collect();
        assert_eq!(listed, vec!["batch-100"]);
        let batch = dir.path().join("batch-100");
        assert_eq!(names(&batch), vec!["_SUCCESS", "part-00000", "part-00001"]);
        let mut lines: Vec<String> = ["part-00000", "part-00001"]
            .iter()
            .flat_map(|p| {
                let text = fs::read_to_string(batch.join(p)).unwrap();
                text.lines().map(str::to_string).collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        assert_eq!(lines, strings(&["x", "y", "z"]));
    })
    .await
}

/// Opens the checkpoint store, retrying while the previous run's actors release it.
fn open_store(dir: &std::path::Path) -> rivulet::actors::SledCheckpointStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match rivulet::actors::SledCheckpointStore::open(dir) {
            Ok(store) => return store,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[actix::test]
async fn save_as_text_files_refuses_a_prefix_holding_an_earlier_runs_batches() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("batch");
        fs::create_dir(dir.path().join("batch-100")).unwrap();
        let ssc = context(1, 1);
        ssc.queue_stream(input()).save_as_text_files(&prefix, "");
        ssc.start().await.unwrap();
        let err = ssc.advance(1).await.unwrap_err().to_string();
        assert!(
            err.contains("earlier run") && err.contains("batch-100"),
            "{err}"
        );
        ssc.stop(StopMode::Now).await.unwrap();
        assert!(
            names(&dir.path().join("batch-100")).is_empty(),
            "nothing written into it"
        );
    })
    .await
}

#[actix::test]
async fn print_runs_as_an_output() {
    within(async {
        let ssc = context(2, 3);
        let events = Events::attach(&ssc);
        let s = ssc.queue_stream(input());
        s.print(2);
        s.map(|w| (w, 1u8)).print(100);
        ssc.start().await.unwrap();
        ssc.advance(4).await.expect("print must not fail");
        ssc.stop(StopMode::Graceful).await.unwrap();
        let outputs: Vec<OutputOperationInfo> = events
            .all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Output(o) => Some(o),
                _ => None,
            })
            .collect();
        assert_eq!(outputs.len(), 8, "{outputs:?}");
        for o in &outputs {
            assert!(o.name.starts_with("print at tests/outputs.rs:"), "{o:?}");
            assert_eq!(o.failure, None, "{o:?}");
        }
    })
    .await
}
