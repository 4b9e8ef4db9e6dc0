//! Nexmark q0, q1, q2, q3, q5, q7 and q8 on rivulet: each query's DStream program (the
//! harness's own, from `src/bin/nexmark/queries.rs`), fed the pinned generator's events
//! through a receiver one second of event time per batch on the manual clock, outputs
//! exactly what the single-threaded reference evaluation (`src/bin/nexmark/reference.rs`)
//! says, batch by batch. The checkpoint directory is on, as in the harness.

#[path = "../src/bin/nexmark/feed.rs"]
mod feed;
#[path = "../src/bin/nexmark/queries.rs"]
mod queries;
#[path = "../src/bin/nexmark/reference.rs"]
mod reference;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexmark::event::Event;
use queries::{batch_number, batches_to_run, generate, Row};
use reference::PerBatch;
use rivulet::prelude::*;

/// How long one query's run may take before its test fails instead of hanging (as the
/// `rivulet` package's tests allow).
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f`, failing the test if it takes longer than [`TEST_TIMEOUT`].
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("the test did not finish within its timeout")
}

/// Events per test: 25 s of event time at [`RATE`], so 30 batches (three tumbling windows,
/// fifteen q5 windows).
const EVENTS: usize = 5_000;
/// Events per second of event time, i.e. per batch.
const RATE: usize = 200;

/// q3's second test: a generator whose sellers are drawn among the last 10 persons and
/// the 10 to come (Nexmark's `active_people` 10; no hot sellers), so that many auctions
/// arrive batches before their seller; 10 persons per batch.
fn q3_stress_config() -> nexmark::config::NexmarkConfig {
    nexmark::config::NexmarkConfig {
        active_people: 10,
        hot_seller_ratio: 1,
        ..queries::generator_config(500)
    }
}

/// Runs `query` over the first `EVENTS` events with 2 executors and returns the rows it
/// output per batch number (batches without rows left out), with the events by batch and
/// the number of batches run.
async fn run_query<R: Row>(
    query: impl FnOnce(&DStream<Event>) -> Result<DStream<R>>,
) -> (PerBatch<R>, Arc<Vec<Vec<Event>>>, usize) {
    run_query_on(generate(EVENTS, RATE), 1, query).await
}

/// [`run_query`] over `slices` (batch `k` = `slices[k - 1]`), stored by `receivers`
/// receivers.
async fn run_query_on<R: Row>(
    slices: Vec<Vec<Event>>,
    receivers: usize,
    query: impl FnOnce(&DStream<Event>) -> Result<DStream<R>>,
) -> (PerBatch<R>, Arc<Vec<Vec<Event>>>, usize) {
    let slices = Arc::new(slices);
    let largest = slices.iter().map(Vec::len).max().unwrap_or(0);
    let dir = tempfile::tempdir().unwrap();
    let config = feed::config(StreamingConfig::new(), 2, largest).checkpoint_dir(dir.path());
    let ssc = StreamingContext::new(config).unwrap();
    let (events, driver) =
        feed::nexmark_stream(&ssc, feed::Events::shared(slices.clone()), receivers).unwrap();
    let out: Arc<Mutex<PerBatch<R>>> = Arc::default();
    let sink = out.clone();
    query(&events).unwrap().foreach_batch(move |t, rows| {
        if !rows.is_empty() {
            let previous = sink.lock().unwrap().insert(batch_number(t), rows);
            assert!(previous.is_none(), "batch {t} output twice");
        }
    });
    let batches = batches_to_run(slices.len());
    within(async {
        ssc.start().await.unwrap();
        driver.run(&ssc, batches).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
    })
    .await;
    let got = std::mem::take(&mut *out.lock().unwrap());
    (got, slices, batches)
}

/// Sorts each batch's rows (by fingerprint, then by their `Debug` form) so that two
/// results compare as multisets per batch.
fn sorted<R: Row>(rows: PerBatch<R>) -> PerBatch<R> {
    rows.into_iter()
        .map(|(k, mut rows)| {
            rows.sort_by(|a, b| {
                a.fingerprint()
                    .cmp(&b.fingerprint())
                    .then_with(|| format!("{a:?}").cmp(&format!("{b:?}")))
            });
            (k, rows)
        })
        .collect()
}

/// Asserts that `got` equals `want` batch by batch, naming the first batch that differs;
/// and that the reference is not trivially empty (a test that compares nothing proves
/// nothing).
fn assert_same<R: Row>(query: &str, want: PerBatch<R>, got: PerBatch<R>, min_rows: usize) {
    let rows: usize = want.values().map(Vec::len).sum();
    assert!(
        rows >= min_rows,
        "{query}: the reference has only {rows} rows (expected at least {min_rows})"
    );
    let (want, got) = (sorted(want), sorted(got));
    let batches: std::collections::BTreeSet<usize> =
        want.keys().chain(got.keys()).copied().collect();
    for k in batches {
        let (w, g) = (want.get(&k), got.get(&k));
        assert!(
            w == g,
            "{query}: batch {k} differs: reference {} rows, rivulet {} rows\nreference: {:?}\nrivulet: {:?}",
            w.map_or(0, Vec::len),
            g.map_or(0, Vec::len),
            w.map(|r| &r[..r.len().min(5)]),
            g.map(|r| &r[..r.len().min(5)]),
        );
    }
}

#[actix::test]
async fn q0_passes_every_event_through_in_its_batch() {
    let (got, slices, _) = run_query(|e| Ok(queries::q0(e))).await;
    assert_same("q0", reference::q0(&slices), got, EVENTS);
}

#[actix::test]
async fn q0_with_three_receivers_still_puts_each_event_in_its_batch() {
    let (got, slices, _) = run_query_on(generate(EVENTS, RATE), 3, |e| Ok(queries::q0(e))).await;
    assert_same("q0", reference::q0(&slices), got, EVENTS);
}

#[actix::test]
async fn q1_converts_every_bid_price() {
    let (got, slices, _) = run_query(|e| Ok(queries::q1(e))).await;
    assert_same("q1", reference::q1(&slices), got, EVENTS / 2);
}

#[actix::test]
async fn q2_selects_bids_on_every_123rd_auction() {
    let (got, slices, _) = run_query(|e| Ok(queries::q2(e))).await;
    assert_same("q2", reference::q2(&slices), got, 1);
}

/// Batch of each person id, and `(batch, seller)` of each auction id.
fn arrivals(slices: &[Vec<Event>]) -> (HashMap<usize, usize>, HashMap<usize, (usize, usize)>) {
    let (mut persons, mut auctions) = (HashMap::new(), HashMap::new());
    for (i, events) in slices.iter().enumerate() {
        for e in events {
            match e {
                Event::Person(p) => {
                    persons.insert(p.id, i);
                }
                Event::Auction(a) => {
                    auctions.insert(a.id, (i, a.seller));
                }
                Event::Bid(_) => {}
            }
        }
    }
    (persons, auctions)
}

/// How many of q3's rows had the person arrive in an earlier batch than the auction, and
/// how many the auction first.
fn q3_orders(slices: &[Vec<Event>], rows: &PerBatch<queries::Q3Row>) -> (usize, usize) {
    let (persons, auctions) = arrivals(slices);
    let (mut person_first, mut auction_first) = (0, 0);
    for r in rows.values().flatten() {
        let (ai, seller) = auctions[&r.auction];
        let pi = persons[&seller];
        person_first += usize::from(pi < ai);
        auction_first += usize::from(ai < pi);
    }
    (person_first, auction_first)
}

#[actix::test]
async fn q3_joins_persons_with_their_earlier_auctions() {
    let (got, slices, _) = run_query(|e| Ok(queries::q3(e))).await;
    let want = reference::q3(&slices);
    let (person_first, _) = q3_orders(&slices, &want);
    assert!(person_first > 0, "q3: no person-first match across batches");
    assert_same("q3", want, got, 3);
}

#[actix::test]
async fn q3_keeps_auctions_waiting_for_their_seller() {
    let slices = queries::generate_with(EVENTS, q3_stress_config());
    let (got, slices, _) = run_query_on(slices, 1, |e| Ok(queries::q3(e))).await;
    let want = reference::q3(&slices);
    let (person_first, auction_first) = q3_orders(&slices, &want);
    assert!(
        person_first > 0 && auction_first > 0,
        "q3: matches across batches: {person_first} person first, {auction_first} auction first"
    );
    assert_same("q3", want, got, 10);
}

#[actix::test]
async fn q5_finds_the_hottest_auctions_of_each_sliding_window() {
    // Two receivers, each storing half of every batch (the harness's `--receivers 2`).
    let (got, slices, batches) = run_query_on(generate(EVENTS, RATE), 2, queries::q5).await;
    assert_same("q5", reference::q5(&slices, batches), got, batches / 2);
}

#[actix::test]
async fn q7_finds_the_highest_bids_of_each_tumbling_window() {
    let (got, slices, batches) = run_query(queries::q7).await;
    assert_same("q7", reference::q7(&slices, batches), got, batches / 10);
}

#[actix::test]
async fn q8_joins_new_persons_with_their_auctions_per_window() {
    let (got, slices, batches) = run_query(queries::q8).await;
    assert_same("q8", reference::q8(&slices, batches), got, 2);
}

#[test]
fn the_generator_is_pinned_and_batches_follow_event_time() {
    let a = generate(2_000, RATE);
    assert_eq!(a, generate(2_000, RATE), "two generations differ");
    assert_eq!(a.len(), 10, "2000 events at 200/s span 10 s");
    for (i, events) in a.iter().enumerate() {
        for e in events {
            let offset = e.timestamp() - queries::BASE_TIME_MS;
            assert_eq!(offset / 1000, i as u64, "{e:?} in batch {}", i + 1);
        }
    }
    // Windows end at batch times that are whole seconds.
    assert_eq!(batch_number(Time::from_ms(7_000)), 7);
    assert_eq!(batches_to_run(25), 30);
}
