//! Actors in and out of streams through the public API: `actor_stream` with concurrent
//! senders (every accepted event in exactly one batch), `try_send` backpressure, a user
//! receiver actor that panics and is restarted without losing what it stored (and escalates
//! past its limit), `send_to` and `send_by_key` sinks in batch order.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use common::{advance_until, config, context, within};
use rivulet::actors::Event;
use rivulet::prelude::*;

#[actix::test]
async fn concurrent_senders_land_every_event_in_exactly_one_batch() {
    within(async {
        let ssc = context(2, 2);
        let (events, source) = ssc.actor_stream::<u64>("numbers");
        let out = events.collect_batches();
        ssc.start().await.unwrap();
        // Four senders, each its own way, 0..1000 in all.
        let mut senders = Vec::new();
        for s in 0..4u64 {
            let source = source.clone();
            senders.push(actix::spawn(async move {
                let mine: Vec<u64> = (s * 250..(s + 1) * 250).collect();
                match s {
                    0 => {
                        for x in mine {
                            source.send(x).await.unwrap();
                        }
                    }
                    1 => source.send_many(mine).await.unwrap(),
                    _ => {
                        let r = source.recipient();
                        for x in mine {
                            r.send(Event(x)).await.unwrap().unwrap();
                        }
                    }
                }
            }));
        }
        advance_until(&ssc, || out.records().len() >= 1000).await;
        for s in senders {
            s.await.unwrap();
        }
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let mut all = out.records();
        all.sort();
        assert_eq!(
            all,
            (0..1000).collect::<Vec<u64>>(),
            "each event exactly once"
        );
        // Sending after the stop fails instead of hanging.
        assert!(source.send(7).await.is_err());
        assert!(matches!(source.try_send(7), Err(TrySendError::Closed(7))));
    })
    .await;
}

#[actix::test]
async fn try_send_is_full_until_a_batch_frees_room_and_send_waits_for_it() {
    within(async {
        let ssc = StreamingContext::new(config(1, 1).receiver_buffer_records(5)).unwrap();
        let (events, source) = ssc.actor_stream::<u32>("small");
        let out = events.collect_batches();
        ssc.start().await.unwrap();
        for x in 0..5 {
            source.try_send(x).unwrap();
        }
        assert_eq!(source.try_send(5), Err(TrySendError::Full(5)));
        let waiting = {
            let source = source.clone();
            actix::spawn(async move { source.send(5).await })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "send waits while the stream is backpressured"
        );
        ssc.advance(1).await.unwrap(); // batch 1 takes 0..5 and frees their room
        waiting.await.unwrap().unwrap();
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(
            out.batches()[..2].to_vec(),
            vec![vec![0, 1, 2, 3, 4], vec![5]]
        );
    })
    .await;
}

/// Stores 0..50 one per tick from a shared counter; panics (taking its arbiter down) when
/// the counter reaches a multiple of 10 for the first time.
struct Flaky {
    sink: ActorSink<u64>,
    next: Arc<AtomicU64>,
    panicked_at: Arc<Mutex<Vec<u64>>>,
}

impl Actor for Flaky {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(1), |act, _| {
            let n = act.next.load(Ordering::SeqCst);
            if n >= 50 {
                return;
            }
            if n > 0 && n % 10 == 0 {
                let mut marks = act.panicked_at.lock().unwrap();
                if !marks.contains(&n) {
                    marks.push(n);
                    drop(marks);
                    panic!("flaky receiver actor fails at {n}");
                }
            }
            if act.sink.try_store(n).is_ok() {
                act.next.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
}

#[actix::test]
async fn a_panicking_receiver_actor_is_restarted_and_loses_nothing() {
    within(async {
        let ssc =
            StreamingContext::new(config(1, 1).receiver_restarts(10, Duration::from_millis(5)))
                .unwrap();
        let (next, marks) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (n, m) = (next.clone(), marks.clone());
        let out = ssc
            .actor_receiver_stream(move |sink| Flaky {
                sink,
                next: n.clone(),
                panicked_at: m.clone(),
            })
            .collect_batches();
        ssc.start().await.unwrap();
        advance_until(&ssc, || out.records().len() >= 50).await;
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(
            *marks.lock().unwrap(),
            vec![10, 20, 30, 40],
            "it panicked 4 times"
        );
        assert_eq!(out.records(), (0..50).collect::<Vec<u64>>());
    })
    .await;
}

/// Panics as soon as it starts.
struct Broken;

impl Actor for Broken {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(Duration::ZERO, |_, _| panic!("broken receiver actor"));
    }
}

#[actix::test]
async fn a_receiver_actor_failing_past_its_limit_stops_the_context() {
    within(async {
        let ssc =
            StreamingContext::new(config(1, 1).receiver_restarts(2, Duration::from_millis(1)))
                .unwrap();
        ssc.actor_receiver_stream(|_sink: ActorSink<u8>| Broken)
            .print(1);
        ssc.start().await.unwrap();
        let err = ssc.await_termination().await.unwrap_err().to_string();
        assert!(
            err.contains("actor receiver") && err.contains("Broken"),
            "{err}"
        );
    })
    .await;
}

/// Records every batch it gets, slowly (a blocking sleep on its own arbiter).
struct SlowSink {
    got: Arc<Mutex<Vec<(Time, Vec<u32>)>>>,
}

impl Actor for SlowSink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1);
    }
}

impl Handler<Batch<u32>> for SlowSink {
    type Result = ();
    fn handle(&mut self, batch: Batch<u32>, _: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(20));
        self.got.lock().unwrap().push((batch.time, batch.records));
    }
}

#[actix::test]
async fn send_to_delivers_every_batch_in_order_to_a_slow_actor() {
    within(async {
        let ssc = context(2, 2);
        let input: Vec<Vec<u32>> = (0..6).map(|i| vec![i, i + 100]).collect();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let sink =
            SlowSink::start_in_arbiter(&Arbiter::new().handle(), move |_| SlowSink { got: g });
        ssc.queue_stream(input.clone()).send_to(sink.recipient());
        ssc.start().await.unwrap();
        ssc.advance(7).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let got = got.lock().unwrap().clone();
        let times: Vec<i64> = got.iter().map(|(t, _)| t.as_ms()).collect();
        assert_eq!(times, (1..=7).map(|i| i * 100).collect::<Vec<_>>());
        let mut expected = input;
        expected.push(Vec::new());
        let records: Vec<Vec<u32>> = got
            .into_iter()
            .map(|(_, mut r)| {
                r.sort();
                r
            })
            .collect();
        assert_eq!(records, expected);
    })
    .await;
}

/// One key's records, per batch.
struct KeyActor {
    log: Arc<Mutex<BTreeMap<String, Vec<(i64, Vec<u32>)>>>>,
}

impl Actor for KeyActor {
    type Context = Context<Self>;
}

impl Handler<Batch<(String, u32)>> for KeyActor {
    type Result = ();
    fn handle(&mut self, batch: Batch<(String, u32)>, _: &mut Context<Self>) {
        for (k, _) in &batch.records {
            assert_eq!(*k, batch.records[0].0, "one key per message");
        }
        let key = batch.records[0].0.clone();
        let values = batch.records.into_iter().map(|(_, v)| v).collect();
        self.log
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .push((batch.time.as_ms(), values));
    }
}

#[actix::test]
async fn send_by_key_routes_each_keys_records_to_its_own_actor_in_order() {
    within(async {
        let ssc = context(1, 1);
        let input = vec![
            vec![
                ("a".to_string(), 1),
                ("b".to_string(), 2),
                ("a".to_string(), 3),
            ],
            vec![("b".to_string(), 4)],
            vec![("a".to_string(), 5), ("c".to_string(), 6)],
        ];
        let log: Arc<Mutex<BTreeMap<String, Vec<(i64, Vec<u32>)>>>> = Arc::default();
        let made = Arc::new(AtomicU64::new(0));
        let (l, m) = (log.clone(), made.clone());
        ssc.queue_stream(input).send_by_key(move |_key: &String| {
            m.fetch_add(1, Ordering::SeqCst);
            KeyActor { log: l.clone() }.start().recipient()
        });
        ssc.start().await.unwrap();
        ssc.advance(3).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 3, "one actor per key");
        let log = log.lock().unwrap().clone();
        let expected: BTreeMap<String, Vec<(i64, Vec<u32>)>> = [
            ("a".to_string(), vec![(100, vec![1, 3]), (300, vec![5])]),
            ("b".to_string(), vec![(100, vec![2]), (200, vec![4])]),
            ("c".to_string(), vec![(300, vec![6])]),
        ]
        .into_iter()
        .collect();
        assert_eq!(log, expected);
    })
    .await;
}

/// Takes batches until told to quit.
struct Quitter;

impl Actor for Quitter {
    type Context = Context<Self>;
}

impl Handler<Batch<u32>> for Quitter {
    type Result = ();
    fn handle(&mut self, _: Batch<u32>, _: &mut Context<Self>) {}
}

#[derive(Message)]
#[rtype(result = "()")]
struct Quit;

impl Handler<Quit> for Quitter {
    type Result = ();
    fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix::test]
async fn a_stopped_sink_actor_fails_the_output_naming_it_and_the_pipeline_goes_on() {
    within(async {
        let ssc = context(1, 1);
        let sink = Quitter.start();
        let numbers = ssc.queue_stream(vec![vec![1u32], vec![2], vec![3]]);
        numbers.send_to(sink.clone().recipient());
        let all = numbers.collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        sink.send(Quit).await.unwrap();
        while sink.connected() {
            tokio::task::yield_now().await;
        }
        let err = ssc.advance(2).await.unwrap_err().to_string();
        assert!(
            err.contains("send_to") && err.contains("sink actor"),
            "{err}"
        );
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(
            all.batches(),
            vec![vec![1], vec![2], vec![3]],
            "the other output ran"
        );
    })
    .await;
}
