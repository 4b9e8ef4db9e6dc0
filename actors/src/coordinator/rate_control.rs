//! Rate control (Spark: `RateController`): after each batch, each receiver's PID estimator
//! gets the batch's records of its stream and the batch's delays, and the new rate is set on
//! the receiver's buffer, capped at `max_rate_per_receiver`; each direct stream's estimator
//! gets the records it read, and its new rate is set on the stream, which splits it over its
//! partitions.

use std::collections::HashMap;
use std::time::Duration;

use rivulet_framework::block::{BlockInfo, StreamId};
use rivulet_framework::listener::BatchInfo;
use rivulet_framework::receiver::PidRateEstimator;
use tracing::debug;

use super::ReceiverHandle;

/// The estimators of a context's receivers.
pub(crate) struct RateControl {
    /// A fresh estimator, cloned for each stream on its first batch.
    template: PidRateEstimator,
    max_rate: Option<f64>,
    estimators: HashMap<StreamId, PidRateEstimator>,
    /// The estimators of rate-controlled input DStreams without a receiver (direct
    /// streams), by DStream id.
    inputs: HashMap<u32, PidRateEstimator>,
}

impl RateControl {
    /// Rate control for batches of `batch_interval`, capping rates at `max_rate`.
    ///
    /// # Errors
    /// [`Error::Config`](rivulet_framework::Error::Config) for a zero batch interval.
    pub(crate) fn new(
        batch_interval: Duration,
        max_rate: Option<f64>,
    ) -> rivulet_framework::Result<RateControl> {
        Ok(RateControl {
            template: PidRateEstimator::new(batch_interval)?,
            max_rate,
            estimators: HashMap::new(),
            inputs: HashMap::new(),
        })
    }

    /// Feeds the completed batch `info` (holding `blocks`, processed in `processing`: its
    /// processing delay plus the time its map stages ran ahead) to each receiver's estimator
    /// and sets the rates that came out; returns them (stream, records/s).
    pub(crate) fn on_batch_completed(
        &mut self,
        info: &BatchInfo,
        processing: Option<Duration>,
        blocks: &[BlockInfo],
        receivers: &[ReceiverHandle],
    ) -> Vec<(StreamId, f64)> {
        let mut set = Vec::new();
        let (Some(processing), Some(scheduling)) = (processing, info.scheduling_delay) else {
            return set;
        };
        for r in receivers {
            let records = super::batches::records_of(blocks, r.stream);
            let Some(estimator) = self
                .estimators
                .entry(r.stream)
                .or_insert_with(|| self.template.clone())
                .compute(
                    info.batch_time.as_ms(),
                    records as u64,
                    processing,
                    scheduling,
                )
            else {
                continue;
            };
            let rate = self.max_rate.map_or(estimator, |m| estimator.min(m));
            debug!(stream = r.stream, rate, "Receiver rate set.");
            r.source.set_rate(Some(rate));
            set.push((r.stream, rate));
        }
        set
    }

    /// Feeds the completed batch `info` (processed in `processing`), in which the
    /// rate-controlled input DStream `stream` read `records`, to its estimator; returns its
    /// new rate (records/s; not capped by `max_rate_per_receiver`, which is a receiver's: a
    /// direct stream caps each partition with its own `max_rate_per_partition`).
    pub(crate) fn on_input_completed(
        &mut self,
        stream: u32,
        info: &BatchInfo,
        processing: Option<Duration>,
        records: usize,
    ) -> Option<f64> {
        let rate = self
            .inputs
            .entry(stream)
            .or_insert_with(|| self.template.clone())
            .compute(
                info.batch_time.as_ms(),
                records as u64,
                processing?,
                info.scheduling_delay?,
            )?;
        debug!(stream, rate, "Input rate set.");
        Some(rate)
    }
}
