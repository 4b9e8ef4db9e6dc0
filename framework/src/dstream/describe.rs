//! A plain description of a [`DStreamGraph`](super::DStreamGraph)'s streams and outputs,
//! for tools that show it (the status page draws it as a DAG, as Spark's UI draws a job's
//! DAG with each operator's call site).

use super::DStreamId;

/// One DStream of a graph.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamDescription {
    /// Its id (ids grow in creation order, so parents come before children).
    pub id: DStreamId,
    /// The operator that made it, e.g. `"map"`.
    pub op: String,
    /// Where the program called the operator, `file:line:column`.
    pub call_site: String,
    /// How often it produces an RDD, in milliseconds.
    pub slide_ms: u64,
    /// The ids of the streams it reads, in argument order.
    pub parents: Vec<DStreamId>,
}

/// One output operation of a graph.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputDescription {
    /// Its index in registration order (as [`OutputOperationInfo::id`](crate::listener::OutputOperationInfo::id)).
    pub id: usize,
    /// The operator, e.g. `"foreach_rdd"`.
    pub op: String,
    /// Where the program called it, `file:line:column`.
    pub call_site: String,
    /// The id of the stream it consumes.
    pub stream: DStreamId,
}

/// A graph's streams (in id order) and outputs (in registration order).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GraphDescription {
    /// Every DStream.
    pub streams: Vec<StreamDescription>,
    /// Every output operation.
    pub outputs: Vec<OutputDescription>,
}

/// `file:line:column` of an operator's call site.
pub(crate) fn call_site(location: &std::panic::Location<'_>) -> String {
    format!(
        "{}:{}:{}",
        location.file(),
        location.line(),
        location.column()
    )
}
