//! Live analytics of an Apache access log: status codes per batch and per window, the top
//! URLs per window, and known clients (a static table joined with every batch).
//!
//! Serves a log in the Apache combined format (default: the bundled
//! `examples/data/apache_access.log`, 10,000 lines) line by line over a TCP socket on
//! 127.0.0.1 into `socket_text_stream`, at 700 lines/s (about 15 s), and parses each line
//! with a small hand parser. Every batch (1 s) it prints:
//!
//! * the batch's requests per status code (`count_by_value`);
//! * the requests per status code in the last 5 batches (`count_by_value_and_window`);
//! * the 5 most requested paths in the last 5 batches (`reduce_by_key_and_window_with`,
//!   incremental, zero counts filtered out);
//! * the known clients seen in the batch and their request counts: the batch's per-client
//!   counts (`reduce_by_key`) joined inside `transform` with a static table built with
//!   `parallelize`: the log's 20 most frequent clients, labelled `frequent-1` .. `frequent-20`.
//!
//! Lines that do not parse (line 8,899 of the bundled log has a truncated user agent) are
//! counted, never fatal, and listed at the end with their line number, error and content.
//! The totals are checked against an independent pass over the file. Exits once every line
//! has been processed.
//!
//! ```text
//! cargo run --release --example log_analytics
//! cargo run --release --example log_analytics -- --rate 0 --batch-ms 200
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use parking_lot::Mutex;
use rivulet::prelude::*;

#[path = "../support/allocator.rs"]
mod allocator;
#[path = "../support/mod.rs"]
mod support;

use support::{
    context, init_tracing, read_lines, run_until_done, spawn_server, Ending, FeedEnd, Progress,
};

#[derive(Parser, Debug)]
#[command(about = "Status codes, top URLs and known clients of a live Apache access log")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Access log to stream (Apache combined log format), one request per line.
    #[arg(long, default_value = "examples/data/apache_access.log")]
    input: PathBuf,
    /// Batch interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = support::parse_batch_ms)]
    batch_ms: u64,
    /// Lines per second the source sends; 0 sends as fast as backpressure allows.
    #[arg(long, default_value_t = 700, value_parser = support::parse_rate, allow_negative_numbers = true)]
    rate: u64,
    /// Window length, in batches.
    #[arg(long, default_value_t = 5, value_parser = parse_count_u32, allow_negative_numbers = true)]
    window_batches: u32,
    /// Slide of the windows, in batches.
    #[arg(long, default_value_t = 1, value_parser = parse_count_u32, allow_negative_numbers = true)]
    slide_batches: u32,
    /// How many of the log's most frequent clients make the table of known clients.
    #[arg(long, default_value_t = 20, value_parser = parse_count_usize, allow_negative_numbers = true)]
    known_clients: usize,
    /// Executors (task threads); default: one per core.
    #[arg(long, value_parser = support::parse_executors)]
    executors: Option<usize>,
    /// The check fails when more than this percentage of the lines are malformed (not an
    /// access log).
    #[arg(long, default_value_t = 1.0, value_parser = parse_percent, allow_negative_numbers = true)]
    max_malformed_percent: f64,
    #[command(flatten)]
    lines: support::LineOptions,
}

/// `--max-malformed-percent`: a number from 0 to 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a percentage from 0 to 100, got `{s}`")),
    }
}

/// `--window-batches`, `--slide-batches`: 1 ..= 1,000,000.
fn parse_count_u32(s: &str) -> Result<u32, String> {
    support::parse_count(s).map(|n| n as u32)
}

/// `--known-clients`: 1 ..= 1,000,000.
fn parse_count_usize(s: &str) -> Result<usize, String> {
    support::parse_count(s).map(|n| n as usize)
}

/// Malformed lines printed in full run (per batch, and in the final listing), at most.
const MALFORMED_PRINTED: usize = 10;
/// Characters of a malformed line printed, at most.
const MALFORMED_CHARS: usize = 200;

/// `numbers` as `[a, b, ...]`, the first 10 and a count of the rest.
fn short_list(numbers: &[u64]) -> String {
    let head: Vec<String> = numbers.iter().take(10).map(u64::to_string).collect();
    match numbers.len() {
        n if n > 10 => format!("[{}, ... ({n} in all)]", head.join(", ")),
        _ => format!("[{}]", head.join(", ")),
    }
}

/// `line` cut to its first `MALFORMED_CHARS` characters, with `…` and the length if cut.
fn clip(line: &str) -> String {
    match line.char_indices().nth(MALFORMED_CHARS) {
        None => line.to_string(),
        Some((end, _)) => format!("{}… ({} characters)", &line[..end], line.chars().count()),
    }
}

// ---------------------------------------------------------------------------------------
// The parser.

mod parse;

use parse::parse;

type Request = (String, String, u16);

/// A line that did not parse: `(position in its batch partition, error, line)`.
type Rejected = (u64, String, String);

/// What the output operations record, batch by batch, for the report and checks at the end.
#[derive(Default)]
struct Totals {
    lines: u64,
    /// `(line number, error, line)` of every malformed line.
    malformed: Vec<(u64, String, String)>,
    batch_status: BTreeMap<Time, BTreeMap<u16, u64>>,
    window_status: BTreeMap<Time, BTreeMap<u16, u64>>,
    known_requests: HashMap<String, u64>,
}

/// `counts` as `key:count`, largest first (ties by key), at most `n`.
fn top<K: fmt::Display + Ord>(mut counts: Vec<(K, u64)>, n: usize) -> String {
    counts.sort_by(|(ka, ca), (kb, cb)| cb.cmp(ca).then_with(|| ka.cmp(kb)));
    let top: Vec<String> = counts
        .iter()
        .take(n)
        .map(|(k, c)| format!("{k}:{c}"))
        .collect();
    top.join(" ")
}

fn by_status(counts: &BTreeMap<u16, u64>) -> String {
    let all: Vec<String> = counts.iter().map(|(s, n)| format!("{s}:{n}")).collect();
    all.join(" ")
}

/// What a pass over the whole file finds, independently of the streaming job.
struct Expected {
    parsed: u64,
    malformed_lines: Vec<u64>,
    status: BTreeMap<u16, u64>,
    clients: HashMap<String, u64>,
}

fn scan(lines: &[String]) -> Expected {
    let mut expected = Expected {
        parsed: 0,
        malformed_lines: Vec::new(),
        status: BTreeMap::new(),
        clients: HashMap::new(),
    };
    for (i, line) in lines.iter().enumerate() {
        match parse(line) {
            Ok(record) => {
                expected.parsed += 1;
                *expected.status.entry(record.status).or_default() += 1;
                *expected.clients.entry(record.client).or_default() += 1;
            }
            Err(_) => expected.malformed_lines.push(i as u64 + 1),
        }
    }
    expected
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    allocator::init();
    let args = Args::parse();
    support::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    let raw = read_lines(&args.input)?;
    let expected_records = args.lines.expected_records(&raw);
    // The records the file becomes under the long-line options (rivulet's reference split,
    // not the receiver): the lines themselves unless one is longer than --max-line-bytes.
    // The checks expect what a named policy makes of the file.
    let text: Vec<String> = args.lines.expected_lines(&raw);
    let total = raw.len();
    let expected = scan(&text);
    println!(
        "Streaming {} ({total} lines) at {} lines/s",
        args.input.display(),
        args.rate
    );
    if let Some(Ok(r)) = text.first().map(|l| parse(l)) {
        println!(
            "Line 1 parses to: client {} | time {} | method {} | path {} | status {} | bytes {} | referer {} | agent {}",
            r.client,
            r.time,
            r.method,
            r.path,
            r.status,
            // `-` in the log: no body was sent.
            r.bytes.map_or_else(|| "-".to_string(), |b| b.to_string()),
            r.referer,
            r.agent
        );
    }

    // The table of known clients: the log's most frequent clients, from the pass above.
    let mut frequent: Vec<(String, u64)> = expected
        .clients
        .iter()
        .map(|(c, n)| (c.clone(), *n))
        .collect();
    frequent.sort_by(|(ca, na), (cb, nb)| nb.cmp(na).then_with(|| ca.cmp(cb)));
    frequent.truncate(args.known_clients);
    let known: Vec<(String, String)> = frequent
        .iter()
        .enumerate()
        .map(|(i, (client, _))| (client.clone(), format!("frequent-{}", i + 1)))
        .collect();
    println!(
        "Known clients (the log's {} most frequent): {}",
        known.len(),
        top(frequent.clone(), known.len())
    );

    let (port, server) = spawn_server(Arc::new(raw), args.rate, FeedEnd::Close).await?;

    let batch = Duration::from_millis(args.batch_ms);
    let (window, slide) = (batch * args.window_batches, batch * args.slide_batches);
    let ssc = context("log_analytics", batch, args.executors)?;
    let known_rdd = ssc.parallelize(known, 2);
    let totals: Arc<Mutex<Totals>> = Arc::default();

    // Parsed once, used by every output below.
    let parsed: DStream<Result<Request, (String, String)>> = args
        .lines
        .feed_stream(&ssc, port)
        .map(|line| match parse(&line) {
            Ok(r) => Ok((r.client, r.path, r.status)),
            Err(e) => Err((e.to_string(), line)),
        })
        .cache();
    let requests: DStream<Request> = parsed.flat_map(Result::ok);

    // Lines and malformed lines. A batch's partitions are its blocks in arrival order, so a
    // line's number is the lines of earlier batches and partitions plus its position.
    let t = totals.clone();
    parsed
        .map_partitions(|records| {
            let (mut lines, mut rejected) = (0u64, Vec::<Rejected>::new());
            for (i, record) in records.enumerate() {
                lines += 1;
                if let Err((error, line)) = record {
                    rejected.push((i as u64, error, line));
                }
            }
            std::iter::once((lines, rejected))
        })
        .foreach_rdd(move |rdd, time| {
            let mut totals = t.lock();
            let mut unprinted = 0;
            for (lines, rejected) in rdd.collect()? {
                for (i, error, line) in rejected {
                    let number = totals.lines + i + 1;
                    // Rate-limited: a file that is not an access log must not flood stdout.
                    if totals.malformed.len() < MALFORMED_PRINTED {
                        println!("batch {time}: malformed line {number}: {error}");
                    } else {
                        unprinted += 1;
                    }
                    totals.malformed.push((number, error, line));
                }
                totals.lines += lines;
            }
            if unprinted > 0 {
                println!("batch {time}: {unprinted} more malformed lines (not printed)");
            }
            Ok(())
        });

    // Status codes of the batch.
    let statuses = requests.map(|(_, _, status)| status);
    let t = totals.clone();
    statuses.count_by_value().foreach_rdd(move |rdd, time| {
        let counts: BTreeMap<u16, u64> = rdd.collect()?.into_iter().collect();
        let n: u64 = counts.values().sum();
        println!("batch {time}: {n} requests; status {}", by_status(&counts));
        t.lock().batch_status.insert(time, counts);
        Ok(())
    });

    // Status codes of the window (zero counts are dropped by the operator).
    let t = totals.clone();
    statuses
        .count_by_value_and_window(window, slide)?
        .foreach_rdd(move |rdd, time| {
            let counts: BTreeMap<u16, u64> = rdd.collect()?.into_iter().collect();
            let n: u64 = counts.values().sum();
            println!(
                "  last {window:?}: {n} requests; status {}",
                by_status(&counts)
            );
            t.lock().window_status.insert(time, counts);
            Ok(())
        });

    // Top paths of the window: incremental, and paths that left the window are dropped.
    let spec = WindowReduce::new(|a: u64, b| a + b)
        .inverse(|a, b| a - b)
        .filter(|(_, n)| *n > 0);
    requests
        .map(|(_, path, _)| (path, 1u64))
        .reduce_by_key_and_window_with(spec, window, slide)?
        .foreach_rdd(move |rdd, _| {
            println!("  last {window:?}: top 5 paths {}", top(rdd.collect()?, 5));
            Ok(())
        });

    // Known clients of the batch: per-client counts joined with the static table.
    let t = totals.clone();
    requests
        .map(|(client, _, _)| (client, 1u64))
        .reduce_by_key(|a, b| a + b)
        .transform(move |counts, _| counts.join(&known_rdd))
        .foreach_rdd(move |rdd, _| {
            let mut seen = rdd.collect()?;
            seen.sort_by(|(ca, (na, _)), (cb, (nb, _))| nb.cmp(na).then_with(|| ca.cmp(cb)));
            let mut totals = t.lock();
            let listed: Vec<String> = seen
                .iter()
                .map(|(client, (n, label))| {
                    *totals.known_requests.entry(client.clone()).or_default() += n;
                    format!("{client} ({label}):{n}")
                })
                .collect();
            if listed.is_empty() {
                println!("  known clients: none");
            } else {
                println!("  known clients: {}", listed.join(" "));
            }
            Ok(())
        });

    let progress = Progress::new(expected_records);
    ssc.add_listener(progress);
    let input_report = support::InputReport::new();
    ssc.add_listener(input_report.clone());
    // Done once the feed closed, the receiver read all of it, and every record stored was
    // processed: only then are its loss counts final.
    let done = input_report.input_done();
    let ending = run_until_done(&ssc, done).await?;
    // Printed after a signal too (what was read so far); a loss fails only a whole run.
    let losses = input_report.print_and_check(&args.lines);
    if ending == Ending::Done {
        losses?;
    }
    server.abort();

    let totals = std::mem::take(&mut *totals.lock());
    if let Ending::Interrupted(signal) = ending {
        println!(
            "Stopped on a signal after {} of {} lines: the checks against the whole file are skipped.",
            totals.lines,
            text.len()
        );
        return Err(signal.into());
    }
    report(
        &totals,
        &expected,
        &text,
        &frequent,
        window,
        args.max_malformed_percent,
    )
}

/// Prints the totals and checks them against the pass over the file.
fn report(
    totals: &Totals,
    expected: &Expected,
    text: &[String],
    frequent: &[(String, u64)],
    window: Duration,
    max_malformed_percent: f64,
) -> Result<(), BoxError> {
    let malformed = totals.malformed.len() as u64;
    let mut status: BTreeMap<u16, u64> = BTreeMap::new();
    for counts in totals.batch_status.values() {
        for (s, n) in counts {
            *status.entry(*s).or_default() += n;
        }
    }
    let parsed: u64 = status.values().sum();
    println!(
        "Totals: {} lines, {parsed} parsed, {malformed} malformed; status {}",
        totals.lines,
        by_status(&status)
    );
    for (number, error, line) in totals.malformed.iter().take(MALFORMED_PRINTED) {
        println!("Malformed line {number}: {error}: {}", clip(line));
    }
    if malformed as usize > MALFORMED_PRINTED {
        println!(
            "... and {} more malformed lines (not printed)",
            malformed as usize - MALFORMED_PRINTED
        );
    }

    if totals.lines == 0 {
        return Err("nothing to check: the input has no lines".into());
    }
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        println!("Check {}: {what}", if ok { "OK" } else { "FAILED" });
        if !ok {
            failures.push(what);
        }
    };
    check(
        totals.lines == text.len() as u64 && parsed + malformed == totals.lines,
        format!(
            "lines streamed {} = lines in the file {} = parsed {parsed} + malformed {malformed}",
            totals.lines,
            text.len()
        ),
    );
    check(
        parsed == expected.parsed && status == expected.status,
        format!(
            "status counts summed over all batches equal those of the file ({} parsed lines)",
            expected.parsed
        ),
    );
    let numbers: Vec<u64> = totals.malformed.iter().map(|(n, _, _)| *n).collect();
    let same_content = totals.malformed.iter().all(|(n, _, line)| {
        usize::try_from(*n - 1)
            .ok()
            .and_then(|i| text.get(i))
            .is_some_and(|l| l == line)
    });
    check(
        numbers == expected.malformed_lines && same_content,
        format!(
            "malformed line numbers {} are the file's {}, with the same content",
            short_list(&numbers),
            short_list(&expected.malformed_lines)
        ),
    );
    let bad_windows = totals
        .window_status
        .iter()
        .filter(|(t, counts)| {
            let mut sum: BTreeMap<u16, u64> = BTreeMap::new();
            // The window at t covers the batches in (t - window, t].
            let batches = (Bound::Excluded(**t - window), Bound::Included(**t));
            for batch in totals.batch_status.range(batches).map(|(_, b)| b) {
                for (s, n) in batch {
                    *sum.entry(*s).or_default() += n;
                }
            }
            sum != **counts
        })
        .count();
    let windows = totals.window_status.len();
    check(
        windows > 0 && bad_windows == 0,
        if windows == 0 {
            "no window was compared (the run ended before the first window)".to_string()
        } else {
            format!(
                "each of the {windows} windows' status counts is the sum of its batches' \
                 ({bad_windows} differ)"
            )
        },
    );
    let known_ok = frequent
        .iter()
        .all(|(client, n)| totals.known_requests.get(client).copied().unwrap_or(0) == *n);
    check(
        known_ok,
        format!(
            "each known client's counts summed over all batches equal its requests in the file ({} clients)",
            frequent.len()
        ),
    );
    let share = 100.0 * malformed as f64 / totals.lines as f64;
    let within = share <= max_malformed_percent;
    check(
        within,
        format!(
            "{malformed} malformed of {} lines ({share:.2} %) {} --max-malformed-percent {max_malformed_percent} %",
            totals.lines,
            if within { "is within" } else { "exceeds" }
        ),
    );
    if !failures.is_empty() {
        return Err(format!(
            "{} check(s) failed: {}",
            failures.len(),
            failures.join("; ")
        )
        .into());
    }
    println!("Done: {} lines processed.", totals.lines);
    Ok(())
}
