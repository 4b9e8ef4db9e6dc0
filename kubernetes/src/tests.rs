//! The manager against a mocked API service, as `kube` documents it: a
//! `tower_test::mock::pair` behind `kube::Client::new`, whose requests the test reads and
//! answers with JSON. No cluster is involved.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::Client;
use rivulet_framework::cluster_manager::ClusterManager;
use serde_json::{json, Value};
use tower_test::mock;

use super::*;

/// How long a test waits for a request or a change before it fails.
const WAIT: Duration = Duration::from_secs(10);
const NS: &str = "streams";
const COORDINATOR: &str = "wordcount-0";
const COORDINATOR_UID: &str = "6f1c2a7e-0000-4000-8000-000000000001";
const SELECTOR: &str = "rivulet.dev/role=executor,rivulet.dev/coordinator=wordcount-0";

/// One request to the mocked API server, with its body read, and the way to answer it.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Vec<u8>,
    respond: mock::SendResponse<Response<Body>>,
}

impl Call {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn reply(self, status: u16, body: &Value) {
        self.reply_raw(status, serde_json::to_vec(body).unwrap());
    }

    fn reply_raw(self, status: u16, body: Vec<u8>) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        self.respond.send_response(response);
    }

    /// Answers a watch request with `events` (one JSON object a line), then ends it.
    fn reply_events(self, events: &[Value]) {
        let mut body = Vec::new();
        for e in events {
            body.extend(serde_json::to_vec(e).unwrap());
            body.push(b'\n');
        }
        self.reply_raw(200, body);
    }
}

/// The mocked API server: the list and watch requests of the manager's watch on one
/// channel, every other request on another, in the order they came.
struct ApiServer {
    calls: Receiver<Call>,
    watches: Receiver<Call>,
}

impl ApiServer {
    fn next(&self) -> Call {
        self.calls.recv_timeout(WAIT).expect("an API request")
    }

    fn next_watch(&self) -> Call {
        self.watches
            .recv_timeout(WAIT)
            .expect("a list or watch request")
    }
}

/// A client whose requests go to the returned mocked server. The mock's runtime (and
/// `kube`'s buffer task) runs on a thread of its own until the client is dropped.
fn mock_api() -> (Client, ApiServer) {
    let (calls_tx, calls) = std::sync::mpsc::channel();
    let (watches_tx, watches) = std::sync::mpsc::channel();
    let (client_tx, client_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
            client_tx.send(Client::new(service, NS)).unwrap();
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.unwrap().to_vec();
                let query = parts
                    .uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (k.to_string(), decode(v))
                    })
                    .collect();
                let call = Call {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    query,
                    body,
                    respond,
                };
                let of_watch = call.method == Method::GET && call.path.ends_with("/pods");
                let _ = if of_watch {
                    watches_tx.send(call)
                } else {
                    calls_tx.send(call)
                };
            }
        });
    });
    (
        client_rx.recv_timeout(WAIT).unwrap(),
        ApiServer { calls, watches },
    )
}

/// Percent-decodes a query value (the label selector's `=` and `,`).
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The coordinator pod as the API returns it: what `deploy/kubernetes/` makes, in short.
fn coordinator_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": COORDINATOR, "namespace": NS, "uid": COORDINATOR_UID, "resourceVersion": "100"},
        "spec": {
            "containers": [{
                "name": "coordinator",
                "image": "registry.example/rivulet-wordcount:0.1",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/wordcount_on_kubernetes"],
                "args": ["--input", "/data/in", "--checkpoint-dir", "/var/lib/rivulet/checkpoint", "--executor-pods", "2"],
                "env": [
                    {"name": "RUST_LOG", "value": "info"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "RIVULET_EXECUTOR_SLOT", "value": "stale"}
                ],
                "volumeMounts": [{"name": "checkpoint", "mountPath": "/var/lib/rivulet/checkpoint"}]
            }],
            "imagePullSecrets": [{"name": "registry"}],
            "serviceAccountName": "rivulet-coordinator"
        },
        "status": {"phase": "Running", "podIP": "10.1.2.3"}
    })
}

/// An executor pod as the API would return it, with `uid`, `phase` and `status` extras.
fn executor(slot: usize, uid: &str, version: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{COORDINATOR}-exec-{slot}"),
            "namespace": NS,
            "uid": uid,
            "resourceVersion": version,
            "labels": {"rivulet.dev/role": "executor", "rivulet.dev/coordinator": COORDINATOR, "rivulet.dev/slot": slot.to_string()}
        },
        "spec": {"containers": [{"name": "executor", "image": "registry.example/rivulet-wordcount:0.1"}]},
        "status": status
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn pod_list(items: Vec<Value>, version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version}, "items": items})
}

/// A manager built against the mocked server, its coordinator pod read, its watch listed
/// (no pods, version "1"), and the watch request that followed, not answered yet.
fn started(settings: KubernetesSettings) -> (Arc<KubernetesExecutors>, ApiServer, Call) {
    let (client, api) = mock_api();
    let building = std::thread::spawn(move || KubernetesExecutors::new(client, settings));
    let get = api.next();
    assert_eq!(get.method, Method::GET);
    assert_eq!(
        get.path,
        format!("/api/v1/namespaces/{NS}/pods/{COORDINATOR}")
    );
    get.reply(200, &coordinator_pod());
    let manager = Arc::new(building.join().unwrap().unwrap());
    let list = api.next_watch();
    assert_eq!(list.param("labelSelector"), Some(SELECTOR));
    assert_eq!(list.param("watch"), None);
    list.reply(200, &pod_list(vec![], "1"));
    let watch = api.next_watch();
    assert_eq!(watch.param("watch"), Some("true"));
    assert_eq!(watch.param("resourceVersion"), Some("1"));
    assert_eq!(watch.param("labelSelector"), Some(SELECTOR));
    (manager, api, watch)
}

fn settings() -> KubernetesSettings {
    KubernetesSettings::new(NS, COORDINATOR)
        .cpu_request(Some("500m"))
        .cpu_limit(Some("2"))
        .memory_request(Some("768Mi"))
        .memory_limit(Some("1Gi"))
        .label("team", "streams")
}

/// Starts `slot` through the mocked server: the previous pod's delete (answered
/// `previous`), the create (answered with `uid`); the created pod as the request sent it.
fn start(
    manager: &Arc<KubernetesExecutors>,
    api: &ApiServer,
    slot: usize,
    uid: &str,
    previous: (u16, Value),
) -> Pod {
    let m = manager.clone();
    let starting = std::thread::spawn(move || m.start_executor(slot, "10.1.2.3:7077"));
    let delete = api.next();
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(
        delete.path,
        format!("/api/v1/namespaces/{NS}/pods/{COORDINATOR}-exec-{slot}")
    );
    assert_eq!(delete.body_json()["gracePeriodSeconds"], json!(0));
    delete.reply(previous.0, &previous.1);
    let create = api.next();
    assert_eq!(create.method, Method::POST);
    assert_eq!(create.path, format!("/api/v1/namespaces/{NS}/pods"));
    let sent: Pod = serde_json::from_slice(&create.body).unwrap();
    let mut answer = create.body_json();
    answer["metadata"]["uid"] = json!(uid);
    answer["metadata"]["resourceVersion"] = json!("2");
    answer["status"] = json!({"phase": "Pending"});
    create.reply(201, &answer);
    starting.join().unwrap().unwrap();
    sent
}

fn not_found(slot: usize) -> (u16, Value) {
    (
        404,
        status(
            404,
            "NotFound",
            &format!("pods \"{COORDINATOR}-exec-{slot}\" not found"),
        ),
    )
}

/// Waits (on the state's condition variable, no polling) until `slots`' report is not
/// empty; the report.
fn wait_ended(manager: &KubernetesExecutors, slot: usize) -> String {
    let deadline = Instant::now() + WAIT;
    assert!(
        manager.state.wait_until(deadline, |pods| {
            pods.current
                .get(&slot)
                .is_some_and(|c| pods.ended.contains_key(&c.uid))
        }),
        "slot {slot} was not reported ended"
    );
    let ended = manager.ended(&[slot]);
    assert_eq!(ended.len(), 1);
    ended[0].1.clone()
}

#[test]
fn the_executor_pod_is_the_coordinators_container_with_the_executor_environment() {
    let (manager, api, _watch) = started(settings());
    let sent = start(&manager, &api, 1, "uid-1", not_found(1));
    // Written by hand from the coordinator pod above and the settings.
    let expected: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "wordcount-0-exec-1",
            "namespace": NS,
            "labels": {
                "app.kubernetes.io/name": "rivulet",
                "rivulet.dev/role": "executor",
                "rivulet.dev/coordinator": "wordcount-0",
                "rivulet.dev/slot": "1",
                "team": "streams"
            },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": "wordcount-0",
                "uid": COORDINATOR_UID, "controller": true
            }]
        },
        "spec": {
            "restartPolicy": "Never",
            "imagePullSecrets": [{"name": "registry"}],
            "containers": [{
                "name": "executor",
                "image": "registry.example/rivulet-wordcount:0.1",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/wordcount_on_kubernetes"],
                "args": ["--input", "/data/in", "--checkpoint-dir", "/var/lib/rivulet/checkpoint", "--executor-pods", "2"],
                "env": [
                    {"name": "RUST_LOG", "value": "info"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "RIVULET_EXECUTOR_OF", "value": "10.1.2.3:7077"},
                    {"name": "RIVULET_EXECUTOR_SLOT", "value": "1"}
                ],
                "resources": {
                    "requests": {"cpu": "500m", "memory": "768Mi"},
                    "limits": {"cpu": "2", "memory": "1Gi"}
                }
            }]
        }
    }))
    .unwrap();
    assert_eq!(sent, expected);
    // The checkpoint volume stays the coordinator's, and so does its service account.
    let spec = sent.spec.unwrap();
    assert!(spec.volumes.is_none() && spec.containers[0].volume_mounts.is_none());
    assert!(spec.service_account_name.is_none());
    assert!(manager.ended(&[0, 1]).is_empty());
}

#[test]
fn the_image_setting_replaces_the_coordinators() {
    let (manager, api, _watch) = started(settings().image("registry.example/other:2"));
    let sent = start(&manager, &api, 0, "uid-0", not_found(0));
    assert_eq!(
        sent.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.example/other:2")
    );
}

#[test]
fn a_failed_pod_is_ended_with_its_reason_and_a_new_start_clears_it() {
    let (manager, api, watch) = started(settings());
    start(&manager, &api, 0, "uid-0", not_found(0));
    assert!(manager.ended(&[0]).is_empty());
    let failed = executor(
        0,
        "uid-0",
        "7",
        json!({
            "phase": "Failed",
            "reason": "Evicted",
            "containerStatuses": [{"name": "executor", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
        }),
    );
    watch.reply_events(&[
        json!({"type": "ADDED", "object": executor(0, "uid-0", "3", json!({"phase": "Running"}))}),
        json!({"type": "MODIFIED", "object": failed}),
    ]);
    let why = wait_ended(&manager, 0);
    assert!(why.contains("wordcount-0-exec-0 phase Failed"), "{why}");
    assert!(why.contains("reason Evicted"), "{why}");
    assert!(why.contains("exited with code 137 (OOMKilled)"), "{why}");
    // Reported again until started anew.
    assert_eq!(manager.ended(&[0, 1]), vec![(0, why)]);
    // The watch goes on from the last event's version.
    let next = api.next_watch();
    assert_eq!(next.param("resourceVersion"), Some("7"));
    // A new pod for the slot: the old one is deleted first, and the report is cleared.
    start(&manager, &api, 0, "uid-0b", (200, failed_pod_json()));
    assert!(manager.ended(&[0]).is_empty());
    // The old pod's deletion, seen after, does not end the new one.
    next.reply_events(&[
        json!({"type": "DELETED", "object": executor(0, "uid-0", "9", json!({"phase": "Failed"}))}),
    ]);
    let again = api.next_watch();
    assert_eq!(again.param("resourceVersion"), Some("9"));
    assert!(manager.ended(&[0]).is_empty());
}

fn failed_pod_json() -> Value {
    executor(0, "uid-0", "8", json!({"phase": "Failed"}))
}

#[test]
fn a_deleted_pod_is_ended() {
    let (manager, api, watch) = started(settings());
    start(&manager, &api, 0, "uid-0", not_found(0));
    start(&manager, &api, 1, "uid-1", not_found(1));
    watch.reply_events(&[json!({"type": "DELETED", "object": executor(1, "uid-1", "4", json!({"phase": "Running"}))})]);
    let why = wait_ended(&manager, 1);
    assert!(
        why.contains("pod wordcount-0-exec-1 deleted (last phase Running)"),
        "{why}"
    );
    assert_eq!(manager.ended(&[0, 1]), vec![(1, why)]);
}

#[test]
fn a_pod_gone_while_the_watch_was_down_is_ended_after_the_relist() {
    let (manager, api, watch) = started(settings());
    start(&manager, &api, 0, "uid-0", not_found(0));
    // The watch fails; the manager lists again (after its shortest backoff).
    watch.reply(500, &status(500, "InternalError", "etcd leader changed"));
    let list = api.next_watch();
    assert_eq!(list.param("watch"), None);
    list.reply(200, &pod_list(vec![], "20"));
    // The slot's pod is not in the list: the manager asks for it, and it is gone.
    let get = api.next();
    assert_eq!(get.method, Method::GET);
    assert_eq!(
        get.path,
        format!("/api/v1/namespaces/{NS}/pods/{COORDINATOR}-exec-0")
    );
    get.reply(404, &not_found(0).1);
    let why = wait_ended(&manager, 0);
    assert!(why.contains("gone when the watch started again"), "{why}");
    let watch = api.next_watch();
    assert_eq!(watch.param("resourceVersion"), Some("20"));
}

#[test]
fn kill_executor_deletes_the_pod_without_grace() {
    let (manager, api, _watch) = started(settings());
    start(&manager, &api, 0, "uid-0", not_found(0));
    let m = manager.clone();
    let killing = std::thread::spawn(move || m.kill_executor(0));
    let delete = api.next();
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(
        delete.path,
        format!("/api/v1/namespaces/{NS}/pods/{COORDINATOR}-exec-0")
    );
    let body = delete.body_json();
    assert_eq!(body["gracePeriodSeconds"], json!(0));
    assert_eq!(body["preconditions"]["uid"], json!("uid-0"));
    delete.reply(200, &executor(0, "uid-0", "5", json!({"phase": "Running"})));
    killing.join().unwrap().unwrap();
    let ended = manager.ended(&[0]);
    assert_eq!(ended.len(), 1);
    assert!(ended[0].1.contains("kill_executor"), "{}", ended[0].1);
    // A slot without a pod of this manager: an error, and no request.
    let e = manager.kill_executor(3).unwrap_err().to_string();
    assert!(e.contains("slot 3") && e.contains(NS), "{e}");
    assert!(matches!(
        api.calls.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    ));
}

#[test]
fn stop_all_deletes_by_label_selector_and_waits_for_the_pods_to_go() {
    let (manager, api, watch) = started(settings());
    start(&manager, &api, 0, "uid-0", not_found(0));
    let m = manager.clone();
    let stopping = std::thread::spawn(move || m.stop_all(Duration::from_millis(1500)));
    let delete = api.next();
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(delete.path, format!("/api/v1/namespaces/{NS}/pods"));
    assert_eq!(delete.param("labelSelector"), Some(SELECTOR));
    // 1.5 s rounded up to whole seconds.
    assert_eq!(delete.body_json()["gracePeriodSeconds"], json!(2));
    delete.reply(200, &pod_list(vec![], "30"));
    // The pod goes: the watch sees it, and stop_all returns without a second delete.
    watch.reply_events(&[json!({"type": "DELETED", "object": executor(0, "uid-0", "31", json!({"phase": "Succeeded"}))})]);
    stopping.join().unwrap();
    assert!(matches!(
        api.calls.try_recv(),
        Err(std::sync::mpsc::TryRecvError::Empty | std::sync::mpsc::TryRecvError::Disconnected)
    ));
    // The runtime is gone with the watch: later calls fail clearly; a second stop is a no-op.
    let e = manager
        .start_executor(0, "10.1.2.3:7077")
        .unwrap_err()
        .to_string();
    assert!(e.contains("stopped"), "{e}");
    manager.stop_all(Duration::from_secs(1));
}

#[test]
fn stop_all_forces_what_is_left_after_the_grace_period() {
    let (manager, api, _watch) = started(settings());
    start(&manager, &api, 0, "uid-0", not_found(0));
    let m = manager.clone();
    let stopping = std::thread::spawn(move || m.stop_all(Duration::from_millis(100)));
    let graceful = api.next();
    assert_eq!(graceful.body_json()["gracePeriodSeconds"], json!(1));
    graceful.reply(200, &pod_list(vec![], "30"));
    // No watch event: after the grace period, a delete without grace.
    let forced = api.next();
    assert_eq!(forced.method, Method::DELETE);
    assert_eq!(forced.param("labelSelector"), Some(SELECTOR));
    assert_eq!(forced.body_json()["gracePeriodSeconds"], json!(0));
    forced.reply(200, &pod_list(vec![], "31"));
    stopping.join().unwrap();
}

#[test]
fn a_forbidden_create_names_the_pod_the_namespace_and_the_verbs() {
    let (manager, api, _watch) = started(settings());
    let m = manager.clone();
    let starting = std::thread::spawn(move || m.start_executor(2, "10.1.2.3:7077"));
    api.next().reply(404, &not_found(2).1);
    let create = api.next();
    assert_eq!(create.method, Method::POST);
    create.reply(
        403,
        &status(
            403,
            "Forbidden",
            "pods is forbidden: User \"system:serviceaccount:streams:default\" cannot create resource \"pods\"",
        ),
    );
    let e = starting.join().unwrap().unwrap_err();
    assert!(matches!(e, Error::Config(_)));
    let e = e.to_string();
    assert!(
        e.contains("create the executor pod wordcount-0-exec-2 in namespace streams"),
        "{e}"
    );
    assert!(
        e.contains("403 Forbidden") && e.contains("cannot create resource"),
        "{e}"
    );
    assert!(e.contains("deletecollection"), "{e}");
    assert!(manager.ended(&[2]).is_empty());
}

#[test]
fn a_missing_coordinator_pod_is_a_clear_error() {
    let (client, api) = mock_api();
    let building = std::thread::spawn(move || KubernetesExecutors::new(client, settings()));
    api.next().reply(
        404,
        &status(404, "NotFound", "pods \"wordcount-0\" not found"),
    );
    let e = building.join().unwrap().unwrap_err().to_string();
    assert!(
        e.contains("read the coordinator pod wordcount-0 in namespace streams"),
        "{e}"
    );
    assert!(e.contains("404"), "{e}");
}

#[test]
fn the_downward_api_variables_are_required_by_name() {
    let e = KubernetesSettings::from_lookup(|k| (k == ENV_POD_NAME).then(|| "p".to_string()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("POD_NAMESPACE") && e.contains("metadata.namespace"),
        "{e}"
    );
    let e = KubernetesSettings::from_lookup(|k| (k == ENV_POD_NAMESPACE).then(|| "ns".to_string()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("POD_NAME ") && e.contains("metadata.name"),
        "{e}"
    );
    let s = KubernetesSettings::from_lookup(|k| {
        Some(if k == ENV_POD_NAME { "p" } else { "ns" }.into())
    })
    .unwrap();
    assert_eq!(s, KubernetesSettings::new("ns", "p"));
    assert!(KubernetesSettings::new("ns", "x".repeat(64))
        .validate()
        .is_err());
}
