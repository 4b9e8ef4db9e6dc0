//! The main job's property on a generated text: the word count pipeline built as
//! `examples/wordcount.rs` builds it (a local TCP server feeding `socket_text_stream`, words =
//! maximal runs of ASCII letters and digits lowercased, `reduce_by_key`, each batch saved with
//! `save_as_text_files`) counts every word of the input exactly once: summed over all batch
//! directories, the counts equal an independent count of the text. None lost, none doubled.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::*;
use rivulet::prelude::*;

/// A few thousand lines of generated text: words from a small vocabulary in mixed case,
/// numbers, punctuation, non-ASCII letters (which split words), empty lines.
fn generated_text(seed: u64, lines: usize) -> Vec<String> {
    const WORDS: [&str; 16] = [
        "the", "River", "STREAM", "batch", "Actor", "lineage", "rdd", "k8s", "x", "tokio", "spark",
        "shuffle", "time", "o'clock", "naïve", "café",
    ];
    const SEPARATORS: [&str; 8] = [" ", "  ", ", ", ". ", "; ", "\t", " -- ", "!"];
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..lines)
        .map(|_| {
            let n = rng.u64(..14) as usize; // 0..13 words: some lines are empty
            let mut line = String::new();
            for i in 0..n {
                if i > 0 {
                    line.push_str(SEPARATORS[rng.u64(..SEPARATORS.len() as u64) as usize]);
                }
                if rng.u64(..10) == 0 {
                    line.push_str(&rng.u64(..1000).to_string());
                } else {
                    line.push_str(WORDS[rng.u64(..WORDS.len() as u64) as usize]);
                }
            }
            line
        })
        .collect()
}

/// The example's word function, as the pipeline under test uses it.
fn words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Sums the `word<TAB>count` lines of every `part-*` file of every `batch-*` directory.
fn read_counts(out: &Path) -> (HashMap<String, u64>, usize) {
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut dirs = 0;
    for entry in fs::read_dir(out).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("batch-"), "unexpected entry {name}");
        name["batch-".len()..]
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("batch directory name {name}"));
        assert!(dir.join("_SUCCESS").exists(), "{name} has no _SUCCESS");
        dirs += 1;
        for part in fs::read_dir(&dir).unwrap() {
            let part = part.unwrap().path();
            let file = part.file_name().unwrap().to_string_lossy().into_owned();
            if file == "_SUCCESS" {
                continue;
            }
            assert!(file.starts_with("part-"), "unexpected file {name}/{file}");
            for line in fs::read_to_string(&part).unwrap().lines() {
                let (word, count) = line
                    .split_once('\t')
                    .unwrap_or_else(|| panic!("bad line {line:?} in {name}/{file}"));
                *totals.entry(word.to_string()).or_default() += count.parse::<u64>().unwrap();
            }
        }
    }
    (totals, dirs)
}

/// Runs the word count over `lines` served by a local server, until every line was in a
/// completed batch, and checks the saved counts against a plain `HashMap` count.
async fn check_word_count(config: StreamingConfig, lines: Vec<String>) -> Vec<BatchInfo> {
    let out = tempfile::tempdir().unwrap();
    let listener = listen(0);
    let port = listener.local_addr().unwrap().port();
    let (_more, server) = serve_and_hold(listener, text(&lines));

    let ssc = StreamingContext::new(config).unwrap();
    let events = Events::attach(&ssc);
    let counts = ssc
        .socket_text_stream("127.0.0.1", port)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .cache();
    counts.foreach_rdd(|rdd, _| {
        let mut all = rdd.collect()?;
        all.sort_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
        let _top: Vec<String> = all
            .iter()
            .take(10)
            .map(|(w, c)| format!("{w}:{c}"))
            .collect();
        Ok(())
    });
    counts
        .map(|(w, c)| format!("{w}\t{c}"))
        .save_as_text_files(out.path().join("batch"), "");
    ssc.start().await.unwrap();
    let batches = advance_until(&ssc, || events.records_completed() >= lines.len()).await;
    ssc.stop(StopMode::Graceful).await.unwrap();
    server.abort();

    assert_eq!(
        events.records_completed(),
        lines.len(),
        "every line is one record"
    );
    let completed = events.completed();
    assert!(completed.iter().all(BatchInfo::succeeded), "{completed:?}");

    let mut expected: HashMap<String, u64> = HashMap::new();
    for line in &lines {
        for w in words_of(line) {
            *expected.entry(w).or_default() += 1;
        }
    }
    let (got, dirs) = read_counts(out.path());
    assert_eq!(dirs, completed.len(), "one directory per batch");
    assert!(
        dirs as u32 >= batches,
        "{dirs} directories for {batches} batches"
    );
    let mut missing: Vec<_> = expected
        .iter()
        .filter(|(w, n)| got.get(*w) != Some(n))
        .map(|(w, n)| (w.clone(), *n, got.get(w).copied()))
        .collect();
    missing.sort();
    assert!(missing.is_empty(), "(word, expected, got): {missing:?}");
    assert_eq!(got.len(), expected.len(), "no extra words");
    completed
}

#[actix::test]
async fn word_counts_summed_over_batches_equal_the_text_counts() {
    within(async {
        let lines = generated_text(2024, 3000);
        check_word_count(config(2, 2), lines).await;
    })
    .await
}

#[actix::test]
async fn word_counts_are_exact_with_a_small_receiver_buffer() {
    within(async {
        let lines = generated_text(7, 2000);
        // At most 64 lines stored and not yet processed (a fixed bound: floor and cap 64):
        // the socket is read as batches finish (backpressure), so the input spreads over
        // many batches.
        let config = config(2, 3)
            .receiver_buffer_records(64)
            .receiver_buffer_max_records(64);
        let completed = check_word_count(config, lines).await;
        let largest = completed.iter().map(|b| b.num_records).max().unwrap();
        assert!(largest <= 64, "a batch of {largest} records");
        assert!(completed.len() >= 2000 / 64, "{} batches", completed.len());
    })
    .await
}
