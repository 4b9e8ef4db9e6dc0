//! Drives a receiver by hand in tests, as the runtime would: a bounded buffer, a sink,
//! `on_start`, then `receive` in a loop.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivulet_framework::receiver::{
    BlockBuffer, BlockSealer, BlockSink, Flow, Receiver, ReceiverCounters, ReceiverMetrics,
};

/// How long a test may wait for a receiver to get somewhere.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) struct Harness<R: Receiver<Item = String>> {
    pub(crate) receiver: R,
    pub(crate) sink: BlockSink<String>,
    pub(crate) buffer: Arc<BlockBuffer<String>>,
}

impl<R: Receiver<Item = String>> Harness<R> {
    /// Starts `receiver` with a buffer of `capacity` records.
    pub(crate) async fn start(mut receiver: R, capacity: usize) -> Harness<R> {
        // Logs show with a failing test's output (or all of them with `--nocapture`).
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rivulet_receivers=debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let buffer = Arc::new(BlockBuffer::new(0, capacity));
        let sink = BlockSink::new(buffer.clone());
        receiver.on_start().await.unwrap();
        Harness {
            receiver,
            sink,
            buffer,
        }
    }

    pub(crate) fn metrics(&self) -> ReceiverMetrics {
        self.buffer.metrics()
    }

    /// Calls `receive` until `done` holds for the metrics (checked while a call is pending
    /// too; that call is then dropped). Panics after [`DEADLINE`].
    pub(crate) async fn drive_until(
        &mut self,
        what: &str,
        done: impl Fn(&ReceiverMetrics) -> bool,
    ) {
        let Harness {
            receiver,
            sink,
            buffer,
        } = self;
        let driven = tokio::time::timeout(DEADLINE, async {
            while !done(&buffer.metrics()) {
                let call = receiver.receive(sink);
                tokio::pin!(call);
                loop {
                    tokio::select! {
                        flow = &mut call => {
                            assert_eq!(flow.unwrap(), Flow::Continue);
                            break;
                        }
                        () = tokio::time::sleep(Duration::from_millis(5)) => {
                            if done(&buffer.metrics()) {
                                return;
                            }
                        }
                    }
                }
            }
        })
        .await;
        if driven.is_err() {
            panic!(
                "timed out waiting for {what}; metrics: {:?}",
                self.metrics()
            );
        }
    }

    /// The records stored since the last call, in order.
    pub(crate) fn take_records(&self) -> Vec<String> {
        let blocks = self.buffer.seal();
        blocks
            .iter()
            .flat_map(|b| b.data.downcast_ref::<Vec<String>>().unwrap().clone())
            .collect()
    }
}

/// Log output captured from the current thread.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The WARN lines logged since the last call.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        let text = String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap();
        text.lines()
            .filter(|l| l.contains("WARN"))
            .map(str::to_string)
            .collect()
    }
}

/// Installs a capturing subscriber for this thread (WARN and above, as by default).
pub(crate) fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}
