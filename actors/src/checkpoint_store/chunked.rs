//! Values of any size kept in sled as pieces of at most [`CHUNK`] bytes.
//!
//! sled 0.34 writes a node whose serialized form exceeds a quarter of a log segment (about
//! 128 KiB) to a file of its own, and leaks such files (spacejam/sled#786): a data
//! checkpoint of a few MB grew a directory by hundreds of MB. A leaf holds at most 17
//! entries before it splits, so entries of at most 4 KiB keep every node far below that
//! threshold.
//!
//! A logical tree is two sled trees:
//!
//! ```text
//! <name>          key -> 0x00 ++ value                      (values up to CHUNK bytes)
//!                 key -> 0x01 ++ n: u32 BE ++ len: u64 BE    (longer values: n pieces)
//! <name>.chunks   key.len(): u32 BE ++ key ++ i: u32 BE -> piece i
//! ```
//!
//! A long value is written pieces first, then its head; removed head first, then pieces. A
//! kill in between leaves pieces without a head, which [`ChunkedTree::sweep`] removes, never
//! a head without its pieces (a torn value is reported as such, and checkpoint records carry
//! their own checksum).

use sled::IVec;

/// The largest piece, in bytes.
pub(crate) const CHUNK: usize = 4096;

const INLINE: u8 = 0;
const SPLIT: u8 = 1;

/// What reading a value found wrong.
#[derive(Debug)]
pub(crate) enum ReadError {
    Sled(sled::Error),
    /// The value's head or pieces do not fit together.
    Torn(String),
}

impl From<sled::Error> for ReadError {
    fn from(e: sled::Error) -> Self {
        ReadError::Sled(e)
    }
}

/// One logical tree of a checkpoint store.
#[derive(Clone, Debug)]
pub(crate) struct ChunkedTree {
    heads: sled::Tree,
    chunks: sled::Tree,
}

/// A parsed head: the value inline, or how many pieces and bytes it has.
enum Head {
    Inline(IVec),
    Split { pieces: u32, len: u64 },
}

fn parse_head(head: &IVec) -> Result<Head, String> {
    match head.first() {
        Some(&INLINE) => Ok(Head::Inline(head.subslice(1, head.len() - 1))),
        Some(&SPLIT) if head.len() == 13 => {
            let pieces = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
            let mut len = [0u8; 8];
            len.copy_from_slice(&head[5..13]);
            Ok(Head::Split {
                pieces,
                len: u64::from_be_bytes(len),
            })
        }
        _ => Err(format!("unknown value head of {} bytes", head.len())),
    }
}

/// The bytes of a value as its head says (for the live-bytes count).
fn head_len(head: &IVec) -> u64 {
    match parse_head(head) {
        Ok(Head::Inline(v)) => v.len() as u64,
        Ok(Head::Split { len, .. }) => len,
        Err(_) => 0,
    }
}

fn piece_key(key: &[u8], i: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// The value key a piece key belongs to, and the piece's index.
fn split_piece_key(k: &[u8]) -> Option<(&[u8], u32)> {
    let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
    let key = k.get(4..4 + len)?;
    let i = u32::from_be_bytes(k.get(4 + len..)?.try_into().ok()?);
    Some((key, i))
}

impl ChunkedTree {
    /// The logical tree `name` of `db`.
    pub(crate) fn open(db: &sled::Db, name: &str) -> sled::Result<ChunkedTree> {
        Ok(ChunkedTree {
            heads: db.open_tree(name)?,
            chunks: db.open_tree(format!("{name}.chunks"))?,
        })
    }

    /// Stores `value` under `key`; returns the change in live bytes (keys and values).
    pub(crate) fn put(&self, key: &[u8], value: &[u8]) -> sled::Result<i64> {
        let old = self.remove_pieces_of_old(key)?;
        let head = if value.len() <= CHUNK {
            let mut head = Vec::with_capacity(1 + value.len());
            head.push(INLINE);
            head.extend_from_slice(value);
            head
        } else {
            let mut pieces = 0u32;
            for piece in value.chunks(CHUNK) {
                self.chunks.insert(piece_key(key, pieces), piece)?;
                pieces += 1;
            }
            let mut head = vec![SPLIT];
            head.extend_from_slice(&pieces.to_be_bytes());
            head.extend_from_slice(&(value.len() as u64).to_be_bytes());
            head
        };
        self.heads.insert(key, head)?;
        Ok((key.len() + value.len()) as i64 - old)
    }

    /// Removes the head and pieces of a value about to be replaced (head first); returns its
    /// live bytes (0 if there was none).
    fn remove_pieces_of_old(&self, key: &[u8]) -> sled::Result<i64> {
        let Some(head) = self.heads.get(key)? else {
            return Ok(0);
        };
        if let Ok(Head::Split { pieces, .. }) = parse_head(&head) {
            self.heads.remove(key)?;
            for i in 0..pieces {
                self.chunks.remove(piece_key(key, i))?;
            }
        }
        Ok((key.len() as u64 + head_len(&head)) as i64)
    }

    /// The value under `key`, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(head) = self.heads.get(key)? else {
            return Ok(None);
        };
        match parse_head(&head).map_err(ReadError::Torn)? {
            Head::Inline(v) => Ok(Some(v.to_vec())),
            Head::Split { pieces, len } => {
                let mut value = Vec::with_capacity(len as usize);
                for i in 0..pieces {
                    let piece = self.chunks.get(piece_key(key, i))?.ok_or_else(|| {
                        ReadError::Torn(format!("piece {i} of {pieces} is missing"))
                    })?;
                    value.extend_from_slice(&piece);
                }
                if value.len() as u64 != len {
                    return Err(ReadError::Torn(format!(
                        "its pieces hold {} bytes, its head says {len}",
                        value.len()
                    )));
                }
                Ok(Some(value))
            }
        }
    }

    /// Removes `key` (head first, then its pieces); returns the change in live bytes.
    pub(crate) fn remove(&self, key: &[u8]) -> sled::Result<i64> {
        let Some(head) = self.heads.remove(key)? else {
            return Ok(0);
        };
        if let Ok(Head::Split { pieces, .. }) = parse_head(&head) {
            for i in 0..pieces {
                self.chunks.remove(piece_key(key, i))?;
            }
        }
        Ok(-((key.len() as u64 + head_len(&head)) as i64))
    }

    /// The keys starting with `prefix`, in ascending order.
    pub(crate) fn keys(&self, prefix: &[u8]) -> sled::Result<Vec<Vec<u8>>> {
        self.heads
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map(|k| k.to_vec()))
            .collect()
    }

    /// The live bytes (keys and values) of the tree.
    pub(crate) fn live_bytes(&self) -> sled::Result<u64> {
        let mut total = 0;
        for entry in self.heads.iter() {
            let (k, head) = entry?;
            total += k.len() as u64 + head_len(&head);
        }
        Ok(total)
    }

    /// Removes pieces no head names (left by a kill between a long value's pieces and its
    /// head, or its head's removal and its pieces'); returns how many.
    pub(crate) fn sweep(&self) -> sled::Result<usize> {
        let mut removed = 0;
        let mut last: Option<(Vec<u8>, u32)> = None;
        for entry in self.chunks.iter().keys() {
            let k = entry?;
            let live = match split_piece_key(&k) {
                Some((key, i)) => {
                    let pieces = match &last {
                        Some((seen, n)) if seen.as_slice() == key => *n,
                        _ => {
                            let n = match self.heads.get(key)? {
                                Some(head) => match parse_head(&head) {
                                    Ok(Head::Split { pieces, .. }) => pieces,
                                    _ => 0,
                                },
                                None => 0,
                            };
                            last = Some((key.to_vec(), n));
                            n
                        }
                    };
                    i < pieces
                }
                None => false,
            };
            if !live {
                self.chunks.remove(&k)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Copies every value (heads and the pieces they name) into `to`.
    pub(crate) fn copy_to(&self, to: &ChunkedTree) -> sled::Result<()> {
        for entry in self.heads.iter() {
            let (key, head) = entry?;
            if let Ok(Head::Split { pieces, .. }) = parse_head(&head) {
                for i in 0..pieces {
                    let k = piece_key(&key, i);
                    if let Some(piece) = self.chunks.get(&k)? {
                        to.chunks.insert(k, piece)?;
                    }
                }
            }
            to.heads.insert(key, head)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (sled::Db, ChunkedTree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = ChunkedTree::open(&db, "state").unwrap();
        (db, t)
    }

    #[test]
    fn values_of_every_size_round_trip_in_pieces_no_larger_than_a_chunk() {
        let (_db, t) = tree();
        let mut live = 0i64;
        for (i, len) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 100_000]
            .into_iter()
            .enumerate()
        {
            let key = format!("k{i}").into_bytes();
            let value: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            live += t.put(&key, &value).unwrap();
            assert_eq!(t.get(&key).unwrap().unwrap(), value, "length {len}");
        }
        for entry in t.chunks.iter() {
            assert!(entry.unwrap().1.len() <= CHUNK);
        }
        for entry in t.heads.iter() {
            assert!(entry.unwrap().1.len() <= CHUNK + 1);
        }
        assert_eq!(live as u64, t.live_bytes().unwrap());
        // Replacing a long value with a short one drops its pieces.
        live += t.put(b"k6", b"short").unwrap();
        assert_eq!(t.get(b"k6").unwrap().unwrap(), b"short");
        assert_eq!(live as u64, t.live_bytes().unwrap());
        assert_eq!(t.chunks.len(), 2 + 3, "pieces of k4 (2) and k5 (3) only");
        live += t.remove(b"k5").unwrap();
        assert_eq!(t.chunks.len(), 2);
        assert_eq!(live as u64, t.live_bytes().unwrap());
        assert_eq!(t.keys(b"k").unwrap().len(), 6);
    }

    #[test]
    fn keys_that_prefix_each_other_keep_their_own_pieces() {
        let (_db, t) = tree();
        let (a, b) = (vec![1u8; CHUNK * 2], vec![2u8; CHUNK * 3]);
        t.put(b"a/1", &a).unwrap();
        t.put(b"a/10", &b).unwrap();
        t.remove(b"a/1").unwrap();
        assert_eq!(t.get(b"a/10").unwrap().unwrap(), b);
        assert_eq!(t.sweep().unwrap(), 0);
    }

    #[test]
    fn pieces_without_a_head_are_swept_and_a_missing_piece_is_torn() {
        let (_db, t) = tree();
        let value = vec![9u8; CHUNK * 3 + 5];
        t.put(b"whole", &value).unwrap();
        // A kill after the pieces were written, before the head.
        t.chunks
            .insert(piece_key(b"orphan", 0), &[1u8][..])
            .unwrap();
        t.chunks
            .insert(piece_key(b"orphan", 1), &[1u8][..])
            .unwrap();
        // A piece past the head's count (a longer value replaced, pieces not yet removed).
        t.chunks.insert(piece_key(b"whole", 9), &[1u8][..]).unwrap();
        assert_eq!(t.sweep().unwrap(), 3);
        assert_eq!(t.get(b"whole").unwrap().unwrap(), value);
        t.chunks.remove(piece_key(b"whole", 1)).unwrap();
        match t.get(b"whole") {
            Err(ReadError::Torn(reason)) => assert!(reason.contains("piece 1"), "{reason}"),
            other => panic!("expected a torn value, got {other:?}"),
        }
    }

    #[test]
    fn copies_hold_every_value() {
        let (db, t) = tree();
        t.put(b"x", &vec![3u8; CHUNK * 2 + 1]).unwrap();
        t.put(b"y", b"small").unwrap();
        t.chunks.insert(piece_key(b"gone", 0), &[1u8][..]).unwrap();
        let to = ChunkedTree::open(&db, "copy").unwrap();
        t.copy_to(&to).unwrap();
        assert_eq!(to.get(b"x").unwrap().unwrap(), vec![3u8; CHUNK * 2 + 1]);
        assert_eq!(to.get(b"y").unwrap().unwrap(), b"small");
        assert_eq!(to.chunks.len(), 3, "orphans are not copied");
    }
}
