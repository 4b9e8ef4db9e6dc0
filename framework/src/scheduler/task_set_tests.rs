//! The task set's decisions, without executors: launches are checked as
//! `(executor, partition, attempt)` and time is an `Instant` moved by hand.

use std::time::{Duration, Instant};

use super::*;
use crate::rdd::RddId;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// No partition prefers an executor.
fn anywhere(_: usize) -> Vec<ExecutorId> {
    Vec::new()
}

/// `(executor, partition, attempt)` of each launch, in launch order.
fn placed(launches: &[Launch]) -> Vec<(ExecutorId, usize, u32)> {
    launches
        .iter()
        .map(|l| (l.executor, l.partition, l.attempt))
        .collect()
}

/// A set of partitions `0..n` of batch 2000 ms, without speculation.
fn set(n: usize, max_attempts: u32) -> TaskSet {
    TaskSet::new(
        (0..n).collect(),
        max_attempts,
        Some(Time::from_ms(2000)),
        None,
    )
}

fn failure(retryable: bool) -> TaskFailure {
    TaskFailure {
        operator: "map at app.rs:3:9".into(),
        message: "boom".into(),
        fetch_failed: None,
        retryable,
    }
}

fn shuffle() -> ShuffleId {
    ShuffleId(RddId {
        scope: 1,
        time_ms: 2000,
        seq: 0,
    })
}

fn fetch_failure(map: usize) -> TaskFailure {
    TaskFailure {
        fetch_failed: Some((shuffle(), map)),
        ..failure(true)
    }
}

fn speculation() -> Speculation {
    Speculation {
        multiplier: 1.5,
        quantile: 0.75,
        min_runtime: ms(100),
        interval: ms(100),
    }
}

#[test]
fn offers_spread_tasks_over_the_least_loaded_executors_two_slots_each() {
    let mut s = set(5, 3);
    let t0 = Instant::now();
    let first = s.offer(&[0, 1], anywhere, t0).expect("executors offered");
    assert_eq!(
        placed(&first),
        vec![(0, 0, 0), (1, 1, 0), (0, 2, 0), (1, 3, 0)]
    );
    assert_eq!(
        first.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(s.has_pending(), "partition 4 waits for a slot");
    assert!(s.offer(&[0, 1], anywhere, t0).expect("ok").is_empty());
    // Partition 1 finishes on executor 1: its slot takes partition 4.
    assert_eq!(s.succeeded(1, t0).map(|l| l.partition), Some(1));
    let next = s.offer(&[0, 1], anywhere, t0).expect("ok");
    assert_eq!(placed(&next), vec![(1, 4, 0)]);
    assert!(!s.has_pending());
    assert_eq!(s.unfinished(), 4);
}

#[test]
fn offers_prefer_a_task_whose_input_lives_on_the_executor() {
    let mut s = set(3, 3);
    let prefers = |p: usize| if p == 2 { vec![1] } else { Vec::new() };
    let launches = s.offer(&[0, 1], prefers, Instant::now()).expect("ok");
    // Executor 1 holds partition 2's input: it picks first, and takes that one.
    assert_eq!(placed(&launches), vec![(1, 2, 0), (0, 0, 0), (0, 1, 0)]);
}

#[test]
fn executors_holding_input_pick_first_among_equally_loaded_ones() {
    // Executors 1 and 2 (processes, offered first) hold nothing; executor 0 holds every
    // input, as the coordinator holds a receiver's blocks: it takes the oldest tasks first.
    let mut s = set(5, 3);
    let launches = s
        .offer(&[1, 2, 0], |_| vec![0], Instant::now())
        .expect("ok");
    assert_eq!(
        placed(&launches),
        vec![(0, 0, 0), (1, 1, 0), (2, 2, 0), (0, 3, 0), (1, 4, 0)]
    );
    // Inputs spread over two executors: each starts with its own, the third takes the
    // oldest left (partition 1, executor 2's), and executor 0 its other one next.
    let mut s = set(4, 3);
    let on = |p: usize| vec![if p < 2 { 2 } else { 0 }];
    let launches = s.offer(&[1, 2, 0], on, Instant::now()).expect("ok");
    assert_eq!(
        placed(&launches),
        vec![(2, 0, 0), (0, 2, 0), (1, 1, 0), (0, 3, 0)]
    );
}

#[test]
fn no_executor_and_nothing_running_is_not_running() {
    let mut s = set(3, 3);
    let t0 = Instant::now();
    let err = s.offer(&[], anywhere, t0).expect_err("nothing can run");
    assert_eq!(
        err.to_string(),
        "the streaming context is not running: no executor is left to run tasks"
    );
    assert_eq!(s.offer(&[0], anywhere, t0).expect("ok").len(), 2);
    // A copy still runs: it may finish or be lost, so the set is not stuck yet.
    assert!(s.offer(&[], anywhere, t0).expect("copies run").is_empty());
}

#[test]
fn a_failed_task_is_retried_until_its_last_attempt_then_fails_naming_partition_and_attempts() {
    let mut s = TaskSet::new(vec![4], 3, Some(Time::from_ms(2000)), None);
    let t0 = Instant::now();
    let mut attempts = Vec::new();
    let err = loop {
        let launches = s.offer(&[0], anywhere, t0).expect("ok");
        assert_eq!(launches.len(), 1);
        attempts.push(launches[0].attempt);
        match s.failed(launches[0].id, failure(true)) {
            FailureAction::Retry => continue,
            FailureAction::Abort(e) => break e,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(attempts, vec![0, 1, 2]);
    assert_eq!(
        err.to_string(),
        "batch 2000 ms: operator `map at app.rs:3:9` failed on partition 4 after 3 attempt(s): boom"
    );
    assert!(!s.has_pending());
}

#[test]
fn a_failure_a_retry_cannot_change_fails_at_once() {
    let mut s = TaskSet::new(vec![0, 1], 4, None, None);
    let launches = s.offer(&[0], anywhere, Instant::now()).expect("ok");
    match s.failed(launches[1].id, failure(false)) {
        FailureAction::Abort(e) => assert_eq!(
            e.to_string(),
            "operator `map at app.rs:3:9` failed on partition 1 after 1 attempt(s): boom"
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_retry_runs_after_the_tasks_already_pending() {
    let mut s = set(3, 3);
    let t0 = Instant::now();
    assert_eq!(
        placed(&s.offer(&[0], anywhere, t0).expect("ok")),
        vec![(0, 0, 0), (0, 1, 0)]
    );
    assert!(matches!(s.failed(0, failure(true)), FailureAction::Retry));
    assert_eq!(
        placed(&s.offer(&[0], anywhere, t0).expect("ok")),
        vec![(0, 2, 0)]
    );
    assert!(s.succeeded(1, t0).is_some());
    assert_eq!(
        placed(&s.offer(&[0], anywhere, t0).expect("ok")),
        vec![(0, 0, 1)]
    );
}

#[test]
fn a_lost_executors_running_tasks_go_back_to_pending_at_the_same_attempt() {
    let mut s = set(3, 3);
    let t0 = Instant::now();
    // ids 0, 1, 2: partition 0 on 0, 1 on 1, 2 on 0.
    s.offer(&[0, 1], anywhere, t0).expect("ok");
    assert!(matches!(s.failed(0, failure(true)), FailureAction::Retry));
    assert_eq!(
        placed(&s.offer(&[0, 1], anywhere, t0).expect("ok")),
        vec![(0, 0, 1)]
    );
    // Executor 0 dies under id 3 (partition 0, attempt 1) and id 2 (partition 2).
    assert_eq!(
        s.lost(3),
        Some(LostCopy {
            executor: 0,
            rerun: true
        })
    );
    assert_eq!(
        s.lost(2),
        Some(LostCopy {
            executor: 0,
            rerun: true
        })
    );
    // A loss is not an attempt: partition 0 runs again as attempt 1, in loss order.
    assert_eq!(
        placed(&s.offer(&[1], anywhere, t0).expect("ok")),
        vec![(1, 0, 1)]
    );
    assert!(s.has_pending(), "partition 2 waits for executor 1's slot");
    assert_eq!(s.unfinished(), 3);
}

#[test]
fn a_lost_executor_frees_all_its_slots_at_once() {
    let mut s = set(4, 3);
    let t0 = Instant::now();
    s.offer(&[0], anywhere, t0).expect("ok"); // ids 0, 1: partitions 0, 1
    assert!(s.lost(0).is_some_and(|l| l.rerun));
    // Its replacement (same id) starts empty: both slots are free though id 1 is unreported.
    assert_eq!(
        placed(&s.offer(&[0], anywhere, t0).expect("ok")),
        vec![(0, 2, 0), (0, 3, 0)]
    );
}

#[test]
fn a_fetch_failure_marks_the_set_for_resubmission() {
    let mut s = set(2, 1);
    s.offer(&[0], anywhere, Instant::now()).expect("ok");
    match s.failed(1, fetch_failure(3)) {
        FailureAction::Resubmit { shuffle: sh, map } => {
            assert_eq!((sh, map), (shuffle(), 3));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!s.has_pending(), "the set is abandoned, not retried");
}

/// Four tasks on executors 0..3 (partition 3 as id 3 on executor 0); partitions 0..3
/// finish after 10, 20 and 30 ms, so the threshold is the 100 ms floor; at 150 ms
/// partition 3 gets a copy, id 4 on executor 1.
fn speculated() -> (TaskSet, Instant) {
    let mut s = TaskSet::new((0..4).collect(), 3, None, Some(speculation()));
    let t0 = Instant::now();
    assert_eq!(
        placed(&s.offer(&[0, 1, 2], anywhere, t0).expect("ok")),
        vec![(0, 0, 0), (1, 1, 0), (2, 2, 0), (0, 3, 0)]
    );
    for id in 0..3 {
        assert!(s.succeeded(id, t0 + ms(10 * (id + 1))).is_some());
    }
    assert!(
        s.speculate(&[0, 1, 2], t0 + ms(100)).is_empty(),
        "not slower than 100 ms"
    );
    let copies = s.speculate(&[0, 1, 2], t0 + ms(150));
    assert_eq!(
        copies,
        vec![Launch {
            id: 4,
            executor: 1,
            partition: 3,
            attempt: 0,
            speculative: true
        }]
    );
    (s, t0)
}

#[test]
fn a_slow_task_gets_one_copy_on_another_executor_and_the_first_result_wins() {
    let (mut s, t0) = speculated();
    assert!(
        s.speculate(&[0, 1, 2], t0 + ms(400)).is_empty(),
        "one copy only"
    );
    let won = s.succeeded(4, t0 + ms(200)).expect("first result");
    assert_eq!((won.executor, won.partition), (1, 3));
    assert!(s.is_finished());
    assert_eq!(
        s.succeeded(3, t0 + ms(300)),
        None,
        "the original is a duplicate"
    );
    assert!(s.is_finished());
}

#[test]
fn a_partition_is_speculated_once_even_when_its_original_copy_failed() {
    let (mut s, t0) = speculated();
    assert!(matches!(
        s.failed(3, failure(true)),
        FailureAction::OtherCopyRunning
    ));
    // The copy (started at 150 ms) is now the only one, and slow: no third copy.
    assert!(s.speculate(&[0, 1, 2], t0 + ms(10_000)).is_empty());
}

#[test]
fn the_threshold_is_the_multiplier_times_the_median_finished_duration() {
    let mut s = TaskSet::new((0..4).collect(), 3, None, Some(speculation()));
    let t0 = Instant::now();
    s.offer(&[0, 1, 2], anywhere, t0).expect("ok");
    for id in 0..3 {
        assert!(s.succeeded(id, t0 + ms(100 * (id + 1))).is_some());
    }
    // Durations 100, 200, 300 ms: median 200 ms × 1.5 = 300 ms, above the 100 ms floor.
    assert!(s.speculate(&[0, 1, 2], t0 + ms(300)).is_empty());
    assert_eq!(
        placed(&s.speculate(&[0, 1, 2], t0 + ms(301))),
        vec![(1, 3, 0)]
    );
}

#[test]
fn the_original_winning_makes_the_copy_a_duplicate() {
    let (mut s, t0) = speculated();
    assert_eq!(s.succeeded(3, t0 + ms(200)).map(|l| l.executor), Some(0));
    assert!(matches!(
        s.failed(4, failure(true)),
        FailureAction::Duplicate
    ));
    assert!(!s.has_pending());

    let (mut s, t0) = speculated();
    assert!(s.succeeded(3, t0 + ms(200)).is_some());
    assert_eq!(
        s.lost(4),
        Some(LostCopy {
            executor: 1,
            rerun: false
        })
    );
    assert!(!s.has_pending(), "a finished partition is not rerun");
}

#[test]
fn a_copy_failing_or_lost_while_another_runs_waits_for_it() {
    let (mut s, _) = speculated();
    assert!(matches!(
        s.failed(3, failure(true)),
        FailureAction::OtherCopyRunning
    ));
    assert!(!s.has_pending());
    // The last copy fails too: now the partition is retried.
    assert!(matches!(s.failed(4, failure(true)), FailureAction::Retry));
    assert_eq!(
        placed(&s.offer(&[2], anywhere, Instant::now()).expect("ok")),
        vec![(2, 3, 1)]
    );

    let (mut s, _) = speculated();
    assert_eq!(
        s.lost(4),
        Some(LostCopy {
            executor: 1,
            rerun: false
        })
    );
    assert!(!s.has_pending());
    assert_eq!(
        s.lost(3),
        Some(LostCopy {
            executor: 0,
            rerun: true
        })
    );
    assert!(s.has_pending());
}

#[test]
fn a_fetch_failure_resubmits_even_with_another_copy_running_but_not_once_finished() {
    let (mut s, t0) = speculated();
    assert!(matches!(
        s.failed(3, fetch_failure(0)),
        FailureAction::Resubmit { map: 0, .. }
    ));
    let (mut s, _) = speculated();
    assert!(s.succeeded(4, t0).is_some());
    assert!(matches!(
        s.failed(3, fetch_failure(0)),
        FailureAction::Duplicate
    ));
}

#[test]
fn no_copy_before_enough_tasks_finished_or_without_a_free_other_executor() {
    let mut s = TaskSet::new((0..4).collect(), 3, None, Some(speculation()));
    let t0 = Instant::now();
    s.offer(&[0, 1], anywhere, t0).expect("ok"); // 0 on 0, 1 on 1, 2 on 0, 3 on 1
    assert!(s.succeeded(0, t0 + ms(10)).is_some());
    assert!(s.succeeded(1, t0 + ms(10)).is_some());
    assert!(
        s.speculate(&[0, 1], t0 + ms(10_000)).is_empty(),
        "2 of 4 < 3"
    );
    assert!(s.succeeded(2, t0 + ms(10)).is_some());
    assert!(
        s.speculate(&[1], t0 + ms(10_000)).is_empty(),
        "only its own executor"
    );
    assert_eq!(
        placed(&s.speculate(&[0, 1], t0 + ms(10_000))),
        vec![(0, 3, 0)]
    );
}

#[test]
fn speculation_is_off_for_a_single_task_or_when_not_configured() {
    let mut one = TaskSet::new(vec![7], 3, None, Some(speculation()));
    assert_eq!(one.speculation_interval(), None);
    let t0 = Instant::now();
    one.offer(&[0, 1], anywhere, t0).expect("ok");
    assert!(one.speculate(&[0, 1], t0 + ms(10_000)).is_empty());
    assert_eq!(
        TaskSet::new(vec![0, 1], 3, None, Some(speculation())).speculation_interval(),
        Some(ms(100))
    );
    assert_eq!(set(2, 3).speculation_interval(), None);
}

#[test]
fn outcomes_of_unknown_or_already_reported_copies_are_ignored() {
    let mut s = set(2, 3);
    let t0 = Instant::now();
    s.offer(&[0], anywhere, t0).expect("ok");
    assert!(s.succeeded(0, t0).is_some());
    assert_eq!(s.succeeded(0, t0), None);
    assert!(matches!(
        s.failed(0, failure(true)),
        FailureAction::Duplicate
    ));
    assert_eq!(s.lost(9), None);
    assert!(!s.has_pending());
    assert!(s.succeeded(1, t0).is_some());
    assert!(s.is_finished());
    assert_eq!(s.unfinished(), 0);
    assert!(
        s.offer(&[], anywhere, t0)
            .expect("nothing to place")
            .is_empty(),
        "no executor is only fatal when something waits for one"
    );
}
