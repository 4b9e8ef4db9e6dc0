//! The Nexmark queries q0, q1, q2, q3, q5, q7 and q8 as DStream programs, the pinned event
//! generator, and how Nexmark's event time maps onto rivulet's batches.
//!
//! Shared, without copies, by the `nexmark` harness (`src/bin/nexmark/main.rs`) and by
//! `benches/tests/nexmark.rs` (`#[path = "../src/bin/nexmark/queries.rs"] mod queries;`). Only the
//! public API (`rivulet::prelude`) is used.
//!
//! # Event time and batches
//!
//! D-Streams windows are over batch time, so event time is mapped onto batches: the batch
//! interval is [`BATCH`] (1 s) and **one batch holds exactly the events whose Nexmark event
//! time falls in one second**: an event with `date_time` `d` (ms) goes to batch number
//! `k = (d - BASE_TIME_MS) / 1000 + 1` (1-based), whose batch time is `k * 1000` ms on the
//! manual clock (zero time 0). Batch `k` therefore covers event time
//! `[BASE_TIME_MS + (k-1) s, BASE_TIME_MS + k s)`, and a window of `w` seconds ending at batch
//! `k` covers event time `[k - w, k)` s after `BASE_TIME_MS`: Nexmark's tumbling and hopping
//! windows, aligned at `BASE_TIME_MS`. The generator's rate (`events_per_sec`, events per
//! second of *event time*) sets how many events a batch holds; it has nothing to do with how
//! fast the harness feeds them ([`crate::feed`] places each second of events in its batch,
//! then cuts the batch). The first windows are partial (they start before the first event),
//! as Flink's hopping windows that start before the stream.
//!
//! Windows and slides are whole seconds, so multiples of the batch interval: q5 uses
//! Nexmark's 10 s window sliding by 2 s, q7 and q8 10 s tumbling windows.

// Each includer uses part of this module.
#![allow(dead_code)]

use std::hash::{Hash, Hasher};
use std::time::Duration;

use nexmark::config::NexmarkConfig;
use nexmark::event::{Bid, Event};
use nexmark::EventGenerator;
use rivulet::prelude::*;
use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};

/// The batch interval, and the slice of event time each batch holds: 1 s.
pub const BATCH: Duration = Duration::from_secs(1);
/// The slice of event time one batch holds, in ms (= [`BATCH`]).
pub const SLICE_MS: u64 = 1000;
/// Event time of the first event, in ms since the Unix epoch (pinned: 2026-01-01T00:00:00Z),
/// so that every run generates the same events.
pub const BASE_TIME_MS: u64 = 1_767_225_600_000;
/// q5's window (Nexmark: hopping window of 10 s).
pub const Q5_WINDOW: Duration = Duration::from_secs(10);
/// q5's slide (Nexmark: 2 s).
pub const Q5_SLIDE: Duration = Duration::from_secs(2);
/// q7's and q8's tumbling window (Nexmark: 10 s).
pub const TUMBLE: Duration = Duration::from_secs(10);
/// Batches per tumbling window: the run is padded with empty batches to a multiple of this,
/// so that the last window fires (as a bounded Flink source's final watermark does).
pub const TUMBLE_BATCHES: usize = 10;
/// q1's conversion rate from dollars to euros (Nexmark's q1: `0.908 * price`).
pub const DOL_TO_EUR: f64 = 0.908;
/// q2's filter: bids on auctions whose id is a multiple of this (Nexmark's q2: `auction % 123 = 0`).
pub const Q2_MODULUS: usize = 123;
/// q3's states (Nexmark's `'OR', 'ID', 'CA'`; the generator writes them in lower case).
pub const Q3_STATES: [&str; 3] = ["or", "id", "ca"];
/// q3's category (Nexmark's `category = 10`).
pub const Q3_CATEGORY: usize = 10;

/// The generator's configuration: Nexmark's defaults (1 person : 3 auctions : 46 bids,
/// 1000 active people, 100 auctions in flight, events seeded by their id from
/// `first_event_id` 0), with the first event at [`BASE_TIME_MS`] and a constant rate of
/// `events_per_sec` events per second of event time.
pub fn generator_config(events_per_sec: usize) -> NexmarkConfig {
    NexmarkConfig {
        base_time: BASE_TIME_MS,
        first_event_id: 0,
        first_event_number: 0,
        first_rate: events_per_sec,
        next_rate: events_per_sec,
        ..NexmarkConfig::default()
    }
}

/// The first `events` events of the pinned generator, grouped by batch: element `k - 1`
/// holds, in generation order, the events of batch `k` (see the module doc); seconds
/// without events are empty batches.
pub fn generate(events: usize, events_per_sec: usize) -> Vec<Vec<Event>> {
    generate_with(events, generator_config(events_per_sec))
}

/// [`generate`] with another generator configuration (its `base_time` must be
/// [`BASE_TIME_MS`] for the batch mapping to start at batch 1).
pub fn generate_with(events: usize, config: NexmarkConfig) -> Vec<Vec<Event>> {
    let mut batches: Vec<Vec<Event>> = Vec::new();
    for event in EventGenerator::new(config).take(events) {
        let k = batch_index(&event);
        if batches.len() <= k {
            batches.resize_with(k + 1, Vec::new);
        }
        batches[k].push(event);
    }
    batches
}

/// The 0-based batch index of an event: `(date_time - BASE_TIME_MS) / SLICE_MS`.
pub fn batch_index(event: &Event) -> usize {
    (event.timestamp().saturating_sub(BASE_TIME_MS) / SLICE_MS) as usize
}

/// The 1-based batch number of a batch time on the manual clock (`time / BATCH`).
pub fn batch_number(time: Time) -> usize {
    (time.as_ms() / SLICE_MS as i64) as usize
}

/// How many batches a run over `slices` batches of events drives: padded with empty
/// batches to a multiple of [`TUMBLE_BATCHES`] so that every tumbling window fires.
pub fn batches_to_run(slices: usize) -> usize {
    slices.div_ceil(TUMBLE_BATCHES).max(1) * TUMBLE_BATCHES
}

/// A query's output row: comparable, printable, and hashed into the per-batch digests the
/// harness checks.
pub trait Row: Data + std::fmt::Debug + PartialEq {
    /// A 64-bit hash of the row's fields (FxHash: pinned, the same in every run).
    fn fingerprint(&self) -> u64;
}

fn fx(f: impl FnOnce(&mut FxHasher)) -> u64 {
    let mut h = FxHasher::default();
    f(&mut h);
    h.finish()
}

impl Row for Event {
    fn fingerprint(&self) -> u64 {
        fx(|h| match self {
            Event::Person(p) => {
                (0u8, p.id, &p.name, &p.email_address, &p.credit_card).hash(h);
                (&p.city, &p.state, p.date_time, &p.extra).hash(h);
            }
            Event::Auction(a) => {
                (1u8, a.id, &a.item_name, &a.description, a.initial_bid).hash(h);
                (
                    a.reserve,
                    a.date_time,
                    a.expires,
                    a.seller,
                    a.category,
                    &a.extra,
                )
                    .hash(h);
            }
            Event::Bid(b) => {
                (2u8, b.auction, b.bidder, b.price, &b.channel, &b.url).hash(h);
                (b.date_time, &b.extra).hash(h);
            }
        })
    }
}

/// q1's row: a bid with its price in euros (Nexmark's q1 selects
/// `auction, bidder, 0.908 * price, dateTime, extra`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q1Row {
    /// The auction's id.
    pub auction: usize,
    /// The bidder's person id.
    pub bidder: usize,
    /// `price * 0.908`: the bid in euro cents, as a float.
    pub price: f64,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
    /// The bid's padding string.
    pub extra: String,
}

impl Row for Q1Row {
    fn fingerprint(&self) -> u64 {
        fx(|h| {
            let r = self;
            (
                r.auction,
                r.bidder,
                r.price.to_bits(),
                r.date_time,
                &r.extra,
            )
                .hash(h)
        })
    }
}

/// q2's row: `(auction, price)` of a bid on an auction whose id is a multiple of 123.
pub type Q2Row = (usize, usize);

impl Row for (usize, usize) {
    fn fingerprint(&self) -> u64 {
        fx(|h| self.hash(h))
    }
}

/// q3's row (Nexmark's q3 selects `P.name, P.city, P.state, A.id`): a seller in Oregon,
/// Idaho or California and one of their auctions in category 10.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q3Row {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's state (`or`, `id` or `ca`).
    pub state: String,
    /// The auction's id.
    pub auction: usize,
}

impl Row for Q3Row {
    fn fingerprint(&self) -> u64 {
        fx(|h| (&self.name, &self.city, &self.state, self.auction).hash(h))
    }
}

/// q5's row: an auction with the most bids in the window ending at the batch, and how
/// many (every auction that ties for the most is a row, as Nexmark's q5 `num >= maxn`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q5Row {
    /// The auction's id.
    pub auction: usize,
    /// Its bids in the window.
    pub bids: u64,
}

impl Row for Q5Row {
    fn fingerprint(&self) -> u64 {
        fx(|h| (self.auction, self.bids).hash(h))
    }
}

/// q7's row: a bid with the highest price in the tumbling window ending at the batch
/// (Nexmark's q7 selects `auction, price, bidder, dateTime`; ties are all rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q7Row {
    /// The auction's id.
    pub auction: usize,
    /// The bid's price (cents).
    pub price: usize,
    /// The bidder's person id.
    pub bidder: usize,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
}

impl Row for Q7Row {
    fn fingerprint(&self) -> u64 {
        fx(|h| (self.auction, self.price, self.bidder, self.date_time).hash(h))
    }
}

/// q8's row: a person who joined and created an auction in the same tumbling window
/// (Nexmark's q8 selects `P.id, P.name` per window; the window is the batch's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q8Row {
    /// The person's id.
    pub id: usize,
    /// The person's name.
    pub name: String,
}

impl Row for Q8Row {
    fn fingerprint(&self) -> u64 {
        fx(|h| (self.id, &self.name).hash(h))
    }
}

/// The bids of an event stream.
pub fn bids(events: &DStream<Event>) -> DStream<Bid> {
    events.flat_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

/// q0, pass-through: every event, unchanged, in its batch (Nexmark's q0 measures the
/// framework's own cost).
pub fn q0(events: &DStream<Event>) -> DStream<Event> {
    events.map(|e| e)
}

/// q1, currency conversion: every bid with its price times 0.908 (Nexmark's q1).
pub fn q1(events: &DStream<Event>) -> DStream<Q1Row> {
    bids(events).map(|b| Q1Row {
        auction: b.auction,
        bidder: b.bidder,
        price: b.price as f64 * DOL_TO_EUR,
        date_time: b.date_time,
        extra: b.extra,
    })
}

/// q2, selection: `(auction, price)` of the bids on auctions whose id is a multiple of
/// 123 (Nexmark's q2).
pub fn q2(events: &DStream<Event>) -> DStream<Q2Row> {
    // The filter reads the events by reference and clones only the bids it keeps.
    let kept = events.filter(|e| matches!(e, Event::Bid(b) if b.auction % Q2_MODULUS == 0));
    bids(&kept).map(|b| (b.auction, b.price))
}

/// One side of q3's join, keyed by person id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Q3Side {
    /// A person in OR, ID or CA: `(name, city, state)`.
    Person(String, String, String),
    /// An auction in category 10 sold by the person: its id.
    Auction(usize),
}

/// q3's state per person id: the person once seen, and the auctions seen before them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Q3State {
    /// `(name, city, state)` once the person arrived.
    pub person: Option<(String, String, String)>,
    /// Ids of category-10 auctions of this seller that arrived before the person.
    pub waiting: Vec<usize>,
}

/// q3, local item suggestion: persons in OR, ID or CA joined with their auctions in
/// category 10 (Nexmark's q3, an unwindowed join). Persons and their auctions arrive in
/// different batches, so the join keeps state with `map_with_state`, keyed by person id: a
/// match is emitted once, in the batch of whichever side arrives last. Like Nexmark's q3
/// in Flink, the state is never expired. Both sides are taken from the events in one
/// pass: a `filter` that reads the events by reference and clones only those of either
/// side, then a `flat_map` (a `union` of two would read every event twice).
pub fn q3(events: &DStream<Event>) -> DStream<Q3Row> {
    // One pass over the events for both sides; the filter reads them by reference, so
    // only the few events of either side are cloned.
    let sides = events.filter(|e| match e {
        Event::Person(p) => Q3_STATES.contains(&p.state.as_str()),
        Event::Auction(a) => a.category == Q3_CATEGORY,
        Event::Bid(_) => false,
    });
    let sides = sides.flat_map(|e| match e {
        Event::Person(p) if Q3_STATES.contains(&p.state.as_str()) => {
            Some((p.id, Q3Side::Person(p.name, p.city, p.state)))
        }
        Event::Auction(a) if a.category == Q3_CATEGORY => Some((a.seller, Q3Side::Auction(a.id))),
        _ => None,
    });
    let spec = StateSpec::function(
        |_: &usize, side: Option<Q3Side>, state: &mut State<Q3State>| -> Vec<Q3Row> {
            let mut s = state.get().cloned().unwrap_or_default();
            let row = |(name, city, state): &(String, String, String), auction| Q3Row {
                name: name.clone(),
                city: city.clone(),
                state: state.clone(),
                auction,
            };
            let out = match side {
                None => Vec::new(),
                Some(Q3Side::Person(name, city, st)) => {
                    let p = (name, city, st);
                    let out = s.waiting.drain(..).map(|a| row(&p, a)).collect();
                    s.person = Some(p);
                    out
                }
                Some(Q3Side::Auction(a)) => match &s.person {
                    Some(p) => vec![row(p, a)],
                    None => {
                        s.waiting.push(a);
                        Vec::new()
                    }
                },
            };
            state.update(s);
            out
        },
    );
    sides.map_with_state(spec).flat_map(|rows| rows)
}

/// The larger of two `(key, ties)`, the ties of both when the keys are equal: the arg-max
/// with ties kept, as a reduce function (q5's most bids, q7's highest price).
fn merge_max<K: Ord, V>(a: (K, Vec<V>), b: (K, Vec<V>)) -> (K, Vec<V>) {
    match a.0.cmp(&b.0) {
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Equal => {
            let mut ties = a.1;
            ties.extend(b.1);
            (a.0, ties)
        }
    }
}

/// q5, hot items: every 2 s, the auction(s) with the most bids over the last 10 s
/// (Nexmark's q5). Bid counts per auction are kept incrementally over the sliding window
/// (`reduce_by_key_and_window` with its inverse; auctions whose count fell to zero leave
/// the state), then the maximum is found per window.
///
/// # Errors
/// If the window is not a multiple of the batch interval (it is, with [`BATCH`]).
pub fn q5(events: &DStream<Event>) -> Result<DStream<Q5Row>> {
    let counts = bids(events)
        .map(|b| (b.auction, 1u64))
        .reduce_by_key_and_window_with(
            WindowReduce::new(|a: u64, b| a + b)
                .inverse(|a, b| a - b)
                .filter(|(_, n)| *n != 0),
            Q5_WINDOW,
            Q5_SLIDE,
        )?;
    Ok(counts
        .map(|(auction, n)| ((), (n, vec![auction])))
        .reduce_by_key(merge_max::<u64, usize>)
        .flat_map(|((), (bids, ids))| {
            ids.into_iter()
                .map(|auction| Q5Row { auction, bids })
                .collect::<Vec<_>>()
        }))
}

/// q7, highest bid: every 10 s, the bid(s) with the highest price in the last 10 s
/// (Nexmark's q7, a tumbling window). Each batch is reduced to its highest bids and cached,
/// then the window's batches to theirs: Spark's `reduceByWindow` (`reduce(f).window(..)
/// .reduce(f)`, whose window persists its parent). rivulet's `window` caches its parent
/// itself only when windows overlap (window > slide); with this tumbling window each batch
/// is reduced once either way, and the explicit cache keeps the reduced batch instead of
/// its input until the window fires.
///
/// # Errors
/// If the window is not a multiple of the batch interval (it is, with [`BATCH`]).
pub fn q7(events: &DStream<Event>) -> Result<DStream<Q7Row>> {
    let highest = bids(events)
        .map(|b| {
            let row = Q7Row {
                auction: b.auction,
                price: b.price,
                bidder: b.bidder,
                date_time: b.date_time,
            };
            (b.price, vec![row])
        })
        .reduce(merge_max::<usize, Q7Row>)
        .cache()
        .window(TUMBLE, TUMBLE)?
        .reduce(merge_max::<usize, Q7Row>);
    Ok(highest.flat_map(|(_, rows)| rows))
}

/// q8, new users: every 10 s, the persons who joined in the last 10 s and created an
/// auction in the same 10 s (Nexmark's q8): the window's persons joined with the window's
/// sellers, a windowed join. Each batch's persons and sellers are taken from the events in
/// one pass, cached because both windows read it (`window` caches its parent only when
/// windows overlap; uncached, the pass would run once per window that reads it).
///
/// # Errors
/// If the window is not a multiple of the batch interval (it is, with [`BATCH`]).
pub fn q8(events: &DStream<Event>) -> Result<DStream<Q8Row>> {
    // One pass over the events for both sides (the filter reads them by reference and
    // clones only persons and auctions), cached: both windows read it.
    let split = events
        .filter(|e| !matches!(e, Event::Bid(_)))
        .flat_map(|e| match e {
            Event::Person(p) => Some(Q8Side::Person(p.id, p.name)),
            Event::Auction(a) => Some(Q8Side::Seller(a.seller)),
            Event::Bid(_) => None,
        })
        .cache();
    let people = split
        .flat_map(|s| match s {
            Q8Side::Person(id, name) => Some((id, name)),
            Q8Side::Seller(_) => None,
        })
        .window(TUMBLE, TUMBLE)?;
    let sellers = split
        .flat_map(|s| match s {
            Q8Side::Seller(id) => Some((id, ())),
            Q8Side::Person(..) => None,
        })
        .reduce_by_key_and_window(|(), ()| (), TUMBLE, TUMBLE)?;
    Ok(people
        .join(&sellers)
        .map(|(id, (name, ()))| Q8Row { id, name }))
}

/// What q8 keeps of an event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Q8Side {
    /// A new person: id and name.
    Person(usize, String),
    /// An auction: its seller's id.
    Seller(usize),
}
