//! Input that one receiver cannot take in: several receivers unioned into one stream
//! (`receiver_streams`), and receiver buffers whose bound grows with the measured
//! processing rate instead of capping throughput at a fixed record count.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rivulet::prelude::*;

/// Stores `records` in chunks of `chunk`, then idles.
struct Part {
    name: String,
    records: Vec<u64>,
    chunk: usize,
}

impl Receiver for Part {
    type Item = u64;
    fn name(&self) -> String {
        self.name.clone()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<u64>) -> Result<Flow, ReceiverError> {
        if self.records.is_empty() {
            std::future::pending::<()>().await;
        }
        let rest = self.records.split_off(self.chunk.min(self.records.len()));
        let chunk = std::mem::replace(&mut self.records, rest);
        sink.store_many(chunk)
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        Ok(Flow::Continue)
    }
}

/// Collects every record of every batch and the record count of each batch.
fn collect(stream: &DStream<u64>) -> Arc<Mutex<Vec<Vec<u64>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream.foreach_batch(move |_, records: Vec<u64>| sink.lock().unwrap().push(records));
    seen
}

fn total(seen: &Mutex<Vec<Vec<u64>>>) -> usize {
    seen.lock().unwrap().iter().map(Vec::len).sum()
}

#[actix_rt::test]
async fn several_receivers_feed_one_stream_each_record_exactly_once() {
    within(async {
        let ssc = context(2, 2);
        let events = Events::attach(&ssc);
        let parts = (0..4u64).map(|p| Part {
            name: format!("part {p}"),
            records: (p * 1_000..p * 1_000 + 700).collect(),
            chunk: 64,
        });
        let stream = ssc.receiver_streams(parts).unwrap();
        let seen = collect(&stream);
        ssc.start().await.unwrap();
        advance_until(&ssc, || total(&seen) >= 2_800).await;
        ssc.stop(StopMode::Graceful).await.unwrap();

        let all: Vec<u64> = seen.lock().unwrap().concat();
        let expected: Vec<u64> = (0..4u64).flat_map(|p| p * 1_000..p * 1_000 + 700).collect();
        assert_eq!(sorted(all), expected, "every record of every part, once");
        let streams: HashSet<_> = events.receiver_stopped().iter().map(|r| r.stream).collect();
        assert_eq!(streams.len(), 4, "one receiver per part");
        assert!(matches!(
            ssc.receiver_streams(Vec::<Part>::new()),
            Err(Error::Graph(GraphError::NoStreams(_)))
        ));
    })
    .await;
}

#[actix_rt::test]
async fn the_buffer_bound_grows_with_the_measured_rate_past_the_configured_floor() {
    within(async {
        // A floor of 100 records and a buffer time of 10 s: once a batch has measured the
        // processing rate (well over 100 records/s for this pipeline), the bound is far
        // above the floor. With a fixed bound of 100, no batch could hold more than 100.
        let ssc = StreamingContext::new(
            config(2, 2)
                .receiver_buffer_records(100)
                .receiver_buffer_time(Duration::from_secs(10)),
        )
        .unwrap();
        let stream = ssc.receiver_stream(Part {
            name: "fast".into(),
            records: (0..5_000).collect(),
            chunk: 5_000,
        });
        let seen = collect(&stream.map(|x| x * 2));
        ssc.start().await.unwrap();
        advance_until(&ssc, || total(&seen) >= 5_000).await;
        ssc.stop(StopMode::Graceful).await.unwrap();

        let batches = seen.lock().unwrap().clone();
        let largest = batches.iter().map(Vec::len).max().unwrap_or(0);
        assert!(
            largest > 100,
            "a batch after the first measurement holds more than the floor: {:?}",
            batches.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let first_with_records = batches.iter().find(|b| !b.is_empty()).unwrap();
        assert!(
            first_with_records.len() <= 100,
            "before any measurement the floor bounds the buffer: {}",
            first_with_records.len()
        );
        let all: Vec<u64> = batches.concat();
        assert_eq!(sorted(all), (0..5_000).map(|x| x * 2).collect::<Vec<_>>());
    })
    .await;
}
