//! Property: for random batches, a random checkpoint interval and a random kill point, a run
//! stopped at once after `k` batches and restarted from its checkpoint directory gives the
//! same outputs, batch for batch, as a run that was never stopped: for
//! `update_state_by_key`, `map_with_state` and an inverse window (all checkpointed, so the
//! restart recomputes the batches after the newest data checkpoint from their input).

mod common;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, within, BATCH_MS};
use proptest::prelude::*;
use rivulet::prelude::*;

type Input = Vec<Vec<(String, i64)>>;
type Timed = Vec<(i64, Vec<(String, i64)>)>;

fn input() -> impl Strategy<Value = Input> {
    let record = (0u8..4, 1i64..=5).prop_map(|(k, v)| (format!("k{k}"), v));
    prop::collection::vec(prop::collection::vec(record, 0..=6), 2..=10)
}

fn block<F: Future>(f: F) -> F::Output {
    actix::System::new().block_on(within(f))
}

type Collectors = Arc<Mutex<Vec<BatchCollector<(String, i64)>>>>;

/// The three stateful outputs, each checkpointed every `every` batches.
fn build(ssc: &StreamingContext, input: &Input, every: u64, out: &Collectors) -> Result<()> {
    let interval = Duration::from_millis(every * BATCH_MS as u64);
    let pairs = ssc.queue_stream(input.clone());
    let sums = pairs
        .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<i64>())
        })
        .checkpoint(interval);
    let counts = pairs.map_with_state(StateSpec::function(
        |k: &String, v: Option<i64>, s: &mut State<i64>| {
            let n = s.get().copied().unwrap_or(0) + v.unwrap_or(0);
            s.update(n);
            (k.clone(), n)
        },
    ));
    counts.checkpoint(interval);
    let window = pairs
        .reduce_by_key_and_window_inv(
            |a, b| a + b,
            |a, b| a - b,
            Duration::from_millis(3 * BATCH_MS as u64),
            Duration::from_millis(BATCH_MS as u64),
        )?
        .checkpoint(interval);
    let mut out = out.lock().unwrap();
    out.push(sums.collect_batches());
    out.push(counts.state_snapshots().collect_batches());
    out.push(window.collect_batches());
    Ok(())
}

/// Runs batches `batches` times on `dir` (restarting from it if it holds a checkpoint);
/// returns each output's timed batches, sorted within a batch.
fn run(dir: &Path, input: &Input, every: u64, batches: u32) -> (Option<i64>, Vec<Timed>) {
    block(async {
        let out: Collectors = Arc::default();
        let ssc = StreamingContext::get_or_create(dir, config(2, 2), |ssc| {
            build(ssc, input, every, &out)
        })
        .expect("context");
        let restored = ssc.restored_batch().map(|t| t.as_ms());
        ssc.start().await.unwrap();
        ssc.advance(batches).await.unwrap();
        ssc.stop(StopMode::Now).await.unwrap();
        let out = out.lock().unwrap();
        let outputs = out
            .iter()
            .map(|c| {
                c.timed_batches()
                    .into_iter()
                    .map(|(t, mut b)| {
                        b.sort();
                        (t.as_ms(), b)
                    })
                    .collect()
            })
            .collect();
        (restored, outputs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn a_restart_from_the_checkpoint_equals_an_uninterrupted_run(
        input in input(),
        every in 1u64..=4,
        kill in 1u32..=9,
    ) {
        let n = input.len() as u32 + 3;
        let kill = kill.min(n - 1);
        let root = tempfile::tempdir().unwrap();
        let (_, whole) = run(&root.path().join("whole"), &input, every, n);
        let dir = root.path().join("killed");
        let (fresh, before) = run(&dir, &input, every, kill);
        let (restored, after) = run(&dir, &input, every, n - kill);
        prop_assert_eq!(fresh, None);
        prop_assert_eq!(restored, Some(i64::from(kill) * BATCH_MS), "the restart read the checkpoint");
        for (i, name) in ["update_state_by_key", "map_with_state", "inverse window"].iter().enumerate() {
            let joined: Timed = before[i].iter().chain(&after[i]).cloned().collect();
            prop_assert_eq!(&joined, &whole[i], "{} (checkpoint every {} batches, killed after {})", name, every, kill);
        }
    }
}
