//! The replicas of the blocks executor processes' receivers store (Spark's receiver storage
//! level `MEMORY_AND_DISK_SER_2`: each block on the executor that received it and on a
//! second one). With the receiver write-ahead log off, a block's replica goes to another
//! executor process: its bytes are relayed through the coordinator (processes connect to the
//! coordinator only), which keeps them until that process says it holds them
//! ([`ToExecutor::StoreReplica`], answered by [`ToCoordinator::ReplicaStored`]); only then
//! is the block confirmed to the process that stored it, whose receiver may acknowledge its
//! source. The coordinator keeps the replica itself when no other process runs, and with the
//! write-ahead log on (the log holds the block for good; the coordinator serves it from
//! memory).
//!
//! When the process holding replicas is lost, the replicas on their way there stay in the
//! coordinator (it still has their bytes) and are confirmed, and those it held are copied
//! again from the processes that stored the blocks, to another process or the coordinator.
//! When the process that stored a block is lost, the block is read from its replica.
//!
//! [`ToExecutor::StoreReplica`]: super::protocol::ToExecutor::StoreReplica
//! [`ToCoordinator::ReplicaStored`]: super::protocol::ToCoordinator::ReplicaStored

use std::sync::Arc;

use rivulet_framework::block::{BlockId, ExecutorId};
use tracing::{debug, warn};

use super::protocol::{Attached, ToExecutor};
use super::{BlockRequest, Cluster, State};

/// A block a process's receiver stored, as the coordinator tracks it.
#[derive(Debug)]
pub(super) struct ReceivedBlock {
    /// The slot whose process stored it (and holds it while that incarnation lives).
    pub(super) slot: usize,
    /// The incarnation of `slot` that stored it.
    pub(super) generation: u64,
    /// Where its replica is.
    pub(super) replica: Replica,
}

/// Where a received block's replica is.
#[derive(Debug)]
pub(super) enum Replica {
    /// In the coordinator: its bytes, as its stream's encoder wrote them.
    Here(Vec<u8>),
    /// On its way to incarnation `generation` of process `slot` (request `req`); its bytes
    /// stay here until that process holds them.
    Sending {
        slot: usize,
        generation: u64,
        req: u64,
        bytes: Vec<u8>,
    },
    /// Held by incarnation `generation` of process `slot`.
    Process { slot: usize, generation: u64 },
    /// Lost with the process that held it; being copied again from the block's process.
    Lost,
}

/// Where to read a received block from.
pub(super) enum ReceivedSource {
    /// Its bytes, kept here.
    Bytes(Vec<u8>),
    /// The process in this slot, which holds it.
    Process(usize),
    /// Nowhere: not a block a process stored, or lost with every copy.
    Nowhere,
}

impl Cluster {
    /// Keeps the replica `bytes` of block `id`, stored by incarnation `generation` of
    /// process `slot`: sent to another process when the write-ahead log is off (`wal`) and
    /// one runs, kept here otherwise. Returns whether it is on its way (the block is durable
    /// only once that process holds it).
    pub(super) fn keep_replica(
        state: &mut State,
        id: BlockId,
        slot: usize,
        generation: u64,
        bytes: Vec<u8>,
        wal: bool,
    ) -> bool {
        let replica = match wal {
            true => Replica::Here(bytes),
            false => Cluster::place_replica(state, id, slot, bytes),
        };
        let sending = matches!(replica, Replica::Sending { .. });
        let block = ReceivedBlock {
            slot,
            generation,
            replica,
        };
        state.received.insert(id, block);
        sending
    }

    /// Where the replica `bytes` of block `id` (stored by process `slot`) goes: to the
    /// next connected process after `slot` (asked to store it), or here when there is
    /// none.
    fn place_replica(state: &mut State, id: BlockId, slot: usize, bytes: Vec<u8>) -> Replica {
        let n = state.peers.len();
        let target = (1..n)
            .map(|i| (slot + i) % n)
            .find(|&s| state.peers[s].out.is_some());
        let Some(target) = target else {
            return Replica::Here(bytes);
        };
        let req = state.next_req;
        state.next_req += 1;
        let peer = &state.peers[target];
        let sent = peer.out.as_ref().is_some_and(|out| {
            out.send(ToExecutor::StoreReplica {
                req,
                id,
                bytes: Attached::new(bytes.clone()),
            })
            .is_ok()
        });
        match sent {
            true => Replica::Sending {
                slot: target,
                generation: peer.generation,
                req,
                bytes,
            },
            false => Replica::Here(bytes),
        }
    }

    /// Incarnation `generation` of process `slot` holds the replica of block `id` it was
    /// sent with request `req`: the coordinator drops its bytes, and the block is confirmed
    /// to the process that stored it if nothing before it waits.
    pub(super) fn replica_stored(&self, slot: usize, generation: u64, req: u64, id: BlockId) {
        Cluster::hold_replica(&mut self.state.lock(), slot, generation, req, id);
    }

    /// As [`Cluster::replica_stored`], on `state`.
    pub(super) fn hold_replica(
        state: &mut State,
        slot: usize,
        generation: u64,
        req: u64,
        id: BlockId,
    ) {
        let Some(block) = state.received.get_mut(&id) else {
            // Dropped meanwhile (its process was lost before it was confirmed): the holder
            // was told to drop it after it was sent.
            return;
        };
        match block.replica {
            Replica::Sending {
                slot: s,
                generation: g,
                req: r,
                ..
            } if (s, g, r) == (slot, generation, req) => {
                block.replica = Replica::Process { slot, generation };
            }
            _ => return,
        }
        let (primary, primary_generation) = (block.slot, block.generation);
        debug!(block = %id, holder = slot, "Replica held by another executor process.");
        Cluster::replicated(state, id, primary, primary_generation);
    }

    /// What the loss of incarnation `generation` of process `slot` means for the replicas
    /// it held or was sent: those on their way stay here (their bytes are) and are
    /// confirmed; those it held are lost, and returned with the slot of the process that
    /// stored the block, to be copied again from there ([`Cluster::copy_replicas`]) while
    /// that process lives.
    pub(super) fn lose_replicas(
        state: &mut State,
        slot: usize,
        generation: u64,
    ) -> Vec<(BlockId, usize)> {
        let mut confirmed = Vec::new();
        let mut lost = Vec::new();
        for (id, block) in &mut state.received {
            match &mut block.replica {
                Replica::Sending {
                    slot: s,
                    generation: g,
                    bytes,
                    ..
                } if (*s, *g) == (slot, generation) => {
                    block.replica = Replica::Here(std::mem::take(bytes));
                    confirmed.push((*id, block.slot, block.generation));
                }
                Replica::Process {
                    slot: s,
                    generation: g,
                } if (*s, *g) == (slot, generation) => {
                    block.replica = Replica::Lost;
                    lost.push((*id, block.slot, block.generation));
                }
                _ => {}
            }
        }
        for (id, primary, primary_generation) in confirmed {
            Cluster::replicated(state, id, primary, primary_generation);
        }
        lost.into_iter()
            .filter_map(|(id, primary, g)| match state.is_current(primary, g) {
                true => Some((id, primary)),
                false => {
                    warn!(block = %id, "A received block lost both its copies (the processes that stored and held it).");
                    None
                }
            })
            .collect()
    }

    /// Copies the lost replicas of `blocks` again, each fetched from the process that stored
    /// it (named with it), to another process or here; on a thread of the I/O runtime's
    /// blocking pool, since fetches wait.
    pub(super) fn copy_replicas(self: &Arc<Self>, blocks: Vec<(BlockId, usize)>) {
        let handle = self.io.lock().as_ref().map(|(h, _)| h.clone());
        let (Some(handle), false) = (handle, blocks.is_empty()) else {
            return;
        };
        let cluster = Arc::downgrade(self);
        handle.spawn_blocking(move || {
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            let requests: Vec<(BlockId, usize, BlockRequest)> = blocks
                .into_iter()
                .map(|(id, primary)| (id, primary, cluster.request_from(primary, &id)))
                .collect();
            for (id, primary, request) in requests {
                match request.wait(&cluster) {
                    Ok(Some(bytes)) => {
                        let mut state = cluster.state.lock();
                        if matches!(
                            state.received.get(&id).map(|b| &b.replica),
                            Some(Replica::Lost)
                        ) {
                            let replica = Cluster::place_replica(&mut state, id, primary, bytes);
                            if let Some(block) = state.received.get_mut(&id) {
                                block.replica = replica;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(block = %id, error = %e, "Cannot copy a lost replica again; the block is held by one executor process only.")
                    }
                }
            }
        });
    }

    /// Where to read received block `id` from: its replica's bytes when they are here, else
    /// the process holding its replica, else the process that stored it, while they live.
    pub(super) fn received_source(state: &State, id: &BlockId) -> ReceivedSource {
        let Some(block) = state.received.get(id) else {
            return ReceivedSource::Nowhere;
        };
        match &block.replica {
            Replica::Here(bytes) | Replica::Sending { bytes, .. } => {
                return ReceivedSource::Bytes(bytes.clone())
            }
            Replica::Process { slot, generation } if state.is_current(*slot, *generation) => {
                return ReceivedSource::Process(*slot)
            }
            _ => {}
        }
        match state.is_current(block.slot, block.generation) {
            true => ReceivedSource::Process(block.slot),
            false => ReceivedSource::Nowhere,
        }
    }

    /// The executor process holding received block `id`: the incarnation that stored it
    /// while it lives, else the one holding its replica.
    pub(crate) fn received_location(&self, id: &BlockId) -> Option<ExecutorId> {
        let state = self.state.lock();
        let block = state.received.get(id)?;
        if state.is_current(block.slot, block.generation) {
            return Some(self.first_id + block.slot);
        }
        match block.replica {
            Replica::Process { slot, generation } if state.is_current(slot, generation) => {
                Some(self.first_id + slot)
            }
            _ => None,
        }
    }

    /// How many replicas of received blocks process `slot`'s current incarnation holds.
    pub(super) fn replicas_held(state: &State, slot: usize) -> usize {
        let generation = state.peers[slot].generation;
        state
            .received
            .values()
            .filter(|b| {
                matches!(b.replica, Replica::Process { slot: s, generation: g } if (s, g) == (slot, generation))
            })
            .count()
    }

    /// Forgets received block `id` (no batch needs it): drops its replica here and tells
    /// the processes holding it.
    pub(crate) fn forget_received(&self, id: &BlockId) {
        Cluster::drop_received(&mut self.state.lock(), id);
    }

    /// Drops received block `id` here and in the processes (current incarnations) holding
    /// it or its replica.
    pub(super) fn drop_received(state: &mut State, id: &BlockId) {
        let Some(block) = state.received.remove(id) else {
            return;
        };
        let mut holders = vec![(block.slot, block.generation)];
        if let Replica::Process { slot, generation }
        | Replica::Sending {
            slot, generation, ..
        } = block.replica
        {
            holders.push((slot, generation));
        }
        for (slot, generation) in holders {
            let peer = &state.peers[slot];
            if let (Some(out), true) = (&peer.out, peer.generation == generation) {
                let _ = out.send(ToExecutor::DropBlocks { ids: vec![*id] });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::super::remote_receivers::tests::block;
    use super::super::remote_receivers::{PlacedReceiver, ReceiverStart};
    use super::super::Peer;
    use super::*;
    use crate::messages::SealedBlock;

    /// `n` connected processes (first incarnations), receiver 0 placed on slot 0, and what
    /// each process is sent.
    fn cluster(n: usize) -> (State, Vec<mpsc::UnboundedReceiver<ToExecutor>>) {
        let mut sent = Vec::new();
        let peers = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                sent.push(rx);
                Peer {
                    out: Some(tx),
                    generation: 1,
                    ..Peer::default()
                }
            })
            .collect();
        let mut state = State {
            peers,
            ..State::default()
        };
        let start = ReceiverStart {
            stream: 0,
            next_seq: 0,
            offset: None,
            rate: None,
            capacity: 100,
        };
        state.receivers.insert(0, PlacedReceiver::new(0, &start));
        (state, sent)
    }

    /// Block `seq` stored by slot 0's receiver and applied by the journal (the log off).
    fn store(state: &mut State, seq: u64, wal: bool) {
        Cluster::store_received(state, 0, 1, &block(seq), vec![seq as u8; 3], wal);
        Cluster::apply_stored(state, 0, 1, block(seq), false, true);
    }

    /// What a process was sent since the last look.
    fn drain(rx: &mut mpsc::UnboundedReceiver<ToExecutor>) -> Vec<ToExecutor> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    /// The request and block of each replica a process was asked to hold.
    fn replicas_asked(sent: Vec<ToExecutor>) -> Vec<(u64, BlockId, Vec<u8>)> {
        sent.into_iter()
            .filter_map(|m| match m {
                ToExecutor::StoreReplica { req, id, bytes } => Some((req, id, bytes.into_vec())),
                _ => None,
            })
            .collect()
    }

    /// The `next_seq` of each `BlocksDurable` a process was sent.
    fn durable(sent: &[ToExecutor]) -> Vec<u64> {
        sent.iter()
            .filter_map(|m| match m {
                ToExecutor::BlocksDurable { next_seq, .. } => Some(*next_seq),
                _ => None,
            })
            .collect()
    }

    fn source(state: &State, seq: u64) -> String {
        match Cluster::received_source(state, &block(seq).id) {
            ReceivedSource::Bytes(b) => format!("here {b:?}"),
            ReceivedSource::Process(slot) => format!("process {slot}"),
            ReceivedSource::Nowhere => "nowhere".into(),
        }
    }

    /// With the log off, a block's replica goes to the next process, not the coordinator's
    /// memory, and the block is confirmed to its receiver only once that process holds it,
    /// in order: a block whose replica is held waits for the one before it.
    #[test]
    fn a_block_is_confirmed_only_once_the_next_process_holds_its_replica() {
        let (mut state, mut sent) = cluster(3);
        store(&mut state, 0, false);
        store(&mut state, 1, false);
        assert!(durable(&drain(&mut sent[0])).is_empty(), "nothing held yet");
        let asked = replicas_asked(drain(&mut sent[1]));
        assert_eq!(
            asked
                .iter()
                .map(|(_, id, bytes)| (*id, bytes.clone()))
                .collect::<Vec<_>>(),
            [(block(0).id, vec![0; 3]), (block(1).id, vec![1; 3])],
            "the next process, slot 1, is asked"
        );
        assert!(drain(&mut sent[2]).is_empty());
        // Until then the coordinator serves the bytes it relays.
        assert_eq!(source(&state, 0), "here [0, 0, 0]");

        // An answer naming another request (a dropped block's, say) changes nothing.
        Cluster::hold_replica(&mut state, 1, 1, 99, block(0).id);
        assert_eq!(source(&state, 0), "here [0, 0, 0]");
        // Block 1's replica held first: block 0 still waits, so nothing is confirmed.
        let (req0, req1) = (asked[0].0, asked[1].0);
        Cluster::hold_replica(&mut state, 1, 1, req1, block(1).id);
        assert!(durable(&drain(&mut sent[0])).is_empty());
        Cluster::hold_replica(&mut state, 1, 1, req0, block(0).id);
        assert_eq!(durable(&drain(&mut sent[0])), [2]);
        assert_eq!(
            source(&state, 0),
            "process 1",
            "the bytes left the coordinator"
        );
        assert_eq!(Cluster::replicas_held(&state, 1), 2);
        assert_eq!(Cluster::replicas_held(&state, 2), 0);
        // Both durable: counted in its place if slot 0 is lost before reporting them.
        state.peers[0].out = None;
        let taken_over = Cluster::lose_receivers(&mut state, 0);
        assert_eq!(taken_over[0].sealed.blocks, [block(0), block(1)]);
    }

    /// With the write-ahead log on the log holds the block for good and the coordinator
    /// keeps the replica; with no other process connected it keeps it too. Either way the
    /// block is confirmed once the journal applied it.
    #[test]
    fn with_the_log_on_or_no_other_process_the_coordinator_keeps_the_replica() {
        let (mut state, mut sent) = cluster(2);
        store(&mut state, 0, true);
        assert_eq!(durable(&drain(&mut sent[0])), [1]);
        assert!(drain(&mut sent[1]).is_empty());
        assert_eq!(source(&state, 0), "here [0, 0, 0]");

        state.peers[1].out = None;
        store(&mut state, 1, false);
        assert_eq!(durable(&drain(&mut sent[0])), [2]);
        assert_eq!(source(&state, 1), "here [1, 1, 1]");
    }

    /// The process holding replicas is lost: a replica on its way stays in the coordinator,
    /// which had its bytes, and its block is confirmed; a replica it held is lost and
    /// returned to be copied again from the process that stored the block, which serves
    /// the block meanwhile. Blocks whose both copies are gone are not returned.
    #[test]
    fn a_lost_holder_s_replicas_on_their_way_stay_here_and_held_ones_are_copied_again() {
        let (mut state, mut sent) = cluster(3);
        store(&mut state, 0, false);
        store(&mut state, 1, false);
        let asked = replicas_asked(drain(&mut sent[1]));
        Cluster::hold_replica(&mut state, 1, 1, asked[0].0, block(0).id);
        assert_eq!(durable(&drain(&mut sent[0])), [1]);

        state.peers[1].out = None;
        let copy = Cluster::lose_replicas(&mut state, 1, 1);
        assert_eq!(copy, [(block(0).id, 0)]);
        assert_eq!(
            source(&state, 0),
            "process 0",
            "read from where it was stored"
        );
        assert_eq!(source(&state, 1), "here [1, 1, 1]");
        assert_eq!(durable(&drain(&mut sent[0])), [2]);
        // The next block goes to the next process still connected.
        store(&mut state, 2, false);
        assert_eq!(replicas_asked(drain(&mut sent[2])).len(), 1);

        // Both copies of a block gone: nothing to copy from.
        let (mut state, mut sent) = cluster(2);
        store(&mut state, 0, false);
        let asked = replicas_asked(drain(&mut sent[1]));
        Cluster::hold_replica(&mut state, 1, 1, asked[0].0, block(0).id);
        state.peers[0].out = None;
        state.peers[1].out = None;
        assert!(Cluster::lose_replicas(&mut state, 1, 1).is_empty());
        assert_eq!(source(&state, 0), "nowhere");
    }

    /// The process that stored the blocks is lost: a reported block is read from its
    /// replica's process; an unreported block never confirmed (its replica still on its
    /// way) is dropped, by the process asked to hold it too, and so is a block no batch
    /// needs any more.
    #[test]
    fn a_lost_process_s_blocks_are_read_from_their_replicas_and_dropped_ones_leave_the_holder() {
        let (mut state, mut sent) = cluster(2);
        store(&mut state, 0, false);
        let reported = SealedBlock {
            blocks: vec![block(0)],
            sealed_total: 1,
        };
        Cluster::count_reported(&mut state, 0, reported);
        store(&mut state, 1, false);
        let asked = replicas_asked(drain(&mut sent[1]));
        Cluster::hold_replica(&mut state, 1, 1, asked[0].0, block(0).id);

        state.peers[0].out = None;
        let counted = Cluster::lose_replicas(&mut state, 0, 1);
        assert!(counted.is_empty(), "slot 0 held no replicas");
        let taken_over = Cluster::lose_receivers(&mut state, 0);
        assert!(taken_over.is_empty(), "block 1 was never confirmed");
        assert_eq!(source(&state, 0), "process 1");
        assert_eq!(source(&state, 1), "nowhere");
        let dropped: Vec<Vec<BlockId>> = drain(&mut sent[1])
            .into_iter()
            .filter_map(|m| match m {
                ToExecutor::DropBlocks { ids } => Some(ids),
                _ => None,
            })
            .collect();
        assert_eq!(dropped, [vec![block(1).id]]);
        // A late answer for the dropped block changes nothing.
        Cluster::hold_replica(&mut state, 1, 1, asked[1].0, block(1).id);
        assert_eq!(source(&state, 1), "nowhere");

        Cluster::drop_received(&mut state, &block(0).id);
        assert!(matches!(
            drain(&mut sent[1]).as_slice(),
            [ToExecutor::DropBlocks { ids }] if ids == &[block(0).id]
        ));
        assert_eq!(Cluster::replicas_held(&state, 1), 0);
    }
}
