//! Shuffle results do not depend on the number of executors or partitions: the same program
//! run with 1, 2 and 4 executors and several default parallelisms gives, batch by batch, the
//! multisets computed independently with plain Rust maps.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use proptest::prelude::*;
use rivulet::prelude::*;

const VOCABULARY: [&str; 12] = [
    "river", "stream", "batch", "actor", "spark", "rust", "lineage", "block", "shuffle", "key",
    "value", "time",
];

/// Batches of words, with an empty batch in the middle.
fn generated_batches(seed: u64) -> Vec<Vec<String>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let sizes = [300usize, 0, 57, 1, 211];
    sizes
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| VOCABULARY[rng.u64(..VOCABULARY.len() as u64) as usize].to_string())
                .collect()
        })
        .collect()
}

/// What the program produced, batch by batch, each shuffle output sorted.
#[derive(Debug, PartialEq)]
struct Outputs {
    counts: Vec<Vec<(String, u64)>>,
    /// Each word with the positions (in its batch) where it occurs.
    positions: Vec<Vec<(String, Vec<usize>)>>,
    by_value: Vec<Vec<(String, u64)>>,
    repartitioned: Vec<Vec<String>>,
    averages: Vec<Vec<(String, (usize, usize))>>,
    totals: Vec<Vec<u64>>,
}

async fn run_program(executors: usize, parallelism: usize, input: Vec<Vec<String>>) -> Outputs {
    let n = input.len() as u32 + 1;
    let ssc = context(executors, parallelism);
    let words = ssc.queue_stream(input);
    let counts = words
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .collect_batches();
    // One partition in batch order (shuffle inputs are read in map partition order), so
    // the index within the partition is the position in the batch.
    let positions = words
        .transform(|rdd, _| rdd.repartition(1))
        .map_partitions(|ws| ws.enumerate().map(|(i, w)| (w, i)).collect::<Vec<_>>())
        .group_by_key()
        .collect_batches();
    let by_value = words.count_by_value().collect_batches();
    let repartitioned = words.repartition(3).collect_batches();
    let averages = words
        .map(|w| {
            let len = w.len();
            (w, len)
        })
        .combine_by_key(
            |l| (l, 1usize),
            |(s, n), l| (s + l, n + 1),
            |(s1, n1), (s2, n2)| (s1 + s2, n1 + n2),
            5,
        )
        .collect_batches();
    let totals = words.count().collect_batches();
    ssc.start().await.unwrap();
    ssc.advance(n).await.unwrap();
    ssc.stop(StopMode::Graceful).await.unwrap();
    Outputs {
        counts: sorted_batches(counts.batches()),
        positions: sorted_batches(positions.batches()),
        by_value: sorted_batches(by_value.batches()),
        repartitioned: sorted_batches(repartitioned.batches()),
        averages: sorted_batches(averages.batches()),
        totals: totals.batches(),
    }
}

/// The same outputs computed with plain maps.
fn expected(input: &[Vec<String>]) -> Outputs {
    let mut batches: Vec<Vec<String>> = input.to_vec();
    batches.push(Vec::new()); // the queue is used up: one more, empty batch
    let mut out = Outputs {
        counts: vec![],
        positions: vec![],
        by_value: vec![],
        repartitioned: vec![],
        averages: vec![],
        totals: vec![],
    };
    for batch in &batches {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut positions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut lengths: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (i, w) in batch.iter().enumerate() {
            *counts.entry(w.clone()).or_default() += 1;
            positions.entry(w.clone()).or_default().push(i);
            let e = lengths.entry(w.clone()).or_default();
            e.0 += w.len();
            e.1 += 1;
        }
        out.counts.push(counts.clone().into_iter().collect());
        out.by_value.push(counts.into_iter().collect());
        out.positions.push(positions.into_iter().collect());
        out.averages.push(lengths.into_iter().collect());
        out.repartitioned.push(sorted(batch.clone()));
        out.totals.push(vec![batch.len() as u64]);
    }
    out
}

#[actix::test]
async fn results_do_not_depend_on_executors_or_partitions() {
    within(async {
        let input = generated_batches(0x5eed);
        let want = expected(&input);
        for (executors, parallelism) in [(1, 1), (2, 2), (4, 4), (1, 5), (2, 3), (4, 7)] {
            let got = run_program(executors, parallelism, input.clone()).await;
            assert_eq!(
                got, want,
                "executors {executors}, default parallelism {parallelism}"
            );
        }
    })
    .await
}

/// Runs `reduce_by_key` and `group_by_key` over `batches` and checks them against maps.
fn check_pairs(batches: Vec<Vec<(u8, u32)>>, executors: usize, parallelism: usize) {
    let n = batches.len() as u32 + 1;
    let (sums, groups) = actix::System::new().block_on(async {
        within(async {
            let ssc = context(executors, parallelism);
            let pairs = ssc.queue_stream(batches.clone());
            let sums = pairs
                .map_values(u64::from)
                .reduce_by_key(|a, b| a + b)
                .collect_batches();
            let groups = pairs.group_by_key_with_partitions(3).collect_batches();
            ssc.start().await.unwrap();
            ssc.advance(n).await.unwrap();
            ssc.stop(StopMode::Graceful).await.unwrap();
            (sums.batches(), groups.batches())
        })
        .await
    });
    let mut all = batches;
    all.push(Vec::new());
    assert_eq!(sums.len(), all.len());
    assert_eq!(groups.len(), all.len());
    for (i, batch) in all.iter().enumerate() {
        let mut want_sums: HashMap<u8, u64> = HashMap::new();
        let mut want_groups: HashMap<u8, Vec<u32>> = HashMap::new();
        for &(k, v) in batch {
            *want_sums.entry(k).or_default() += u64::from(v);
            want_groups.entry(k).or_default().push(v);
        }
        assert_eq!(
            sorted(sums[i].clone()),
            sorted(want_sums.into_iter().collect()),
            "sums of batch {i}"
        );
        // Values in input order: map partitions are contiguous slices of the batch.
        assert_eq!(
            sorted(groups[i].clone()),
            sorted(want_groups.into_iter().collect()),
            "groups of batch {i}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn pair_shuffles_match_a_map_model(
        batches in prop::collection::vec(
            prop::collection::vec((0u8..12, 0u32..1000), 0..60),
            0..4,
        ),
        executors in 1usize..=4,
        parallelism in 1usize..=6,
    ) {
        check_pairs(batches, executors, parallelism);
    }
}
