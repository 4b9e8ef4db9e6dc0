//! Which stages an executor process may run (`computable_remotely`): a map stage of a batch
//! whose lineage starts at that batch's received blocks, and nothing that reads earlier
//! batches (windows, state), queue data or RDDs built outside a batch. Checked on the RDDs
//! the output operations receive, stage by stage (each shuffle's map side).

use std::sync::{Arc, Mutex};

use crate::common::*;
use rivulet::framework::rdd::{computable_remotely, Dependency, RddBase};
use rivulet::prelude::*;

/// Stores `records` once, then idles.
struct Once(Vec<String>);

impl Receiver for Once {
    type Item = String;
    fn name(&self) -> String {
        "once".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        if self.0.is_empty() {
            std::future::pending::<()>().await;
        }
        sink.store_many(std::mem::take(&mut self.0))
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        Ok(Flow::Continue)
    }
}

/// For each shuffle reachable from `rdd` through narrow dependencies and shuffles, whether
/// its map side is computable remotely for batch `t`, outermost first.
fn map_sides(rdd: &dyn RddBase, t: Time, out: &mut Vec<bool>) {
    for dep in rdd.meta().dependencies() {
        match dep {
            Dependency::Narrow(parent) => map_sides(&**parent, t, out),
            Dependency::Shuffle(map) => {
                out.push(computable_remotely(&*map.parent(), t));
                map_sides(&*map.parent(), t, out);
            }
        }
    }
}

type Seen = Arc<Mutex<Vec<(Time, Vec<bool>)>>>;

fn watch<T: Data>(stream: &DStream<T>) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    stream.foreach_rdd(move |rdd, t| {
        let mut sides = Vec::new();
        map_sides(&*rdd.as_base(), t, &mut sides);
        sink.lock().unwrap().push((t, sides));
        Ok(())
    });
    seen
}

/// The map sides seen for the batch that first had `n` shuffles, as a list.
fn first_with(seen: &Seen, n: usize) -> Vec<bool> {
    seen.lock()
        .unwrap()
        .iter()
        .find(|(_, s)| s.len() == n)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| panic!("no batch with {n} shuffles: {:?}", seen.lock().unwrap()))
}

#[actix_rt::test]
async fn only_map_stages_over_a_batchs_own_received_blocks_may_leave_the_process() {
    within(async {
        let ssc = context(2, 2);
        let words = ssc
            .receiver_stream(Once(vec!["a b".into(), "b c".into()]))
            .flat_map(|l: String| l.split(' ').map(str::to_string).collect::<Vec<_>>())
            .map(|w: String| (w, 1u64));
        let counts = words.reduce_by_key(|a, b| a + b);
        let repartitioned = words.repartition(3).reduce_by_key(|a, b| a + b);
        let totals = counts.update_state_by_key(|new: Vec<u64>, old: Option<u64>| {
            Some(old.unwrap_or(0) + new.iter().sum::<u64>())
        });
        let windowed = counts
            .window(
                std::time::Duration::from_millis(2 * BATCH_MS as u64),
                std::time::Duration::from_millis(BATCH_MS as u64),
            )
            .expect("a valid window")
            .reduce_by_key(|a, b| a + b);
        let queued = ssc
            .queue_stream(vec![vec![("a".to_string(), 1u64)]])
            .reduce_by_key(|a, b| a + b);
        let seen = [
            watch(&counts),
            watch(&repartitioned),
            watch(&totals),
            watch(&windowed),
            watch(&queued),
        ];
        ssc.start().await.unwrap();
        ssc.advance(3).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        assert_eq!(
            first_with(&seen[0], 1),
            vec![true],
            "the word count's map side"
        );
        assert_eq!(
            first_with(&seen[1], 2),
            vec![true, true],
            "a map side reading another shuffle of the same batch"
        );
        assert_eq!(
            first_with(&seen[2], 2),
            vec![true, false],
            "the state's batch: its own counts' map side may leave; the previous batch's \
             (reached through the previous state) may not"
        );
        let windowed = seen[3].lock().unwrap().clone();
        let (_, last) = windowed.last().expect("a windowed batch");
        assert!(
            last.contains(&false),
            "a window's shuffle reads earlier batches: {last:?}"
        );
        assert_eq!(
            first_with(&seen[4], 1),
            vec![false],
            "queue data is the coordinator's"
        );
    })
    .await;
}

/// A fixed log of one partition; `anywhere` says whether executor processes may read it.
struct FixedLog {
    records: Vec<String>,
    anywhere: bool,
}

impl DirectSource for FixedLog {
    type Item = String;
    fn name(&self) -> String {
        format!("fixed log (read anywhere: {})", self.anywhere)
    }
    fn latest_offsets(&self) -> Result<std::collections::BTreeMap<SourcePartition, u64>> {
        Ok([(SourcePartition::new("log", 0), self.records.len() as u64)].into())
    }
    fn start_offset(&self, _partition: &SourcePartition, _latest: u64) -> Result<u64> {
        Ok(0)
    }
    fn read_anywhere(&self) -> bool {
        self.anywhere
    }
    fn read(&self, range: &OffsetRange) -> std::result::Result<PartitionIter<String>, ReadError> {
        let read = self.records[range.from as usize..range.until as usize].to_vec();
        Ok(Box::new(read.into_iter()))
    }
}

#[actix_rt::test]
async fn a_direct_streams_map_stage_may_leave_the_process_when_its_source_can_be_read_anywhere() {
    within(async {
        let ssc = context(2, 2);
        let seen = [true, false].map(|anywhere| {
            let log = FixedLog {
                records: vec!["a b".into(), "b c".into()],
                anywhere,
            };
            let counts = ssc
                .direct_stream(log, DirectOptions::default())
                .stream()
                .flat_map(|l: String| l.split(' ').map(str::to_string).collect::<Vec<_>>())
                .map(|w: String| (w, 1u64))
                .reduce_by_key(|a, b| a + b);
            watch(&counts)
        });
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        assert_eq!(
            first_with(&seen[0], 1),
            vec![true],
            "a source every process reaches (a broker)"
        );
        assert_eq!(
            first_with(&seen[1], 1),
            vec![false],
            "a source that did not say so stays with the coordinator"
        );
    })
    .await;
}
