//! The coordinator's side of the cluster against fake executor processes (threads speaking
//! the protocol over loopback TCP): tasks and blocks both ways, and each way a process is
//! lost (a frame that does not decode, silence past the heartbeat timeout, a closed
//! connection), refused (a slot out of range, a second process for a slot) or stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_framework::block::BlockId;
use rivulet_framework::dstream::DStreamGraph;
use rivulet_framework::rdd::{MapStatus, RddContext, RddId, ShuffleId};
use rivulet_framework::scheduler::{TaskDescription, TaskKind, TaskOutcome};
use rivulet_framework::time::Time;

use super::*;

/// The heartbeat timeout of the clusters here: 20 of the fakes' heartbeats (every 50 ms), so
/// that a loaded machine does not lose a serving fake.
const TIMEOUT: Duration = Duration::from_secs(1);
use crate::transport::TransportError;

/// What a fake executor does once registered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Heartbeats, reports [`cached_partition`] cached, answers tasks with a map output
    /// and fetches with `b"bucket"`.
    Serve,
    /// Sends a frame that is not a message.
    Garbage,
    /// Sends nothing more (holds the connection open).
    Silent,
    /// As [`Behaviour::Serve`], but holds fetches until it has three, then answers them
    /// last first, each with `b"map M"` for the bucket of map `M`: only fetches in flight
    /// together get an answer.
    ServeThreeAtOnce,
}

/// A free loopback address for a static cluster to listen on.
fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn executor_hello() -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        build: BuildId::current().clone(),
        role: Role::Executor,
        name: "fake executor".into(),
    }
}

/// Runs `future` to completion on a thread of its own with its own runtime (a fake process
/// must not share the coordinator's).
fn on_own_thread<F>(future: F) -> std::thread::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    })
}

/// Ends a test: the fakes leave, the cluster stops, their threads are joined.
fn finish(cluster: &Cluster, fakes: Vec<std::thread::JoinHandle<bool>>, done: &AtomicBool) {
    done.store(true, Ordering::Relaxed);
    cluster.stop();
    fakes.into_iter().for_each(|f| drop(f.join()));
}

/// A fake executor process for slot `slot` of the coordinator at `addr`, on its own thread
/// until `done` is set or the coordinator stops it. Returns whether it was told to stop.
fn fake(
    addr: String,
    slot: usize,
    behaviour: Behaviour,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<bool> {
    on_own_thread(async move {
        let mut connection = loop {
            match Connection::connect(&addr, &executor_hello(), TransportOptions::default()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        connection
            .send(&ToCoordinator::Register {
                slot,
                pid: 4242 + slot as u32,
                threads: 1,
            })
            .await
            .unwrap();
        let (mut sender, mut receiver) = connection.split();
        let mut beat = tokio::time::interval(Duration::from_millis(50));
        let mut held: Vec<(u64, BlockId)> = Vec::new();
        loop {
            if done.load(Ordering::Relaxed) {
                return false;
            }
            let message = tokio::select! {
                m = receiver.recv::<ToExecutor>() => match m {
                    Ok((m, _)) => m,
                    Err(_) => return false,
                },
                _ = beat.tick() => {
                    if matches!(behaviour, Behaviour::Serve | Behaviour::ServeThreeAtOnce) {
                        let _ = sender.send(&ToCoordinator::Heartbeat).await;
                    }
                    continue;
                }
            };
            match (behaviour, message) {
                (_, ToExecutor::Stop) => return true,
                (Behaviour::Garbage, ToExecutor::Welcome { .. }) => {
                    let _ = sender.send(&"not a message").await;
                }
                (Behaviour::Serve, ToExecutor::Welcome { .. }) if slot == 0 => {
                    let id = cached_partition();
                    let _ = sender.send(&ToCoordinator::Cached { id }).await;
                }
                (Behaviour::ServeThreeAtOnce, ToExecutor::FetchBlock { req, id }) => {
                    held.push((req, id));
                    if held.len() == 3 {
                        for (req, id) in held.drain(..).rev() {
                            let BlockId::Shuffle { map, .. } = id else {
                                continue;
                            };
                            let reply = Ok(Some(Attached::new(format!("map {map}").into_bytes())));
                            let mut block = ToCoordinator::Block { req, reply };
                            let _ = protocol::send(&mut sender, &mut block).await;
                        }
                    }
                }
                (
                    Behaviour::Serve | Behaviour::ServeThreeAtOnce,
                    ToExecutor::RunTask { req, .. },
                ) => {
                    let outcome = RemoteOutcome::MapOutput(MapStatus {
                        bucket_records: vec![1],
                    });
                    let _ = sender
                        .send(&ToCoordinator::TaskDone {
                            req,
                            outcome,
                            reads: Vec::new(),
                        })
                        .await;
                }
                (Behaviour::Serve, ToExecutor::FetchBlock { req, .. }) => {
                    let reply = Ok(Some(Attached::new(b"bucket".to_vec())));
                    let mut block = ToCoordinator::Block { req, reply };
                    let _ = protocol::send(&mut sender, &mut block).await;
                }
                _ => {}
            }
        }
    })
}

/// A static cluster of `n` slots on a free port with a [`TIMEOUT`] heartbeat timeout, started
/// while `fakes` (one behaviour per slot) register.
fn cluster(
    behaviours: &[Behaviour],
) -> (
    Arc<Cluster>,
    Vec<std::thread::JoinHandle<bool>>,
    Arc<AtomicBool>,
) {
    let addr = free_address();
    let done = Arc::new(AtomicBool::new(false));
    let fakes = behaviours
        .iter()
        .enumerate()
        .map(|(slot, b)| fake(addr.clone(), slot, *b, done.clone()))
        .collect();
    let graph = DStreamGraph::new(Duration::from_millis(100), RddContext::new(1), 100, None);
    let blocks = BlockManager::new(1);
    let cluster = Cluster::start(
        Launch::Static {
            listen: addr,
            n: behaviours.len(),
        },
        1,
        &blocks,
        graph,
        Arc::default(),
        TIMEOUT,
    )
    .expect("every fake registered");
    (cluster, fakes, done)
}

fn shuffle() -> ShuffleId {
    ShuffleId(RddId {
        scope: 1,
        time_ms: 100,
        seq: 2,
    })
}

/// The partition slot 0's fake reports cached.
fn cached_partition() -> BlockId {
    BlockId::Rdd {
        rdd: shuffle().0,
        partition: 3,
    }
}

fn map_task(partition: usize) -> TaskDescription {
    TaskDescription {
        job: 0,
        stage: 0,
        partition,
        attempt: 0,
        batch_time: Some(Time::from_ms(100)),
        kind: TaskKind::ShuffleMap,
        shuffle: Some(shuffle()),
        rdd: None,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tasks_and_buckets_travel_and_a_stop_reaches_every_process() {
    let (cluster, fakes, _done) = cluster(&[Behaviour::Serve, Behaviour::Serve]);
    assert_eq!(
        cluster.alive(),
        vec![1, 2],
        "ids after the one in-process executor"
    );
    assert!(cluster.owns(2) && !cluster.owns(0) && !cluster.owns(3));
    let outcome = futures::executor::block_on(cluster.launch(2, map_task(5)));
    assert!(
        matches!(&outcome, TaskOutcome::MapOutput(s) if s.bucket_records == vec![1]),
        "{outcome:?}"
    );
    // The bucket map 5 wrote is fetched from slot 1's process, and only there.
    let bucket = BlockId::Shuffle {
        shuffle: shuffle(),
        map: 5,
        reduce: 0,
    };
    assert_eq!(cluster.fetch(&bucket).unwrap(), Some(b"bucket".to_vec()));
    let other = BlockId::Shuffle {
        shuffle: shuffle(),
        map: 6,
        reduce: 0,
    };
    assert_eq!(
        cluster.fetch(&other).unwrap(),
        None,
        "no process wrote map 6"
    );
    // A cached partition is fetched from the process that reported it; another is not
    // asked for at all.
    wait_until("the cache report", || {
        cluster.fetch(&cached_partition()).unwrap() == Some(b"bucket".to_vec())
    });
    let uncached = BlockId::Rdd {
        rdd: shuffle().0,
        partition: 4,
    };
    assert_eq!(cluster.fetch(&uncached).unwrap(), None);
    let processes = cluster.processes();
    assert_eq!(processes[1].map_tasks, 1);
    assert_eq!(processes[1].pid, Some(4243));
    assert!(processes[1].bytes_sent > 0 && processes[1].bytes_received > 0);
    // Batches done: the outputs are forgotten.
    cluster.remove_batches_up_to(100);
    assert_eq!(cluster.fetch(&bucket).unwrap(), None);
    cluster.stop();
    let stopped: Vec<bool> = fakes.into_iter().map(|f| f.join().unwrap()).collect();
    assert_eq!(stopped, vec![true, true], "each process read its Stop");
}

#[test]
fn fetch_many_has_every_request_in_flight_before_it_waits_and_answers_in_order() {
    let (cluster, fakes, done) = cluster(&[Behaviour::ServeThreeAtOnce]);
    for map in [5, 6, 7] {
        let outcome = futures::executor::block_on(cluster.launch(1, map_task(map)));
        assert!(matches!(outcome, TaskOutcome::MapOutput(_)), "{outcome:?}");
    }
    let bucket = |map| BlockId::Shuffle {
        shuffle: shuffle(),
        map,
        reduce: 0,
    };
    let unwritten = bucket(8);
    // The process answers only once all three of its buckets are asked for, last first;
    // one fetch after another would wait for an answer that never comes.
    let ids = [bucket(5), unwritten, bucket(6), bucket(7)];
    let fetched: Vec<Option<Vec<u8>>> = cluster
        .fetch_many(&ids)
        .collect::<Result<_>>()
        .expect("every fetch answered");
    assert_eq!(
        fetched,
        vec![
            Some(b"map 5".to_vec()),
            None,
            Some(b"map 6".to_vec()),
            Some(b"map 7".to_vec())
        ]
    );
    finish(&cluster, fakes, &done);
}

/// A fetch the process never answers fails when the cluster stops, not after its timeout
/// (a thread copying a lost replica waits on such fetches, and the I/O thread's runtime
/// waits for that thread at its end).
#[test]
fn a_fetch_still_waiting_fails_when_the_cluster_stops() {
    let (cluster, fakes, done) = cluster(&[Behaviour::ServeThreeAtOnce]);
    let outcome = futures::executor::block_on(cluster.launch(1, map_task(5)));
    assert!(matches!(outcome, TaskOutcome::MapOutput(_)), "{outcome:?}");
    let bucket = BlockId::Shuffle {
        shuffle: shuffle(),
        map: 5,
        reduce: 0,
    };
    // Alone, the fetch is held by the process for ever.
    let fetcher = {
        let cluster = cluster.clone();
        std::thread::spawn(move || cluster.fetch(&bucket))
    };
    wait_until("the fetch sent", || {
        !cluster.state.lock().fetches.is_empty()
    });
    finish(&cluster, fakes, &done);
    let failed = fetcher.join().expect("the fetch returned");
    let error = failed.expect_err("no answer came").to_string();
    assert!(error.contains("the context stops"), "{error}");
}

#[test]
fn a_frame_that_does_not_decode_loses_the_process_and_its_tasks() {
    let (cluster, fakes, done) = cluster(&[Behaviour::Garbage]);
    wait_until("the loss", || cluster.processes()[0].losses == 1);
    assert!(cluster.alive().is_empty());
    assert!(matches!(
        futures::executor::block_on(cluster.launch(1, map_task(0))),
        TaskOutcome::ExecutorLost
    ));
    assert!(cluster.report_lost(1), "news once");
    assert!(!cluster.report_lost(1), "then not");
    finish(&cluster, fakes, &done);
}

#[test]
fn a_silent_process_is_lost_after_the_heartbeat_timeout_and_its_task_answers_lost() {
    let (cluster, fakes, done) = cluster(&[Behaviour::Silent]);
    let started = Instant::now();
    // A task sent to it waits, then answers lost when the timeout passes.
    let outcome = futures::executor::block_on(cluster.launch(1, map_task(0)));
    assert!(matches!(outcome, TaskOutcome::ExecutorLost), "{outcome:?}");
    let waited = started.elapsed();
    assert!(waited >= TIMEOUT, "lost only after the timeout: {waited:?}");
    assert_eq!(cluster.processes()[0].losses, 1);
    let bucket = BlockId::Rdd {
        rdd: shuffle().0,
        partition: 0,
    };
    assert_eq!(
        cluster.fetch(&bucket).unwrap(),
        None,
        "a lost process is not asked"
    );
    finish(&cluster, fakes, &done);
}

#[test]
fn a_process_of_another_build_is_refused_at_the_handshake() {
    let (cluster, fakes, done) = cluster(&[Behaviour::Serve]);
    let addr = cluster.listening.to_string();
    let mut other = executor_hello();
    other.build.program = "0badbeef".into();
    let refused = on_own_thread(async move {
        Connection::connect(&addr, &other, TransportOptions::default())
            .await
            .map(drop)
    })
    .join()
    .unwrap();
    match refused {
        Err(TransportError::Mismatch { reason, theirs, .. }) => {
            assert_eq!(reason, "another build");
            assert!(theirs.contains(&BuildId::current().program), "{theirs}");
        }
        other => panic!("expected a refusal naming both builds, got {other:?}"),
    }
    assert_eq!(
        cluster.alive(),
        vec![1],
        "the registered process is untouched"
    );
    finish(&cluster, fakes, &done);
}

#[test]
fn a_process_for_a_slot_in_use_or_out_of_range_is_refused() {
    let (cluster, fakes, done) = cluster(&[Behaviour::Serve]);
    let addr = cluster.listening.to_string();
    let intruders = [
        fake(addr.clone(), 0, Behaviour::Serve, done.clone()),
        fake(addr, 7, Behaviour::Serve, done.clone()),
    ];
    // Refused: each intruder's connection closes without a welcome.
    for intruder in intruders {
        assert!(!intruder.join().unwrap(), "refused, not stopped");
    }
    assert_eq!(
        cluster.processes()[0].pid,
        Some(4242),
        "the first process keeps its slot"
    );
    assert_eq!(cluster.processes()[0].losses, 0);
    finish(&cluster, fakes, &done);
}
