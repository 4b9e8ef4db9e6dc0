//! A reactive web service that mixes per-event actors with micro-batch analytics.
//!
//! * `POST /events` (actix-web, 127.0.0.1) takes a JSON event `{"user", "page", "time"}`
//!   (`time` in seconds since the Unix epoch). Each user has a session actor that answers at
//!   once with the user's running event count and session length, and forwards the event
//!   into an `actor_stream`. A body that is not an event is answered `400` with the reason,
//!   and counted.
//! * Every batch (1 s), the analytics count page views, the top pages of the last 30 s (the
//!   incremental windowed reduce, zero counts filtered out) and per-user totals
//!   (`map_with_state` with a session timeout), and `send_to` a dashboard actor, which
//!   `GET /stats` reads.
//! * Overload: when the analytics fall behind, the stream's buffer fills, the session
//!   actors' forwards wait (backpressure), request latency rises, and a request that cannot
//!   forward within `--deadline-ms` is answered `503` with `Retry-After`, its event not
//!   stored: no queue grows without bound.
//!
//! With no arguments it serves on a free port and plays the bundled access log
//! (`examples/data/apache_access.log`: client IP as the user, path as the page) against
//! itself over real HTTP at `--rate` events/s, prints a line per batch, and checks that the
//! analytics counted every accepted event exactly once, against the session actors' own
//! count and the generator's count of 2xx answers. Exit status: 0 ok, 1 a check failed or a
//! runtime error, 2 a usage error.
//!
//! ```text
//! cargo run --example reactive_service                       # server + generator, checked
//! cargo run --example reactive_service -- --serve-only --port 8080
//! curl -si -X POST 127.0.0.1:8080/events -H 'content-type: application/json' -d '{"user":"ann","page":"/","time":1431857103}'
//! curl -s 127.0.0.1:8080/stats
//! cargo run --example reactive_service -- --generate-only --target 127.0.0.1:8080 --limit 500
//! # overload: slow analytics, a small buffer, a short deadline -> 503s, still exact
//! cargo run --example reactive_service -- --rate 0 --analytics-cost-us 2000 --buffer-records 500 --deadline-ms 200
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use clap::Parser;
use rivulet::prelude::*;
use serde::{Deserialize, Serialize};

#[path = "../support/allocator.rs"]
mod allocator;
#[path = "../support/mod.rs"]
mod support;

// The access-log parser of the log_analytics example (not every field is used here).
#[allow(dead_code)]
#[path = "../log_analytics/parse.rs"]
mod parse;

mod analytics;
mod digest;
mod load;
mod server;
mod sessions;

use analytics::{Dashboard, GetTotals, Totals};
use load::{LoadOptions, LoadReport};
use sessions::{Ledger, Sessions};

/// One page view, as posted to `POST /events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEvent {
    /// Who viewed the page (the access log's client IP).
    pub user: String,
    /// The page's path.
    pub page: String,
    /// When, in seconds since the Unix epoch.
    pub time: i64,
}

#[derive(Parser, Debug)]
#[command(
    about = "A reactive web service: per-user session actors, micro-batch analytics, backpressure"
)]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Run the service alone until SIGINT/SIGTERM (for curl); checks at the stop.
    #[arg(long, conflicts_with = "generate_only")]
    serve_only: bool,
    /// Run the load generator alone, against --target.
    #[arg(long, requires = "target")]
    generate_only: bool,
    /// The service the generator posts to (with --generate-only), ip:port.
    #[arg(long, value_name = "ADDR")]
    target: Option<SocketAddr>,
    /// Port the service listens on, on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    http_workers: u64,
    /// Access log the generator plays (Apache combined log format).
    #[arg(long, default_value = "examples/data/apache_access.log")]
    input: PathBuf,
    /// Events the generator posts, at most (0: every line of --input).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Every event the generator posts comes from a new user (`user-<n>`), the log played
    /// again up to --limit: to watch memory stay flat over many users.
    #[arg(long)]
    fresh_users: bool,
    /// Events per second the generator posts; 0 posts as fast as the service answers.
    #[arg(long, default_value_t = 1000, value_parser = support::parse_rate)]
    rate: u64,
    /// Concurrent connections of the generator.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: u64,
    /// Times the generator sends an event answered 503 again (after its Retry-After).
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Malformed bodies the generator sends among the events (each must be answered 400).
    #[arg(long, default_value_t = 3)]
    malformed: usize,
    /// Batch interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = support::parse_batch_ms)]
    batch_ms: u64,
    /// Length of the top-pages window, in seconds (a multiple of the batch interval).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    window_secs: u64,
    /// A user without events for this long (processing time) ends their session in the
    /// analytics: their total is reported as ended and their state dropped.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    session_timeout_secs: u64,
    /// How long a request may wait for room in the stream before it is answered 503.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    deadline_ms: u64,
    /// Records the stream buffers before forwards wait (default: rivulet's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    buffer_records: Option<u64>,
    /// Makes the analytics spend this long per event (microseconds), so that they handle at
    /// most 1,000,000 / N events/s: to show overload.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    analytics_cost_us: u64,
    /// Executors (task threads); default: one per core.
    #[arg(long, value_parser = support::parse_executors)]
    executors: Option<usize>,
    /// No progress line per batch.
    #[arg(long)]
    quiet: bool,
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    support::init_tracing();
    allocator::init();
    let args = Args::parse();
    support::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    let options = LoadOptions {
        rate: args.rate,
        connections: args.connections as usize,
        retries: args.retries,
        malformed: args.malformed,
    };
    if args.generate_only {
        let target = args
            .target
            .ok_or_else(|| support::usage("--generate-only needs --target ip:port"))?;
        return generate_only(&args, target, options).await;
    }

    let events = if args.serve_only {
        Vec::new()
    } else {
        let (events, skipped) = load::events_from_log(&args.input, args.limit, args.fresh_users)?;
        println!(
            "Playing {} events from {} ({skipped} lines skipped: not a request) at {} events/s",
            events.len(),
            args.input.display(),
            args.rate
        );
        events
    };

    let batch = Duration::from_millis(args.batch_ms);
    let window = Duration::from_secs(args.window_secs);
    if !window.as_millis().is_multiple_of(batch.as_millis()) {
        return Err(support::usage(format!(
            "--window-secs {} is not a multiple of --batch-ms {}",
            args.window_secs, args.batch_ms
        )));
    }
    let mut config = support::base_config()
        .app_name("reactive_service")
        .batch_interval(batch);
    if let Some(n) = args.executors {
        config = config.executors(n);
    }
    if let Some(n) = args.buffer_records {
        config = config.receiver_buffer_records(n as usize);
    }
    let ssc = StreamingContext::new(config)?;
    let (stream, source) = ssc.actor_stream::<PageEvent>("events");
    let ledger = Arc::new(Ledger::default());
    let dashboard = Dashboard::new(window, ledger.clone(), !args.quiet).start();
    analytics::build(
        &ssc,
        &stream,
        dashboard.clone().recipient(),
        window,
        Duration::from_secs(args.session_timeout_secs),
        Duration::from_micros(args.analytics_cost_us),
    )?;
    ssc.start().await?;
    support::print_ui_url(&ssc);
    let signals = support::SignalStop::install(&ssc)?;
    let service = server::Service {
        sessions: Sessions::new(
            source,
            ledger.clone(),
            Duration::from_secs(args.session_timeout_secs),
        ),
        dashboard: dashboard.clone(),
        ledger: ledger.clone(),
        deadline: Duration::from_millis(args.deadline_ms),
    };
    let (address, http) = server::start(service, args.port, args.http_workers as usize)?;
    println!("Listening on http://{address} (POST /events, GET /stats)");

    let load = if args.serve_only {
        println!("Serving until SIGINT or SIGTERM.");
        support::await_termination(&ssc).await?;
        None
    } else {
        tokio::select! {
            report = load::run(address, events, options.clone()) => Some(report),
            stopped = support::await_termination(&ssc) => { stopped?; None }
        }
    };
    // No new requests; then the graceful stop processes every event stored.
    http.stop(true).await;
    ssc.stop(StopMode::Graceful).await?;
    let totals = dashboard.send(GetTotals).await?;
    if signals.interrupted() && !args.serve_only {
        println!("Stopped on a signal: the generator's counts are not checked.");
    }
    report(&ledger, &totals, load.as_ref(), &options)?;
    // Serving only, a signal is the end; with the load generator it cut the run short.
    match signals.signal().filter(|_| !args.serve_only) {
        Some(signal) => Err(signal.into()),
        None => Ok(()),
    }
}

/// The generator alone, against `target`.
async fn generate_only(
    args: &Args,
    target: SocketAddr,
    options: LoadOptions,
) -> Result<(), BoxError> {
    let (events, skipped) = load::events_from_log(&args.input, args.limit, args.fresh_users)?;
    println!(
        "Posting {} events from {} ({skipped} lines skipped) to http://{target} at {} events/s",
        events.len(),
        args.input.display(),
        args.rate
    );
    let report = load::run(target, events, options.clone()).await;
    print_load(&report, &options);
    match load::get(target, "/stats").await {
        Ok(stats) => println!("GET /stats: {stats}"),
        Err(e) => println!("GET /stats failed: {e}"),
    }
    let mut failures = Checks::default();
    check_load(&mut failures, &report, &options);
    failures.result()
}

fn print_load(load: &LoadReport, options: &LoadOptions) {
    let (p50, p99) = (
        support::ms(load.latencies.quantile(0.5)),
        support::ms(load.latencies.quantile(0.99)),
    );
    let secs = load.elapsed.as_secs_f64().max(1e-9);
    println!(
        "Load: {} events + {} malformed in {:.1} s ({:.0} events/s) over {} connections: {} accepted (2xx), {} refused (503, after {} retries), {} bad requests (400), {} other answers, {} errors; latency p50 {p50:.1} ms, p99 {p99:.1} ms",
        load.events,
        options.malformed,
        load.elapsed.as_secs_f64(),
        load.events as f64 / secs,
        options.connections,
        load.accepted_total(),
        load.unavailable,
        load.retried,
        load.bad_request,
        load.unexpected.len(),
        load.errors.len(),
    );
    for (status, body) in load.unexpected.iter().take(5) {
        println!("  unexpected answer {status}: {body}");
    }
    for error in load.errors.iter().take(5) {
        println!("  error: {error}");
    }
}

/// Check results, printed as they are made.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        println!("Check {}: {what}", if ok { "OK" } else { "FAILED" });
        if !ok {
            self.0.push(what);
        }
    }

    fn result(self) -> Result<(), BoxError> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(format!("{} check(s) failed: {}", self.0.len(), self.0.join("; ")).into())
    }
}

fn check_load(checks: &mut Checks, load: &LoadReport, options: &LoadOptions) {
    checks.check(
        load.errors.is_empty() && load.unexpected.is_empty(),
        format!(
            "every request was answered 2xx, 400 (malformed) or 503 ({} errors, {} other answers)",
            load.errors.len(),
            load.unexpected.len()
        ),
    );
    checks.check(
        load.bad_request == options.malformed as u64,
        format!(
            "each of the {} malformed bodies was answered 400 ({})",
            options.malformed, load.bad_request
        ),
    );
}

/// Prints the summary and checks the analytics against the independent counts (per user
/// through [`digest::CountDigest`]s, so that none of the three sides keeps every user).
fn report(
    ledger: &Ledger,
    totals: &Totals,
    load: Option<&LoadReport>,
    options: &LoadOptions,
) -> Result<(), BoxError> {
    let accepted = ledger.accepted_by_user();
    let accepted_total = accepted.events;
    let views = totals.views;
    if let Some(load) = load {
        print_load(load, options);
    }
    let count = |n: &std::sync::atomic::AtomicU64| Ledger::get(n);
    println!(
        "Service: {accepted_total} events accepted in {} sessions, {} ended by the timeout; {} forwards waited for room; refused: {} overloaded (503), {} while stopping (503), {} malformed (400), {} too large (413), {} not JSON (415)",
        count(&ledger.sessions_started),
        count(&ledger.sessions_evicted),
        count(&ledger.waited),
        count(&ledger.overloaded),
        count(&ledger.stopped),
        count(&ledger.malformed),
        count(&ledger.oversized),
        count(&ledger.unsupported),
    );
    println!(
        "Analytics: {} batches, {views} page views, {} users active, {} sessions ended by the timeout",
        totals.batches, totals.active_users, totals.ended_sessions
    );

    let mut checks = Checks::default();
    checks.check(
        views == accepted_total,
        format!(
            "page views summed over all batches ({views}) = events the sessions accepted ({accepted_total})"
        ),
    );
    checks.check(
        totals.per_user == accepted,
        format!(
            "each user's totals from map_with_state = the events their sessions accepted \
             (digests of {} and {accepted_total} events {})",
            totals.per_user.events,
            if totals.per_user == accepted {
                "equal"
            } else {
                "differ"
            }
        ),
    );
    checks.check(
        totals.windows > 0 && totals.bad_windows == 0,
        format!(
            "each of the {} windows' views = the sum of its batches' ({} differ)",
            totals.windows, totals.bad_windows
        ),
    );
    if let Some(load) = load {
        checks.check(
            load.accepted == accepted,
            format!(
                "events answered 2xx to the generator ({}) = events accepted, per user (digests {})",
                load.accepted_total(),
                if load.accepted == accepted { "equal" } else { "differ" }
            ),
        );
        checks.check(
            Ledger::get(&ledger.malformed) == options.malformed as u64,
            format!(
                "malformed bodies counted by the service ({}) = sent ({})",
                Ledger::get(&ledger.malformed),
                options.malformed
            ),
        );
        check_load(&mut checks, load, options);
    }
    checks.result()?;
    println!("Done: {accepted_total} events accepted, each counted exactly once.");
    Ok(())
}
