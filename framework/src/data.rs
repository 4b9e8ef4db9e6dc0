//! The bounds on what flows through rivulet: [`Data`] for records, [`Key`] for keys of pairs.

use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record type: cloneable, shareable across executor threads, and serializable so that
/// blocks, shuffle outputs and checkpoints can leave the process (Spark: `ClassTag` + Java
/// serialization). Implemented for every type that meets the bounds.
pub trait Data: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> Data for T {}

/// A key of a pair record: [`Data`] that can be hashed and compared, so that records with
/// equal keys meet in one partition of a shuffle. Implemented for every type that meets the
/// bounds.
pub trait Key: Data + Eq + Hash {}

impl<T: Data + Eq + Hash> Key for T {}
