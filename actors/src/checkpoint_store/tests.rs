use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use rivulet_framework::checkpoint::{decode, encode, Key};

use super::*;

const KILL_VAR: &str = "RIVULET_TEST_KILL_AT_STEP";
const DIR_VAR: &str = "RIVULET_TEST_STORE_DIR";

/// SIGKILLs this process at compaction step `step` when [`KILL_VAR`] names it.
pub(super) fn kill_at(step: u8) {
    if std::env::var(KILL_VAR).ok().and_then(|v| v.parse().ok()) == Some(step) {
        let _ = Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        // SIGKILL is not deliverable late; this only runs if `kill` is missing.
        std::process::abort();
    }
}

fn data(time_ms: i64, partition: u32) -> Key {
    Key::Data {
        stream: 3,
        time_ms,
        partition,
    }
}

/// A value of `len` bytes, different for each `seed`.
fn value(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn policy(floor_bytes: u64) -> CompactionPolicy {
    CompactionPolicy {
        floor_bytes,
        max_ratio: 4.0,
    }
}

#[test]
fn values_survive_reopening_and_damage_is_named() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledCheckpointStore::open(dir.path()).unwrap();
        store
            .put(
                Tree::State,
                &data(1000, 0).encode(),
                &encode(&vec![1u64, 2]).unwrap(),
            )
            .unwrap();
        store
            .put(Tree::State, &data(1000, 1).encode(), b"RVCK torn")
            .unwrap();
        store
            .put(Tree::Meta, &Key::Meta { batch_ms: 1000 }.encode(), b"m")
            .unwrap();
        store.flush().unwrap();
    }
    let store = SledCheckpointStore::open(dir.path()).unwrap();
    let bytes = store
        .get(Tree::State, &data(1000, 0).encode())
        .unwrap()
        .unwrap();
    let loc = store.location();
    assert_eq!(decode::<Vec<u64>>(&bytes, &loc, "k").unwrap(), vec![1, 2]);
    let torn = store
        .get(Tree::State, &data(1000, 1).encode())
        .unwrap()
        .unwrap();
    let err = decode::<Vec<u64>>(&torn, &loc, &data(1000, 1).to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&loc) && err.contains("state/0000000003/"),
        "{err}"
    );
    store
        .remove(Tree::Meta, &Key::Meta { batch_ms: 1000 }.encode())
        .unwrap();
    assert!(store.keys(Tree::Meta, b"").unwrap().is_empty());
    assert!(store.size_on_disk().unwrap() > 0);
}

#[test]
fn a_snapshot_a_kill_left_unfinished_does_not_stop_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = data(1000, 0).encode();
    {
        let store = SledCheckpointStore::open(dir.path()).unwrap();
        store.put(Tree::State, &key, &value(3, 10_000)).unwrap();
        store.flush().unwrap();
    }
    let current = std::fs::read_to_string(dir.path().join("CURRENT")).unwrap();
    let db_dir = dir.path().join(current.trim());
    // What a SIGKILL during sled's snapshot write leaves: the file created, nothing written,
    // named after a newer lsn than any complete snapshot.
    let unfinished = db_dir.join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&unfinished, b"").unwrap();
    assert!(
        sled::Config::new().path(&db_dir).open().is_err(),
        "sled 0.34 no longer trips on an unfinished snapshot: the workaround can go"
    );
    // sled's threads of the stores opened above may hold the directory's file lock a
    // moment after they were dropped (seen once under load in CI: "could not acquire
    // lock"): wait for it, at most 5 s.
    let started = std::time::Instant::now();
    let store = loop {
        match SledCheckpointStore::open(dir.path()) {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => break opened.unwrap(),
        }
    };
    assert!(!unfinished.exists());
    assert_eq!(
        store.get(Tree::State, &key).unwrap(),
        Some(value(3, 10_000))
    );
}

#[test]
fn an_unusable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SledCheckpointStore::open(&file).unwrap_err().to_string();
    assert!(err.contains("not-a-dir") && err.contains("cannot"), "{err}");
}

#[test]
fn live_bytes_follow_puts_and_removes_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let key = data(5, 0).encode();
    let expected = {
        let store = SledCheckpointStore::open(dir.path()).unwrap();
        store.put(Tree::State, &key, &value(1, 100_000)).unwrap();
        store.put(Tree::Wal, b"block/x", &value(2, 10)).unwrap();
        store.put(Tree::Wal, b"block/x", &value(2, 20)).unwrap();
        store.remove(Tree::Wal, b"nothing").unwrap();
        let expected = (key.len() + 100_000 + 7 + 20) as u64;
        assert_eq!(store.stats().live_bytes, expected);
        store.flush().unwrap();
        expected
    };
    let store = SledCheckpointStore::open(dir.path()).unwrap();
    assert_eq!(store.stats().live_bytes, expected, "counted again at open");
    assert_eq!(
        store.get(Tree::State, &key).unwrap().unwrap(),
        value(1, 100_000)
    );
}

/// A store under churn (a 1 MB data checkpoint rewritten under new keys, the old removed)
/// grows past a small floor; compaction brings it back near its live bytes, keeps every
/// value, and is counted.
#[test]
fn compaction_keeps_every_value_and_bounds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledCheckpointStore::open_with(dir.path(), policy(2 << 20)).unwrap();
    let mut peak = 0;
    for round in 0..40i64 {
        for p in 0..4 {
            store
                .put(
                    Tree::State,
                    &data(round, p).encode(),
                    &value(round as u8, 256 << 10),
                )
                .unwrap();
            if round > 0 {
                store
                    .remove(Tree::State, &data(round - 1, p).encode())
                    .unwrap();
            }
        }
        store.flush().unwrap();
        let stats = store.maintain().unwrap();
        peak = peak.max(stats.size_bytes.unwrap());
    }
    // A compaction may still run in the background: a last one, waited for.
    store.compact().unwrap();
    let stats = store.stats();
    assert!(stats.compactions > 1, "the store compacted: {stats:?}");
    assert!(stats.last_compaction.is_some());
    // While a compaction copies, the old and the new database are both on disk: within
    // three times the policy's bound (4x the 1 MiB live), writes during the copy included.
    assert!(peak < 12 << 20, "peak {peak} bytes");
    assert!(stats.size_bytes.unwrap() < 5 << 20, "{stats:?}");
    for p in 0..4 {
        assert_eq!(
            store
                .get(Tree::State, &data(39, p).encode())
                .unwrap()
                .unwrap(),
            value(39, 256 << 10)
        );
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("db-"))
        .collect();
    assert_eq!(names.len(), 1, "one database: {names:?}");
    drop(store);
    let store = SledCheckpointStore::open(dir.path()).unwrap();
    assert_eq!(store.keys(Tree::State, b"").unwrap().len(), 4);
}

/// Puts and removes made while a compaction copies (on another thread) are all in the
/// compacted database: the tracked keys are brought up to date before the switch.
#[test]
fn writes_during_a_compaction_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        std::sync::Arc::new(SledCheckpointStore::open_with(dir.path(), policy(u64::MAX)).unwrap());
    let mut expected = std::collections::BTreeMap::new();
    for p in 0..200u32 {
        let v = value(p as u8, 20_000);
        store.put(Tree::State, &data(1, p).encode(), &v).unwrap();
        expected.insert(data(1, p).encode(), v);
    }
    let compacting = {
        let store = store.clone();
        std::thread::spawn(move || store.compact())
    };
    // Rewrite, remove and add while it copies (some land before it starts, some after it
    // switched: every one must be there either way).
    for round in 0..3u8 {
        for p in (0..200u32).step_by(3) {
            let key = data(1, p).encode();
            if round == 1 && p % 2 == 0 {
                store.remove(Tree::State, &key).unwrap();
                expected.remove(&key);
            } else {
                let v = value(round.wrapping_add(p as u8), 9_000);
                store.put(Tree::State, &key, &v).unwrap();
                expected.insert(key, v);
            }
        }
        let key = data(2, u32::from(round)).encode();
        store.put(Tree::State, &key, b"new").unwrap();
        expected.insert(key, b"new".to_vec());
    }
    compacting.join().unwrap().unwrap();
    assert_eq!(store.stats().compactions, 1);
    let check = |store: &SledCheckpointStore| {
        let keys = store.keys(Tree::State, b"").unwrap();
        assert_eq!(keys, expected.keys().cloned().collect::<Vec<_>>());
        for (key, v) in &expected {
            assert_eq!(store.get(Tree::State, key).unwrap().as_ref(), Some(v));
        }
        assert_eq!(
            store.stats().live_bytes,
            expected
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>()
        );
    };
    check(&store);
    drop(std::sync::Arc::try_unwrap(store).ok().unwrap());
    check(&SledCheckpointStore::open(dir.path()).unwrap());
}

/// The child of `compaction_survives_a_kill_at_every_step`: fills a store, then compacts and
/// is SIGKILLed at the step its environment names. Does nothing when run on its own.
#[test]
#[ignore = "run by compaction_survives_a_kill_at_every_step in a child process"]
fn child_compacts_and_dies() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let store = SledCheckpointStore::open_with(&dir, policy(u64::MAX)).unwrap();
    for p in 0..8 {
        store
            .put(Tree::State, &data(7, p).encode(), &value(p as u8, 50_000))
            .unwrap();
    }
    store
        .put(Tree::Meta, &Key::Meta { batch_ms: 7 }.encode(), b"marker")
        .unwrap();
    store.flush().unwrap();
    store.compact().unwrap();
    // Step 5 kills; past it the child must not exit cleanly either.
    kill_at(6);
}

#[test]
fn compaction_survives_a_kill_at_every_step() {
    let exe = std::env::current_exe().unwrap();
    for step in 1..=5u8 {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let status = Command::new(&exe)
            .args([
                "--exact",
                "checkpoint_store::tests::child_compacts_and_dies",
                "--include-ignored",
                "--test-threads=1",
            ])
            .env(DIR_VAR, &dir)
            .env(KILL_VAR, step.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "step {step}: the child was SIGKILLed"
        );
        let store = SledCheckpointStore::open(&dir).unwrap();
        for p in 0..8 {
            assert_eq!(
                store.get(Tree::State, &data(7, p).encode()).unwrap(),
                Some(value(p as u8, 50_000)),
                "step {step}, partition {p}"
            );
        }
        assert_eq!(
            store
                .get(Tree::Meta, &Key::Meta { batch_ms: 7 }.encode())
                .unwrap(),
            Some(b"marker".to_vec())
        );
        let dbs = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("db-")
            })
            .count();
        assert_eq!(dbs, 1, "step {step}: leftovers removed at open");
        // The live database is the old one before the switch (step 4), the new one after.
        let live = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
        let expected = if step < 4 { "db-000001" } else { "db-000002" };
        assert_eq!(live.trim(), expected, "step {step}");
    }
}

#[test]
fn a_second_store_on_a_held_directory_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let _store = SledCheckpointStore::open(dir.path()).unwrap();
    let err = SledCheckpointStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::Checkpoint(CheckpointError::Locked { holder: Some(pid), .. }) if pid == std::process::id()),
        "{err}"
    );
    let err = SledCheckpointStore::destroy(dir.path()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}
