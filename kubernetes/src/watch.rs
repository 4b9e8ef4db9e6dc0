//! The watch of this coordinator's executor pods (Spark: `ExecutorPodsWatchSnapshotSource`
//! feeding `ExecutorPodsLifecycleManager`): a list, then a watch from the list's resource
//! version, again after every error (with a bounded backoff), updating the [`State`] that
//! `ended` reads.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;
use parking_lot::{Condvar, Mutex};
use tracing::{debug, warn};

use crate::pod::{deleted_why, ended_why};

/// The pod a slot was last given.
#[derive(Clone, Debug)]
pub(crate) struct Current {
    /// The pod's name.
    pub(crate) name: String,
    /// Its uid, as the create call returned it.
    pub(crate) uid: String,
}

/// What the watch (and the manager's own calls) know of the executor pods.
#[derive(Debug, Default)]
pub(crate) struct Pods {
    /// Each slot's pod, once started.
    pub(crate) current: HashMap<usize, Current>,
    /// Why each pod that ended did, by uid (kept for uids that are not current yet: the
    /// watch may see a pod fail before its create call returns).
    pub(crate) ended: HashMap<String, String>,
    /// The uids of the executor pods that exist, as the watch last saw them.
    pub(crate) live: HashSet<String>,
    /// Whether a list has filled `live` (before, it says nothing).
    pub(crate) synced: bool,
}

impl Pods {
    /// Records that the pod of uid `uid` ended, for `why` (the first reason is kept: a
    /// pod that failed and was then deleted is reported as failed).
    pub(crate) fn record_ended(&mut self, uid: &str, why: String) {
        if !self.ended.contains_key(uid) {
            debug!(uid, why, "Executor pod ended.");
            self.ended.insert(uid.to_string(), why);
        }
        // Uids of pods replaced long ago would otherwise accumulate.
        let bound = 64 + 4 * self.current.len();
        if self.ended.len() > bound {
            let current: HashSet<&str> = self.current.values().map(|c| c.uid.as_str()).collect();
            self.ended.retain(|uid, _| current.contains(uid.as_str()));
        }
    }

    /// Applies a pod the list or watch saw (added or modified).
    fn apply(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        self.live.insert(uid.to_string());
        if let Some(why) = ended_why(pod) {
            self.record_ended(uid, why);
        }
    }

    /// Applies a pod the watch saw deleted.
    fn delete(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        self.live.remove(uid);
        self.record_ended(uid, deleted_why(pod));
    }
}

/// [`Pods`] behind a mutex, with a condition variable signalled on every change.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) pods: Mutex<Pods>,
    pub(crate) changed: Condvar,
}

impl State {
    /// Changes the pods with `f`, then wakes whoever waits for a change.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Pods) -> R) -> R {
        let r = f(&mut self.pods.lock());
        self.changed.notify_all();
        r
    }

    /// Waits until `done` holds of the pods, or `deadline`; whether it held.
    pub(crate) fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&Pods) -> bool,
    ) -> bool {
        let mut pods = self.pods.lock();
        loop {
            if done(&pods) {
                return true;
            }
            if self.changed.wait_until(&mut pods, deadline).timed_out() {
                return done(&pods);
            }
        }
    }
}

/// The first wait after a failed list or watch; doubled after each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long one watch request lasts before the API server ends it (and it is made again
/// from the last resource version); the API server's own limit is 30 to 60 minutes.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// Lists and watches the pods of `api` matching `selector` into `state`, forever (the
/// runtime it runs on is dropped at `stop_all`). Errors are logged and the list and watch
/// start again after a backoff of 200 ms doubling to at most 10 s.
pub(crate) async fn watch_pods(api: Api<Pod>, selector: String, state: Arc<State>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        match list_and_watch(&api, &selector, &state, &mut backoff).await {
            Ok(()) => {}
            Err(e) => {
                warn!(selector, error = %e, retry_in_ms = backoff.as_millis() as u64, "Watch of the executor pods failed; it starts again.");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One list, then watches from its resource version until an error; `Ok` when the API
/// server said the version is too old (410 Gone: list again after the shortest backoff).
async fn list_and_watch(
    api: &Api<Pod>,
    selector: &str,
    state: &State,
    backoff: &mut Duration,
) -> kube::Result<()> {
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let mut version = list.metadata.resource_version.clone().unwrap_or_default();
    let listed: HashSet<String> = list
        .items
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let missing: Vec<Current> = state.update(|pods| {
        pods.live = listed.clone();
        pods.synced = true;
        list.items.iter().for_each(|p| pods.apply(p));
        pods.current
            .values()
            .filter(|c| !listed.contains(&c.uid) && !pods.ended.contains_key(&c.uid))
            .cloned()
            .collect()
    });
    // A slot's pod absent from the list was deleted while no watch ran, or created after the
    // list was taken: the pod itself says which.
    for current in missing {
        let found = api.get_opt(&current.name).await?;
        if found.as_ref().and_then(|p| p.metadata.uid.as_deref()) != Some(current.uid.as_str()) {
            state.update(|pods| {
                pods.record_ended(
                    &current.uid,
                    format!(
                        "pod {} deleted (gone when the watch started again)",
                        current.name
                    ),
                )
            });
        }
    }
    *backoff = BACKOFF_FIRST;
    loop {
        let params = WatchParams::default()
            .labels(selector)
            .timeout(WATCH_TIMEOUT_SECS);
        let mut events = api.watch(&params, &version).await?.boxed();
        while let Some(event) = events.next().await {
            match event? {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    remember_version(&mut version, &pod);
                    state.update(|pods| pods.apply(&pod));
                }
                WatchEvent::Deleted(pod) => {
                    remember_version(&mut version, &pod);
                    state.update(|pods| pods.delete(&pod));
                }
                WatchEvent::Bookmark(bookmark) => {
                    version = bookmark.metadata.resource_version;
                }
                WatchEvent::Error(status) if status.code == 410 => {
                    debug!(selector, "Watch resource version too old; listing again.");
                    return Ok(());
                }
                WatchEvent::Error(status) => return Err(kube::Error::Api(status)),
            }
        }
        // The API server ended the watch (its timeout): watch again from the last version.
    }
}

/// Keeps `pod`'s resource version as the one to watch from next.
fn remember_version(version: &mut String, pod: &Pod) {
    if let Some(v) = &pod.metadata.resource_version {
        version.clone_from(v);
    }
}
