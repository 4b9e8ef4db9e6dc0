//! Actor sinks: each batch's records delivered to actors, in batch order, through their
//! bounded mailboxes (a slow consumer slows the pipeline; no queue grows).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use actix::{Arbiter, Message, Recipient};
use parking_lot::Mutex;
use rivulet_framework::data::{Data, Key};
use rivulet_framework::dstream::DStream;
use rivulet_framework::time::Time;
use rivulet_framework::{Error, OpInfo};

/// One batch's records for an actor: `records` of the batch at `time`, in partition order
/// (for a keyed sink: the batch's records of one key, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T> {
    /// The batch time.
    pub time: Time,
    /// The records.
    pub records: Vec<T>,
}

impl<T: Send + 'static> Message for Batch<T> {
    type Result = ();
}

/// Delivers each batch to `recipient`, waiting for its mailbox; fails the output for the
/// batch, naming `what`, when the actor is gone.
fn deliver<T: Send + 'static>(
    recipient: &Recipient<Batch<T>>,
    batch: Batch<T>,
    op: OpInfo,
    what: &str,
) -> Result<(), Error> {
    let time = batch.time;
    futures::executor::block_on(recipient.send(batch)).map_err(|e| Error::Output {
        batch_time: time,
        operator: op.to_string(),
        message: format!("sink actor {what} cannot take the batch: {e}"),
    })
}

/// Output operations that send each batch to actors (`use rivulet::prelude::*` brings them).
pub trait ActorOutputs<T: Send + 'static> {
    /// Sends each batch's records, with the batch time, as one [`Batch`] message to
    /// `recipient`, in batch order, awaiting its bounded mailbox: a slow consumer slows the
    /// pipeline rather than growing a queue. **Shapes:** per batch, one message of all its
    /// records in partition order (empty batches too).
    ///
    /// An actor that stopped fails this output for the batch with an error naming it
    /// (reported to listeners and `await_termination`); later batches still run.
    fn send_to(&self, recipient: Recipient<Batch<T>>);
}

impl<T: Data> ActorOutputs<T> for DStream<T> {
    #[track_caller]
    fn send_to(&self, recipient: Recipient<Batch<T>>) {
        let op = OpInfo::caller("send_to");
        self.foreach_rdd_op(op, move |rdd, time| {
            let records = rdd.collect()?;
            deliver(&recipient, Batch { time, records }, op, "")?;
            Ok(())
        });
    }
}

/// Output operations that route each key's records to the actor owning the key.
pub trait KeyedActorOutputs<K: Send + 'static, V: Send + 'static> {
    /// Routes each record of a batch to the actor that owns its key, e.g. a per-user session
    /// actor: the batch's records of one key go as one [`Batch`] message, keys in the order
    /// they first appear in the batch, records in partition order; batches in order. The
    /// actor of a key is made on first use by `make(key)` (e.g. `KeyActor::new().start()`),
    /// run on the arbiter that called `send_by_key`, and kept; one that stopped fails the
    /// output for the batch, naming the key, and is made again for the next batch. Sends
    /// await each actor's bounded mailbox (backpressure).
    ///
    /// # Panics
    /// Outside an actix `System` (there is no arbiter to make the actors on).
    fn send_by_key(&self, make: impl Fn(&K) -> Recipient<Batch<(K, V)>> + Send + Sync + 'static);
}

impl<K: Key + std::fmt::Debug, V: Data> KeyedActorOutputs<K, V> for DStream<(K, V)> {
    #[track_caller]
    fn send_by_key(&self, make: impl Fn(&K) -> Recipient<Batch<(K, V)>> + Send + Sync + 'static) {
        let op = OpInfo::caller("send_by_key");
        let actors: Arc<Mutex<HashMap<K, Recipient<Batch<(K, V)>>>>> = Arc::default();
        // Batches are delivered from a job thread; actors are made where actors live.
        let arbiter = Arbiter::current();
        let make = Arc::new(make);
        let make_on_arbiter = move |key: &K| -> Result<Recipient<Batch<(K, V)>>, Error> {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let (make, key) = (make.clone(), key.clone());
            let sent = arbiter.spawn_fn(move || {
                let _ = tx.send(make(&key));
            });
            let made = if sent { rx.recv().ok() } else { None };
            made.ok_or_else(|| {
                Error::NotRunning(format!(
                    "{op}: the arbiter that makes sink actors has stopped"
                ))
            })
        };
        self.foreach_rdd_op(op, move |rdd, time| {
            let mut first_failure = None;
            for (key, records) in group_in_order(rdd.collect()?) {
                let known = actors.lock().get(&key).cloned();
                let recipient = match known {
                    Some(r) => r,
                    None => {
                        let r = make_on_arbiter(&key)?;
                        actors.lock().insert(key.clone(), r.clone());
                        r
                    }
                };
                let what = format!("for key {key:?}");
                if let Err(e) = deliver(&recipient, Batch { time, records }, op, &what) {
                    actors.lock().remove(&key);
                    first_failure.get_or_insert(e);
                }
            }
            first_failure.map_or(Ok(()), |e| Err(e.into()))
        });
    }
}

/// The records grouped by key: keys in order of first appearance, records in order.
fn group_in_order<K: Eq + Hash + Clone, V>(records: Vec<(K, V)>) -> Vec<(K, Vec<(K, V)>)> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<(K, Vec<(K, V)>)> = Vec::new();
    for (k, v) in records {
        let i = *index.entry(k.clone()).or_insert_with(|| {
            groups.push((k.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((k, v));
    }
    groups
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_keep_first_appearance_and_record_order() {
        let g = super::group_in_order(vec![("b", 1), ("a", 2), ("b", 3)]);
        assert_eq!(
            g,
            vec![("b", vec![("b", 1), ("b", 3)]), ("a", vec![("a", 2)])]
        );
    }
}
