use std::fs;
use std::path::Path;
use std::pin::pin;
use std::time::Duration;

use rivulet_framework::receiver::{Flow, Receiver};
use tempfile::TempDir;
use tokio::time::timeout;

use super::TextFileReceiver;
use crate::testing::{Harness, DEADLINE};

/// A watched directory and a staging directory on the same file system, for atomic moves.
struct Dirs {
    watched: TempDir,
    staging: TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs {
            watched: TempDir::new().unwrap(),
            staging: TempDir::new().unwrap(),
        }
    }

    fn dir(&self) -> &Path {
        self.watched.path()
    }

    /// Writes `content` outside the watched directory, then renames it in as `name`.
    fn move_in(&self, name: &str, content: &str) {
        let staged = self.staging.path().join(name);
        fs::write(&staged, content).unwrap();
        fs::rename(&staged, self.dir().join(name)).unwrap();
    }

    fn receiver(&self) -> TextFileReceiver {
        TextFileReceiver::new(self.dir()).rescan_interval(Duration::from_millis(20))
    }
}

#[tokio::test]
async fn reads_new_files_once_and_ignores_old_hidden_and_temporary_ones() {
    let dirs = Dirs::new();
    fs::write(dirs.dir().join("a_old.txt"), "old\n").unwrap();
    let mut h = Harness::start(dirs.receiver(), 100).await;

    // Both sort before "b.txt": if they were read, they would show up first.
    fs::write(dirs.dir().join(".hidden"), "hidden\n").unwrap();
    fs::write(dirs.dir().join("_temporary"), "temporary\n").unwrap();
    dirs.move_in("b.txt", "b1\r\nb2");
    h.drive_until("b.txt", |m| m.records_stored == 2).await;
    assert_eq!(h.take_records(), ["b1", "b2"]);

    // Spark's other pattern: write under an ignored name in the directory, then rename.
    fs::write(dirs.dir().join(".c.txt.tmp"), "c1\n").unwrap();
    fs::rename(dirs.dir().join(".c.txt.tmp"), dirs.dir().join("c.txt")).unwrap();
    h.drive_until("c.txt", |m| m.records_stored == 3).await;
    dirs.move_in("d.txt", "d1\n");
    h.drive_until("d.txt", |m| m.records_stored == 4).await;
    // Several listings happened meanwhile: nothing was read twice.
    assert_eq!(h.take_records(), ["c1", "d1"]);
    assert_eq!(h.metrics().errors, 0);
    assert_eq!(h.metrics().malformed, 0);
}

#[tokio::test]
async fn files_found_together_are_read_in_name_order() {
    let dirs = Dirs::new();
    let mut h = Harness::start(dirs.receiver(), 100).await;
    // No `receive` runs in between, so one listing finds all three.
    dirs.move_in("2.txt", "two\n");
    dirs.move_in("3.txt", "three\n");
    dirs.move_in("1.txt", "one\n");
    h.drive_until("3 files", |m| m.records_stored == 3).await;
    assert_eq!(h.take_records(), ["one", "two", "three"]);
}

#[cfg(unix)]
#[tokio::test]
async fn unreadable_entries_are_logged_counted_and_skipped() {
    let dirs = Dirs::new();
    let mut h = Harness::start(dirs.receiver(), 100).await;
    std::os::unix::fs::symlink("/nonexistent/rivulet", dirs.dir().join("a_broken_link")).unwrap();
    fs::create_dir(dirs.dir().join("b_subdir")).unwrap();
    // A FIFO must be skipped, not opened: opening it would block until a writer comes.
    let fifo = std::process::Command::new("mkfifo")
        .arg(dirs.dir().join("c_fifo"))
        .status()
        .is_ok_and(|s| s.success());
    dirs.move_in("d_good.txt", "good\n");
    let errors = 2 + u64::from(fifo);
    h.drive_until("the good file", |m| {
        m.records_stored == 1 && m.errors == errors
    })
    .await;
    assert_eq!(h.take_records(), ["good"]);

    dirs.move_in("e_more.txt", "more\n");
    h.drive_until("the next file", |m| m.records_stored == 2)
        .await;
    assert_eq!(h.take_records(), ["more"]);
    assert_eq!(h.metrics().errors, errors, "each bad entry counts once");
}

#[tokio::test]
async fn a_missing_directory_or_a_file_is_a_fatal_start_error() {
    let dirs = Dirs::new();
    let missing = dirs.dir().join("missing");
    let err = TextFileReceiver::new(&missing)
        .on_start()
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let file = dirs.dir().join("plain.txt");
    fs::write(&file, "x").unwrap();
    let err = TextFileReceiver::new(&file).on_start().await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

#[tokio::test]
async fn big_files_are_read_in_bounded_steps_in_order() {
    let dirs = Dirs::new();
    let mut h = Harness::start(dirs.receiver(), 20_000).await;
    let lines: Vec<String> = (0..10_000).map(|i| format!("line {i}")).collect();
    dirs.move_in("big.txt", &lines.join("\n"));
    h.drive_until("10000 lines", |m| m.records_stored == 10_000)
        .await;
    assert_eq!(h.take_records(), lines);
}

#[tokio::test]
async fn decodes_like_the_socket_receiver() {
    let dirs = Dirs::new();
    let mut h = Harness::start(dirs.receiver().max_line_bytes(4), 100).await;
    let staged = dirs.staging.path().join("bad.txt");
    fs::write(&staged, b"ok\n\xffx\n123456\r\nend\r").unwrap();
    fs::rename(&staged, dirs.dir().join("bad.txt")).unwrap();
    h.drive_until("4 lines", |m| m.records_stored == 4).await;
    assert_eq!(h.take_records(), ["ok", "\u{fffd}x", "1234", "end"]);
    let m = h.metrics();
    assert_eq!((m.malformed, m.truncated, m.dropped_bytes), (1, 1, 2));
}

#[tokio::test]
async fn a_name_that_left_and_came_back_is_a_new_file() {
    let dirs = Dirs::new();
    let mut h = Harness::start(dirs.receiver(), 100).await;
    dirs.move_in("r.txt", "first\n");
    h.drive_until("r.txt", |m| m.records_stored == 1).await;
    fs::remove_file(dirs.dir().join("r.txt")).unwrap();
    // The listing that finds s.txt no longer sees r.txt, and forgets it.
    dirs.move_in("s.txt", "s\n");
    h.drive_until("s.txt", |m| m.records_stored == 2).await;
    dirs.move_in("r.txt", "second\n");
    h.drive_until("r.txt again", |m| m.records_stored == 3)
        .await;
    assert_eq!(h.take_records(), ["first", "s", "second"]);
}

#[tokio::test]
async fn the_watcher_wakes_the_receiver_without_waiting_for_a_rescan() {
    let dirs = Dirs::new();
    let receiver = TextFileReceiver::new(dirs.dir()).rescan_interval(Duration::from_secs(3600));
    let mut h = Harness::start(receiver, 100).await;
    let Harness { receiver, sink, .. } = &mut h;
    {
        let mut call = pin!(receiver.receive(sink));
        // The call lists the (empty) directory, then waits: for an hour, unless woken.
        assert!(timeout(Duration::from_millis(100), &mut call)
            .await
            .is_err());
        dirs.move_in("w.txt", "woken\n");
        let flow = timeout(DEADLINE, call)
            .await
            .expect("the watcher did not wake the receiver");
        assert_eq!(flow.unwrap(), Flow::Continue);
    }
    h.drive_until("w.txt", |m| m.records_stored == 1).await;
    assert_eq!(h.take_records(), ["woken"]);
}

#[test]
fn names_its_directory() {
    let receiver = TextFileReceiver::new("/data/in");
    assert_eq!(receiver.name(), "text files in /data/in");
    assert!(format!("{receiver:?}").contains("/data/in"));
}
