//! A straightforward single-threaded evaluation of each Nexmark query: plain loops over the
//! events, grouped by batch as `queries::generate` groups them, written from Nexmark's
//! query definitions and the batch mapping (see `queries.rs`'s module doc), independently
//! of the DStream programs.
//!
//! Each function returns, for every batch number `k` in `1..=batches`, the rows the query
//! outputs at batch `k` (a `BTreeMap` from batch number to rows; batches without rows are
//! left out). Rows within a batch are in no particular order: compare them as multisets.

// Each includer uses part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use nexmark::event::{Bid, Event};

use crate::queries::{
    Q1Row, Q2Row, Q3Row, Q5Row, Q7Row, Q8Row, DOL_TO_EUR, Q2_MODULUS, Q3_CATEGORY, Q3_STATES,
};

/// Rows per 1-based batch number; batches without rows are absent.
pub type PerBatch<R> = BTreeMap<usize, Vec<R>>;

fn put<R>(out: &mut PerBatch<R>, k: usize, row: R) {
    out.entry(k).or_default().push(row);
}

/// `(batch number, bid)` of every bid, batch `k` being `slices[k - 1]`.
fn all_bids(slices: &[Vec<Event>]) -> impl Iterator<Item = (usize, &Bid)> {
    slices.iter().enumerate().flat_map(|(i, events)| {
        events.iter().filter_map(move |e| match e {
            Event::Bid(b) => Some((i + 1, b)),
            _ => None,
        })
    })
}

/// q0: every event in its own batch.
pub fn q0(slices: &[Vec<Event>]) -> PerBatch<Event> {
    let mut out = PerBatch::new();
    for (i, events) in slices.iter().enumerate() {
        for e in events {
            put(&mut out, i + 1, e.clone());
        }
    }
    out
}

/// q1: every bid, price times 0.908.
pub fn q1(slices: &[Vec<Event>]) -> PerBatch<Q1Row> {
    let mut out = PerBatch::new();
    for (k, b) in all_bids(slices) {
        let row = Q1Row {
            auction: b.auction,
            bidder: b.bidder,
            price: DOL_TO_EUR * b.price as f64,
            date_time: b.date_time,
            extra: b.extra.clone(),
        };
        put(&mut out, k, row);
    }
    out
}

/// q2: `(auction, price)` of bids with `auction % 123 == 0`.
pub fn q2(slices: &[Vec<Event>]) -> PerBatch<Q2Row> {
    let mut out = PerBatch::new();
    for (k, b) in all_bids(slices) {
        if b.auction % Q2_MODULUS == 0 {
            put(&mut out, k, (b.auction, b.price));
        }
    }
    out
}

/// q3: each (person in OR/ID/CA, auction in category 10 they sell) pair, in the batch of
/// the later of the two.
pub fn q3(slices: &[Vec<Event>]) -> PerBatch<Q3Row> {
    // person id -> (batch, name, city, state)
    let mut people: HashMap<usize, (usize, &str, &str, &str)> = HashMap::new();
    for (i, events) in slices.iter().enumerate() {
        for e in events {
            if let Event::Person(p) = e {
                if Q3_STATES.iter().any(|s| *s == p.state) {
                    people.insert(p.id, (i + 1, &p.name, &p.city, &p.state));
                }
            }
        }
    }
    let mut out = PerBatch::new();
    for (i, events) in slices.iter().enumerate() {
        for e in events {
            let Event::Auction(a) = e else { continue };
            if a.category != Q3_CATEGORY {
                continue;
            }
            if let Some(&(pk, name, city, state)) = people.get(&a.seller) {
                let row = Q3Row {
                    name: name.to_string(),
                    city: city.to_string(),
                    state: state.to_string(),
                    auction: a.id,
                };
                put(&mut out, pk.max(i + 1), row);
            }
        }
    }
    out
}

/// The bids of each batch, `[k - 1]` for batch `k`.
fn bids_by_batch(slices: &[Vec<Event>]) -> Vec<Vec<&Bid>> {
    let mut by_batch: Vec<Vec<&Bid>> = vec![Vec::new(); slices.len()];
    for (k, b) in all_bids(slices) {
        by_batch[k - 1].push(b);
    }
    by_batch
}

/// The batches `k-9..=k` that exist (`window` batches ending at `k`), as indexes into a
/// per-batch vector of `len` batches.
fn window_range(k: usize, window: usize, len: usize) -> std::ops::Range<usize> {
    (k.saturating_sub(window)).min(len)..k.min(len)
}

/// q5: at every even batch `k`, over the bids of batches `k-9..=k` (those that exist), the
/// auctions with the most bids.
pub fn q5(slices: &[Vec<Event>], batches: usize) -> PerBatch<Q5Row> {
    // Bids per auction in each batch, then summed over each window.
    let per_batch: Vec<HashMap<usize, u64>> = bids_by_batch(slices)
        .iter()
        .map(|bids| {
            let mut counts = HashMap::new();
            for b in bids {
                *counts.entry(b.auction).or_insert(0) += 1;
            }
            counts
        })
        .collect();
    let mut out = PerBatch::new();
    for k in (2..=batches).step_by(2) {
        let mut counts: HashMap<usize, u64> = HashMap::new();
        for batch in &per_batch[window_range(k, 10, per_batch.len())] {
            for (&auction, &n) in batch {
                *counts.entry(auction).or_insert(0) += n;
            }
        }
        let Some(&max) = counts.values().max() else {
            continue;
        };
        for (&auction, &n) in &counts {
            if n == max {
                put(&mut out, k, Q5Row { auction, bids: n });
            }
        }
    }
    out
}

/// q7: at every batch `k` that is a multiple of 10, the bids of batches `k-9..=k` with the
/// highest price.
pub fn q7(slices: &[Vec<Event>], batches: usize) -> PerBatch<Q7Row> {
    let by_batch = bids_by_batch(slices);
    let mut out = PerBatch::new();
    for k in (10..=batches).step_by(10) {
        let in_window: Vec<&Bid> = by_batch[window_range(k, 10, by_batch.len())]
            .iter()
            .flatten()
            .copied()
            .collect();
        let Some(max) = in_window.iter().map(|b| b.price).max() else {
            continue;
        };
        for b in in_window.into_iter().filter(|b| b.price == max) {
            let row = Q7Row {
                auction: b.auction,
                price: b.price,
                bidder: b.bidder,
                date_time: b.date_time,
            };
            put(&mut out, k, row);
        }
    }
    out
}

/// q8: at every batch `k` that is a multiple of 10, the persons who joined in batches
/// `k-9..=k` and sold an auction created in those batches.
pub fn q8(slices: &[Vec<Event>], batches: usize) -> PerBatch<Q8Row> {
    let mut out = PerBatch::new();
    for k in (10..=batches).step_by(10) {
        let window = &slices[window_range(k, 10, slices.len())];
        let mut sellers = std::collections::HashSet::new();
        for e in window.iter().flatten() {
            if let Event::Auction(a) = e {
                sellers.insert(a.seller);
            }
        }
        for e in window.iter().flatten() {
            if let Event::Person(p) = e {
                if sellers.contains(&p.id) {
                    let row = Q8Row {
                        id: p.id,
                        name: p.name.clone(),
                    };
                    put(&mut out, k, row);
                }
            }
        }
    }
    out
}
