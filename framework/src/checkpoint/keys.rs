//! The keys of a checkpoint store, typed: every key is built and parsed here, nowhere else.
//!
//! Keys are text with fixed-width numbers, so they sort by time and sequence number and read
//! plainly in error messages:
//!
//! | tree    | key                                    | value                              |
//! |---------|----------------------------------------|------------------------------------|
//! | `meta`  | `meta/<batch ms:020>`                  | [`MetadataCheckpoint`](super::MetadataCheckpoint) |
//! | `state` | `<stream:010>/<time ms:020>/<part:010>`| one partition of a data checkpoint |
//! | `wal`   | `block/<stream:010>/<seq:020>`         | a received block ([`LoggedBlock`](super::LoggedBlock)) |
//! | `wal`   | `alloc/<batch ms:020>`                 | the blocks allocated to a batch    |
//! | `wal`   | `cut/<batch ms:020>`                   | the polled inputs' cut ([`InputCut`](super::InputCut)) |

use std::fmt;

use crate::block::StreamId;

use super::Tree;

/// A key of a checkpoint store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// The metadata checkpoint of a completed batch (tree `meta`).
    Meta {
        /// The batch time (ms).
        batch_ms: i64,
    },
    /// One partition of a data checkpoint (tree `state`).
    Data {
        /// The checkpointed DStream.
        stream: u32,
        /// The checkpointed RDD's batch time (ms).
        time_ms: i64,
        /// The partition.
        partition: u32,
    },
    /// A received block in the write-ahead log (tree `wal`).
    Block {
        /// The input stream.
        stream: StreamId,
        /// The block's sequence number.
        seq: u64,
    },
    /// The blocks allocated to a batch, in the write-ahead log (tree `wal`).
    Allocation {
        /// The batch time (ms).
        batch_ms: i64,
    },
    /// What the polled inputs chose for the batches up to one about to run, before its
    /// outputs run (tree `wal`, see [`InputCut`](super::InputCut)).
    InputCut {
        /// The batch time (ms).
        batch_ms: i64,
    },
}

const META: &str = "meta/";
const BLOCK: &str = "block/";
const ALLOC: &str = "alloc/";
const CUT: &str = "cut/";

impl Key {
    /// The tree the key lives in.
    pub fn tree(&self) -> Tree {
        match self {
            Key::Meta { .. } => Tree::Meta,
            Key::Data { .. } => Tree::State,
            Key::Block { .. } | Key::Allocation { .. } | Key::InputCut { .. } => Tree::Wal,
        }
    }

    /// The key's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Key::Meta { batch_ms } => format!("{META}{batch_ms:020}"),
            Key::Data {
                stream,
                time_ms,
                partition,
            } => format!("{stream:010}/{time_ms:020}/{partition:010}"),
            Key::Block { stream, seq } => format!("{BLOCK}{stream:010}/{seq:020}"),
            Key::Allocation { batch_ms } => format!("{ALLOC}{batch_ms:020}"),
            Key::InputCut { batch_ms } => format!("{CUT}{batch_ms:020}"),
        }
        .into_bytes()
    }

    /// Parses a key of `tree`; `None` for bytes no key of that tree encodes to.
    pub fn parse(tree: Tree, bytes: &[u8]) -> Option<Key> {
        let text = std::str::from_utf8(bytes).ok()?;
        match tree {
            Tree::Meta => Some(Key::Meta {
                batch_ms: text.strip_prefix(META)?.parse().ok()?,
            }),
            Tree::State => {
                let mut parts = text.split('/');
                let key = Key::Data {
                    stream: parts.next()?.parse().ok()?,
                    time_ms: parts.next()?.parse().ok()?,
                    partition: parts.next()?.parse().ok()?,
                };
                parts.next().is_none().then_some(key)
            }
            Tree::Wal => {
                if let Some(rest) = text.strip_prefix(BLOCK) {
                    let (stream, seq) = rest.split_once('/')?;
                    Some(Key::Block {
                        stream: stream.parse().ok()?,
                        seq: seq.parse().ok()?,
                    })
                } else if let Some(batch_ms) = text.strip_prefix(CUT) {
                    Some(Key::InputCut {
                        batch_ms: batch_ms.parse().ok()?,
                    })
                } else {
                    Some(Key::Allocation {
                        batch_ms: text.strip_prefix(ALLOC)?.parse().ok()?,
                    })
                }
            }
        }
    }

    /// The prefix every metadata checkpoint key starts with.
    pub fn meta_prefix() -> &'static [u8] {
        META.as_bytes()
    }

    /// The prefix of every partition of one data checkpoint.
    pub fn data_prefix(stream: u32, time_ms: i64) -> Vec<u8> {
        format!("{stream:010}/{time_ms:020}/").into_bytes()
    }

    /// The prefix of every block in the write-ahead log.
    pub fn block_prefix() -> &'static [u8] {
        BLOCK.as_bytes()
    }

    /// The prefix of every allocation record in the write-ahead log.
    pub fn allocation_prefix() -> &'static [u8] {
        ALLOC.as_bytes()
    }

    /// The prefix of every input cut record.
    pub fn input_cut_prefix() -> &'static [u8] {
        CUT.as_bytes()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.tree().name(),
            String::from_utf8_lossy(&self.encode())
        )
    }
}

/// A key as text, for error messages: `<tree>/<key>` (bytes that are not text are shown
/// lossily).
pub fn key_text(tree: Tree, key: &[u8]) -> String {
    format!("{}/{}", tree.name(), String::from_utf8_lossy(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_time_and_sequence() {
        let keys = [
            Key::Meta { batch_ms: 1500 },
            Key::Data {
                stream: 3,
                time_ms: 2000,
                partition: 7,
            },
            Key::Block { stream: 1, seq: 42 },
            Key::Allocation { batch_ms: 900 },
            Key::InputCut { batch_ms: 1200 },
        ];
        for key in keys {
            assert_eq!(Key::parse(key.tree(), &key.encode()), Some(key), "{key}");
        }
        assert_eq!(
            Key::Data {
                stream: 3,
                time_ms: 2000,
                partition: 7
            }
            .to_string(),
            "state/0000000003/00000000000000002000/0000000007"
        );
        let enc = |k: Key| k.encode();
        assert!(enc(Key::Meta { batch_ms: 999 }) < enc(Key::Meta { batch_ms: 1000 }));
        assert!(enc(Key::Block { stream: 1, seq: 9 }) < enc(Key::Block { stream: 1, seq: 10 }));
        assert!(Key::data_prefix(3, 2000)
            .iter()
            .zip(enc(keys[1]).iter())
            .all(|(a, b)| a == b));
        assert_eq!(Key::parse(Tree::State, b"3/x/1"), None);
        assert_eq!(Key::parse(Tree::Wal, b"other/1"), None);
        assert_eq!(Key::parse(Tree::Wal, b"cut/x"), None);
        assert_eq!(
            Key::InputCut { batch_ms: 1200 }.to_string(),
            "wal/cut/00000000000000001200"
        );
        assert_eq!(Key::parse(Tree::Meta, b"meta/12/3"), None);
    }
}
