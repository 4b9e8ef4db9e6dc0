//! The records of a checkpoint: what a metadata checkpoint holds, and how it names data
//! checkpoints and input state.

use serde::{Deserialize, Serialize};

use crate::rdd::RddId;

/// One DStream as the graph fingerprint records it: its id, operator and slide. Call sites
/// are left out so that a rebuilt program whose lines moved still restores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSignature {
    /// The DStream's id (creation order).
    pub id: u32,
    /// The operator's name, e.g. `map_with_state`.
    pub op: String,
    /// The slide duration in ms.
    pub slide_ms: u64,
}

/// A complete data checkpoint of one DStream: its RDD at `time_ms`, in `partitions`
/// partitions under [`Key::Data`](super::Key::Data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCheckpoint {
    /// The DStream.
    pub stream: u32,
    /// The batch time of the checkpointed RDD (ms).
    pub time_ms: i64,
    /// The checkpointed RDD's id (restored under the same id).
    pub rdd: RddId,
    /// How many partitions were written.
    pub partitions: u32,
    /// The partition count of the RDD's hash partitioner, if it had one (state is kept
    /// partitioned by key with [`stable_hash`](crate::partitioner::stable_hash)).
    pub partitioner: Option<usize>,
    /// How many keys the checkpointed state held, when the stream knows how to count them.
    #[serde(default)]
    pub keys: Option<u64>,
}

/// What an input DStream needs to resume: an opaque, versioned value it encodes itself
/// (e.g. the files a file stream has selected, per batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputState {
    /// The input DStream.
    pub stream: u32,
    /// Its state, a record the stream encoded (see [`decode`](super::decode)).
    pub state: Vec<u8>,
}

/// The metadata checkpoint written after every completed batch (Spark: `Checkpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataCheckpoint {
    /// The graph's fingerprint: every DStream, in id order.
    pub graph: Vec<StreamSignature>,
    /// The batch interval (ms).
    pub batch_interval_ms: u64,
    /// The graph's zero time (ms): batch times are `zero + k * interval`.
    pub zero_time_ms: i64,
    /// The last completed batch (ms); every batch up to it completed.
    pub batch_time_ms: i64,
    /// The oldest batch whose input a restart from this checkpoint may need (ms): the
    /// write-ahead log keeps the blocks of later batches.
    #[serde(default = "no_horizon")]
    pub input_horizon_ms: i64,
    /// The newest complete data checkpoint of each checkpointed stream.
    pub data: Vec<DataCheckpoint>,
    /// What each restorable input stream needs to resume.
    pub inputs: Vec<InputState>,
    /// Received blocks allocated to each batch (ms) that a restart may recompute or run:
    /// those after the oldest batch still needed (their data is in the write-ahead log).
    #[serde(default)]
    pub allocations: Vec<(i64, Vec<crate::block::BlockInfo>)>,
    /// Where each receiver's input stands: every block numbered below `next_seq` was
    /// allocated to a batch (Spark: the `ReceivedBlockTracker`'s allocated positions), and
    /// the source offset the newest of them carried.
    #[serde(default)]
    pub receivers: Vec<ReceiverPosition>,
}

/// Where one receiver's input stood at a metadata checkpoint (DESIGN's "receiver offsets /
/// WAL positions").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverPosition {
    /// The input stream.
    pub stream: crate::block::StreamId,
    /// Every block with a lower sequence number was allocated to a batch.
    pub next_seq: u64,
    /// The source offset the newest allocated block carried (see
    /// [`BlockSink::store_reliably_at`](crate::receiver::BlockSink::store_reliably_at)), if
    /// the receiver gives offsets.
    pub offset: Option<Vec<u8>>,
}

impl MetadataCheckpoint {
    /// How a program whose graph has fingerprint `graph` and batch interval `interval_ms`
    /// differs from the one that wrote this checkpoint: one line per difference (the batch
    /// interval, each DStream that differs), empty when it may restore it.
    pub fn differences(&self, graph: &[StreamSignature], interval_ms: u64) -> Vec<String> {
        let mut differences = Vec::new();
        if self.batch_interval_ms != interval_ms {
            differences.push(format!(
                "batch interval: checkpoint has {} ms, program has {interval_ms} ms",
                self.batch_interval_ms
            ));
        }
        let show = |s: Option<&StreamSignature>| {
            s.map_or("nothing".to_string(), |s| {
                format!("{} (slide {} ms)", s.op, s.slide_ms)
            })
        };
        for i in 0..graph.len().max(self.graph.len()) {
            let (theirs, mine) = (self.graph.get(i), graph.get(i));
            if theirs != mine {
                differences.push(format!(
                    "stream {i}: checkpoint has {}, program has {}",
                    show(theirs),
                    show(mine)
                ));
            }
        }
        differences
    }
}

/// A checkpoint without a recorded horizon may need every batch.
fn no_horizon() -> i64 {
    i64::MIN
}
