use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rivulet_framework::dstream::{PolledSource, ReadError};
use rivulet_framework::time::Time;
use tempfile::TempDir;

use super::TextFileSource;
use crate::testing::capture;

fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn read_all(source: &TextFileSource, name: &str) -> Vec<String> {
    match source.read(&name.to_string()) {
        Ok(lines) => lines.collect(),
        Err(e) => panic!("reading {name}: {e:?}"),
    }
}

fn unreadable_reason(source: &TextFileSource, name: &str) -> String {
    match source.read(&name.to_string()) {
        Err(ReadError::Unreadable { reason }) => reason,
        Err(ReadError::Failed(e)) => panic!("{name}: expected Unreadable, got Failed({e})"),
        Ok(_) => panic!("{name}: expected Unreadable, got records"),
    }
}

/// The splits of one poll.
fn splits(source: &TextFileSource) -> Vec<String> {
    source.poll(Time::ZERO).unwrap().splits
}

/// Sets `path`'s modification time to `age` ago.
fn age(path: &Path, age: Duration) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn a_file_changed_after_it_was_read_is_reported_once_per_change() {
    let (logs, _guard) = capture();
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("old.txt"), "old\n").unwrap();
    let source = TextFileSource::new(dir.path());
    source.start().unwrap();
    assert!(splits(&source).is_empty());

    let staged = TempDir::new_in(dir.path().parent().unwrap()).unwrap();
    fs::write(staged.path().join("a.txt"), "a1\na2\n").unwrap();
    fs::rename(staged.path().join("a.txt"), dir.path().join("a.txt")).unwrap();
    assert_eq!(splits(&source), ["a.txt"]);
    assert_eq!(read_all(&source, "a.txt"), ["a1", "a2"]);
    let polled = source.poll(Time::ZERO).unwrap();
    assert!(polled.splits.is_empty() && polled.skipped.is_empty());
    assert_eq!(logs.take_warnings(), Vec::<String>::new());

    // Appended in place: not read, but reported with the path, once.
    append(&dir.path().join("a.txt"), "a3\n");
    let polled = source.poll(Time::ZERO).unwrap();
    assert!(polled.splits.is_empty());
    let path = dir.path().join("a.txt").display().to_string();
    assert_eq!(polled.skipped.len(), 1, "{:?}", polled.skipped);
    assert_eq!(polled.skipped[0].split, path);
    assert!(
        polled.skipped[0].reason.contains("6 -> 9 bytes"),
        "{:?}",
        polled.skipped
    );
    assert!(source.poll(Time::ZERO).unwrap().skipped.is_empty());

    // Each change is reported. A file present at a fresh start is older than anything the
    // source took: it is never stat'ed again, so its changes are not (documented).
    append(&dir.path().join("a.txt"), "a4\n");
    append(&dir.path().join("old.txt"), "more\n");
    let polled = source.poll(Time::ZERO).unwrap();
    let reported: Vec<&str> = polled.skipped.iter().map(|s| s.split.as_str()).collect();
    assert_eq!(reported, [path.as_str()]);
    assert!(polled.splits.is_empty());
}

#[test]
fn a_file_changed_between_listing_and_reading_is_read_whole_and_warned_about_once() {
    let (logs, _guard) = capture();
    let dir = TempDir::new().unwrap();
    let source = TextFileSource::new(dir.path());
    source.start().unwrap();
    fs::write(dir.path().join("b.txt"), "b1\n").unwrap();
    assert_eq!(splits(&source), ["b.txt"]);
    append(&dir.path().join("b.txt"), "b2\n");
    assert_eq!(read_all(&source, "b.txt"), ["b1", "b2"]);
    assert_eq!(logs.take_warnings().len(), 1);
    // What was read is the reference now: nothing reported, no second warning.
    let polled = source.poll(Time::ZERO).unwrap();
    assert!(polled.splits.is_empty() && polled.skipped.is_empty());
    assert_eq!(logs.take_warnings(), Vec::<String>::new());
}

#[test]
fn truncated_lines_are_counted_in_one_warning_per_file() {
    let (logs, _guard) = capture();
    let dir = TempDir::new().unwrap();
    let source = TextFileSource::new(dir.path()).max_line_bytes(10);
    source.start().unwrap();
    let long = "x".repeat(100);
    fs::write(dir.path().join("c.txt"), format!("{long}\nshort\n{long}\n")).unwrap();
    assert_eq!(splits(&source), ["c.txt"]);
    let lines = read_all(&source, "c.txt");
    assert_eq!(lines, ["x".repeat(10), "short".into(), "x".repeat(10)]);
    let warnings = logs.take_warnings();
    let path = dir.path().join("c.txt").display().to_string();
    let summary: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("truncated=2"))
        .collect();
    assert_eq!(summary.len(), 1, "{warnings:?}");
    assert!(
        summary[0].contains(&path) && summary[0].contains("dropped_bytes=180"),
        "{warnings:?}"
    );
}

/// Faults that work as root too (CI runs tests as root, where `chmod 000` does not stop a
/// read): a subdirectory, a socket entry, a dangling symlink, a file deleted between the
/// listing and the read, a file replaced by a directory.
#[cfg(unix)]
#[test]
fn unreadable_entries_are_splits_whose_read_says_why() {
    let dir = TempDir::new().unwrap();
    let source = TextFileSource::new(dir.path());
    source.start().unwrap();
    fs::create_dir(dir.path().join("d-subdir")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("e-socket")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("f-dangling")).unwrap();
    fs::write(dir.path().join("g-vanishes.txt"), "gone\n").unwrap();
    fs::write(dir.path().join("h-replaced.txt"), "replaced\n").unwrap();
    fs::write(dir.path().join("i-fine.txt"), "fine\n").unwrap();
    assert_eq!(
        splits(&source),
        [
            "d-subdir",
            "e-socket",
            "f-dangling",
            "g-vanishes.txt",
            "h-replaced.txt",
            "i-fine.txt"
        ]
    );
    fs::remove_file(dir.path().join("g-vanishes.txt")).unwrap();
    fs::remove_file(dir.path().join("h-replaced.txt")).unwrap();
    fs::create_dir(dir.path().join("h-replaced.txt")).unwrap();

    assert_eq!(unreadable_reason(&source, "d-subdir"), "is a directory");
    assert!(unreadable_reason(&source, "e-socket").contains("not a regular file"));
    assert!(unreadable_reason(&source, "f-dangling").contains("symlink"));
    assert!(unreadable_reason(&source, "g-vanishes.txt").contains("vanished"));
    assert_eq!(
        unreadable_reason(&source, "h-replaced.txt"),
        "is a directory"
    );
    assert_eq!(read_all(&source, "i-fine.txt"), ["fine"]);
    assert_eq!(
        source.describe(&"i-fine.txt".to_string()),
        dir.path().join("i-fine.txt").display().to_string()
    );
}

#[test]
fn a_file_moved_in_with_an_old_modification_time_is_reported_not_read() {
    let dir = TempDir::new().unwrap();
    let source = TextFileSource::new(dir.path()).remember(Duration::from_secs(60));
    source.start().unwrap();
    let staged = TempDir::new_in(dir.path().parent().unwrap()).unwrap();
    let old = staged.path().join("old.txt");
    fs::write(&old, "old\n").unwrap();
    age(&old, Duration::from_secs(3600));
    fs::rename(&old, dir.path().join("old.txt")).unwrap();
    fs::write(dir.path().join("new.txt"), "new\n").unwrap();
    let polled = source.poll(Time::ZERO).unwrap();
    assert_eq!(polled.splits, ["new.txt"]);
    assert_eq!(polled.skipped.len(), 1);
    assert_eq!(
        polled.skipped[0].split,
        dir.path().join("old.txt").display().to_string()
    );
    assert!(
        polled.skipped[0].reason.contains("remember window (60 s)"),
        "{:?}",
        polled.skipped
    );
    // Reported once: it is remembered as old.
    let polled = source.poll(Time::ZERO).unwrap();
    assert!(polled.splits.is_empty() && polled.skipped.is_empty());
    assert_eq!(source.remembered(), (1, 1));
}

/// Moves the source's clock `by` forward.
fn advance(source: &TextFileSource, by: Duration) {
    let ms = i64::try_from(by.as_millis()).unwrap();
    source
        .skew_ms
        .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Writes `path` with a modification time of the source's clock.
fn write_now(source: &TextFileSource, path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    let skew = source.skew_ms.load(std::sync::atomic::Ordering::Relaxed);
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_millis(skew as u64))
        .unwrap();
}

/// 10,000 files left in the directory and 50 batches of 20 new files each, 31 s apart
/// under a 60 s window: the stamped (checkpointed) set holds only the files within the
/// window (two batches' worth), and the names-only set only what is in the directory.
#[test]
fn remembered_files_stay_within_the_window() {
    let dir = TempDir::new().unwrap();
    for i in 0..10_000 {
        fs::write(dir.path().join(format!("left-{i:05}")), "").unwrap();
    }
    let source = TextFileSource::new(dir.path()).remember(Duration::from_secs(60));
    source.start().unwrap();
    assert_eq!(source.remembered(), (0, 10_000));
    let mut max_recent = 0;
    for batch in 0..50 {
        advance(&source, Duration::from_secs(31));
        let names: Vec<String> = (0..20).map(|i| format!("b{batch:02}-{i:02}")).collect();
        for n in &names {
            write_now(&source, &dir.path().join(n), "x\n");
        }
        // Half of the files taken earlier leave the directory.
        if batch >= 3 && batch % 2 == 0 {
            for i in 0..20 {
                fs::remove_file(dir.path().join(format!("b{:02}-{i:02}", batch - 3))).unwrap();
            }
        }
        let polled = source.poll(Time::ZERO).unwrap();
        assert_eq!(polled.splits, names, "batch {batch}");
        assert!(polled.skipped.is_empty(), "{:?}", polled.skipped);
        for n in &names {
            assert_eq!(read_all(&source, n), ["x"]);
        }
        let (recent, _) = source.remembered();
        max_recent = max_recent.max(recent);
    }
    // Within the window: this batch's files and the last one's.
    assert_eq!(max_recent, 40);
    let in_dir = fs::read_dir(dir.path()).unwrap().count();
    let (recent, old) = source.remembered();
    assert_eq!(recent + old, in_dir);
    let saved = rivulet_framework::checkpoint::encode(&source.state()).unwrap();
    assert!(saved.len() < 40 * 64, "{} bytes", saved.len());
}

#[test]
fn a_restart_reads_the_files_that_arrived_while_down_and_not_the_others() {
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("before.txt"), "before\n").unwrap();
    let first = TextFileSource::new(dir.path());
    first.start().unwrap();
    fs::write(dir.path().join("read.txt"), "read\n").unwrap();
    assert_eq!(splits(&first), ["read.txt"]);
    assert_eq!(read_all(&first, "read.txt"), ["read"]);
    let saved = rivulet_framework::checkpoint::encode(&first.state()).unwrap();

    // Down for a while: a file arrived early in the downtime (older than the window at the
    // restart, but not older than the last listing minus the window) and one just now.
    fs::write(dir.path().join("early.txt"), "early\n").unwrap();
    fs::write(dir.path().join("late.txt"), "late\n").unwrap();
    let second = TextFileSource::new(dir.path()).remember(Duration::from_secs(60));
    second.restore(rivulet_framework::checkpoint::decode(&saved, "test", "state").unwrap());
    // `before.txt` was there at the first start: it is old by now. Old files are judged by
    // their modification time, so age it as it would be after a long stop.
    age(&dir.path().join("before.txt"), Duration::from_secs(3600));
    let polled = second.poll(Time::ZERO).unwrap();
    assert_eq!(polled.splits, ["early.txt", "late.txt"]);
    assert!(polled.skipped.is_empty(), "{:?}", polled.skipped);
    assert!(splits(&second).is_empty());
}

#[test]
fn a_state_saved_before_the_window_existed_is_read() {
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("seen.txt"), "seen\n").unwrap();
    fs::write(dir.path().join("unseen.txt"), "unseen\n").unwrap();
    age(&dir.path().join("unseen.txt"), Duration::from_secs(3600));
    // rivulet before the window saved the names seen, as a list.
    let saved = rivulet_framework::checkpoint::encode(&vec!["seen.txt".to_string()]).unwrap();
    let source = TextFileSource::new(dir.path());
    source.restore(rivulet_framework::checkpoint::decode(&saved, "test", "state").unwrap());
    // As the older rivulet would: every name it had not seen is new, whatever its age.
    assert_eq!(splits(&source), ["unseen.txt"]);
}

#[test]
fn the_window_is_rounded_up_to_whole_batches() {
    let s = TextFileSource::new("x").remember(Duration::from_millis(2500));
    let rounded = s.round_remember_to(Duration::from_secs(1));
    assert_eq!(rounded.remember_window(), Duration::from_secs(3));
    let s = TextFileSource::new("x").remember(Duration::from_millis(10));
    let rounded = s.round_remember_to(Duration::from_secs(2));
    assert_eq!(rounded.remember_window(), Duration::from_secs(2));
}

#[test]
fn long_lines_follow_the_policy_and_losses_count_each_file_once() {
    let dir = TempDir::new().unwrap();
    let source = TextFileSource::new(dir.path())
        .max_line_bytes(4)
        .on_long_line(crate::LongLinePolicy::Split);
    let losses = source.losses();
    fs::write(dir.path().join("d.txt"), "ab cdef\nok\n").unwrap();
    assert_eq!(read_all(&source, "d.txt"), ["ab ", "cdef", "ok"]);
    // A recomputed partition reads the file again: counted once.
    assert_eq!(read_all(&source, "d.txt").len(), 3);
    let t = losses.totals();
    assert_eq!(
        (t.files, t.records, t.counts.split, t.counts.dropped_bytes),
        (1, 3, 1, 0)
    );

    let failing = TextFileSource::new(dir.path())
        .max_line_bytes(4)
        .on_long_line(crate::LongLinePolicy::Fail);
    let Err(ReadError::Failed(error)) = failing.read(&"d.txt".to_string()) else {
        panic!("a long line under fail is a read error");
    };
    let message = error.to_string();
    assert!(message.contains("d.txt"), "{message}");
    let cause = std::error::Error::source(&error)
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        format!("{message} {cause}").contains("byte offset 0"),
        "{message} / {cause}"
    );
}
