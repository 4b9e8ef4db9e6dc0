//! Actors in and out of streams: actor sources (Spark's `actorStream`), user actors as
//! supervised receivers (Spark's `ActorHelper`), and actor sinks for each batch's records.

mod receiver_actor;
mod sink;
mod source;

pub use receiver_actor::{ActorReceiver, ActorSink};
pub use sink::{ActorOutputs, Batch, KeyedActorOutputs};
pub use source::{ActorSource, Event, SendError, TrySendError};
