//! Executor pods on Kubernetes for rivulet, as Spark on Kubernetes runs its executors: the
//! coordinator (Spark's driver), itself a pod, creates one pod per executor slot from its
//! own image, command and arguments, watches them, and treats a pod that failed, completed
//! or was deleted as a lost executor, which the coordinator replaces with a new pod.
//!
//! [`KubernetesExecutors`] is a [`ClusterManager`]: install it with
//! [`StreamingConfig::cluster_manager`](rivulet_framework::config::StreamingConfig::cluster_manager),
//! telling the executors to connect to the coordinator pod's IP:
//!
//! ```no_run
//! # fn demo() -> rivulet_framework::Result<()> {
//! use std::sync::Arc;
//! use rivulet_framework::config::StreamingConfig;
//! use rivulet_kubernetes::KubernetesExecutors;
//!
//! let pod_ip = std::env::var("POD_IP").unwrap_or_default();
//! let executors = KubernetesExecutors::from_environment()?;
//! let config = StreamingConfig::new().cluster_manager("0.0.0.0:7077", pod_ip, 4, Arc::new(executors));
//! # let _ = config; Ok(()) }
//! ```
//!
//! The pods: `<coordinator pod>-exec-<slot>`, labelled [`LABEL_NAME`]`=rivulet`,
//! [`LABEL_ROLE`]`=executor`, [`LABEL_COORDINATOR`]`=<coordinator pod>` and
//! [`LABEL_SLOT`]`=<slot>` (plus the settings' own labels), owned by the coordinator pod (so
//! that deleting it deletes them), with `restartPolicy: Never` and the settings' resource
//! requests and limits. The coordinator's service account needs the [`POD_VERBS`] on pods
//! in its namespace (`deploy/kubernetes/` has the Role).

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::{Api, Client};
use parking_lot::Mutex;
use rivulet_framework::cluster_manager::ClusterManager;
use rivulet_framework::{Error, Result};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tracing::{info, warn};

mod pod;
#[cfg(test)]
mod tests;
mod watch;

use pod::{executor_pod, executor_pod_name, selector, CoordinatorPod};
use watch::{Current, State};

/// The label every executor pod has, with the value `rivulet` (the recommended
/// `app.kubernetes.io/name`).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// The value of [`LABEL_NAME`].
pub const NAME_VALUE: &str = "rivulet";
/// The label naming a pod's role; executor pods have [`ROLE_EXECUTOR`] (Spark:
/// `spark-role=executor`).
pub const LABEL_ROLE: &str = "rivulet.dev/role";
/// The value of [`LABEL_ROLE`] on executor pods.
pub const ROLE_EXECUTOR: &str = "executor";
/// The label naming the coordinator pod an executor pod belongs to (Spark: `spark-app-selector`).
pub const LABEL_COORDINATOR: &str = "rivulet.dev/coordinator";
/// The label naming the slot (0-based) an executor pod fills (Spark: `spark-exec-id`).
pub const LABEL_SLOT: &str = "rivulet.dev/slot";
/// The verbs on `pods` the coordinator's service account needs, all of which this crate
/// calls: `get` (the coordinator pod, a pod missing from a list), `list` and `watch` (the
/// watch), `create`, `delete` (a slot's previous pod, `kill_executor`) and `deletecollection`
/// (`stop_all`).
pub const POD_VERBS: &[&str] = &[
    "create",
    "get",
    "list",
    "watch",
    "delete",
    "deletecollection",
];
/// The environment variable naming the coordinator's own pod (from the downward API:
/// `fieldRef: metadata.name`; Spark: `spark.kubernetes.driver.pod.name`).
pub const ENV_POD_NAME: &str = "POD_NAME";
/// The environment variable naming the coordinator pod's namespace (downward API:
/// `fieldRef: metadata.namespace`).
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";

/// How long one call of the manager (its API requests) may take before it fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `start_executor` retries creating a pod whose previous one, deleted, is still
/// there under the same name.
const CREATE_RETRIES: u32 = 50;
/// The wait between those retries.
const CREATE_RETRY_WAIT: Duration = Duration::from_millis(100);

/// Where the executor pods go and what they get (Spark: the `spark.kubernetes.*` and
/// `spark.executor.*` settings). Built with [`new`](KubernetesSettings::new) or
/// [`from_env`](KubernetesSettings::from_env) and chained setters.
///
/// By default an executor pod requests 1 cpu and 1 GiB of memory and is limited to 1 GiB of
/// memory and no cpu limit (Spark: `spark.executor.cores=1`, memory limit = request), runs
/// the coordinator pod's first container's image, and has no labels beyond its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesSettings {
    namespace: String,
    coordinator_pod: String,
    container: Option<String>,
    image: Option<String>,
    cpu_request: Option<String>,
    cpu_limit: Option<String>,
    memory_request: Option<String>,
    memory_limit: Option<String>,
    labels: BTreeMap<String, String>,
}

impl KubernetesSettings {
    /// Executor pods in `namespace` for the coordinator pod named `coordinator_pod` (which
    /// must be in that namespace: it is read for its uid, image, command, args and
    /// environment, and owns the executor pods).
    pub fn new(namespace: impl Into<String>, coordinator_pod: impl Into<String>) -> Self {
        KubernetesSettings {
            namespace: namespace.into(),
            coordinator_pod: coordinator_pod.into(),
            container: None,
            image: None,
            cpu_request: Some("1".into()),
            cpu_limit: None,
            memory_request: Some("1Gi".into()),
            memory_limit: Some("1Gi".into()),
            labels: BTreeMap::new(),
        }
    }

    /// The settings of a coordinator running in a pod whose spec sets [`ENV_POD_NAME`] and
    /// [`ENV_POD_NAMESPACE`] from the downward API (`deploy/kubernetes/` does).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable that is unset or empty.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading the variables through `var` (a name to
    /// its value; `None` or empty for an unset one), for programs that read their
    /// environment elsewhere, and tests.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable that is unset or empty.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str, field: &str| {
            var(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::Config(format!(
                    "kubernetes: environment variable {name} is not set; the coordinator's pod spec must set it from the downward API (env: - name: {name}, valueFrom: fieldRef: fieldPath: {field})"
                ))
            })
        };
        Ok(Self::new(
            get(ENV_POD_NAMESPACE, "metadata.namespace")?,
            get(ENV_POD_NAME, "metadata.name")?,
        ))
    }

    /// The coordinator pod's container whose image, command, args and environment the
    /// executors run (default: its first container).
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// The executors' image instead of the coordinator container's (Spark:
    /// `spark.kubernetes.executor.container.image`); it must hold the same program.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// The cpu an executor pod requests, a Kubernetes quantity such as `"500m"` or `"2"`
    /// (Spark: `spark.kubernetes.executor.request.cores`); `None`: no request.
    pub fn cpu_request(mut self, quantity: Option<&str>) -> Self {
        self.cpu_request = quantity.map(str::to_string);
        self
    }

    /// The cpu an executor pod may use (Spark: `spark.kubernetes.executor.limit.cores`);
    /// `None` (the default): no limit.
    pub fn cpu_limit(mut self, quantity: Option<&str>) -> Self {
        self.cpu_limit = quantity.map(str::to_string);
        self
    }

    /// The memory an executor pod requests, such as `"512Mi"` or `"2Gi"`; `None`: no
    /// request.
    pub fn memory_request(mut self, quantity: Option<&str>) -> Self {
        self.memory_request = quantity.map(str::to_string);
        self
    }

    /// The memory an executor pod may use before it is OOM-killed; `None`: no limit.
    pub fn memory_limit(mut self, quantity: Option<&str>) -> Self {
        self.memory_limit = quantity.map(str::to_string);
        self
    }

    /// A label added to every executor pod (Spark: `spark.kubernetes.executor.label.*`).
    /// The crate's own labels ([`LABEL_NAME`], [`LABEL_ROLE`], [`LABEL_COORDINATOR`],
    /// [`LABEL_SLOT`]) take precedence over one of the same key.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The namespace of the coordinator pod and its executor pods.
    pub fn namespace_name(&self) -> &str {
        &self.namespace
    }

    /// The coordinator pod's name.
    pub fn coordinator_pod_name(&self) -> &str {
        &self.coordinator_pod
    }

    /// Checks what the API would reject later with a less clear error.
    fn validate(&self) -> Result<()> {
        if self.namespace.is_empty() || self.coordinator_pod.is_empty() {
            return Err(Error::Config(format!(
                "kubernetes: the namespace ({:?}) and the coordinator pod's name ({:?}) must not be empty",
                self.namespace, self.coordinator_pod
            )));
        }
        // The name is a label value (63 characters at most).
        if self.coordinator_pod.len() > 63 {
            return Err(Error::Config(format!(
                "kubernetes: the coordinator pod's name {} is longer than 63 characters, the longest label value",
                self.coordinator_pod
            )));
        }
        Ok(())
    }
}

/// The executor pods of one coordinator pod (Spark: `KubernetesClusterSchedulerBackend`
/// with `ExecutorPodsAllocator` and the pod watch): a [`ClusterManager`] that creates a pod
/// per slot from the coordinator pod's own container, watches them on a thread of its own,
/// and reports a pod that failed, completed or was deleted as an ended executor.
///
/// Its API calls and the watch run on a tokio runtime on a thread of its own, so its
/// synchronous methods can be called from any thread, the actix one included; each call
/// waits for its requests (10 s at most). [`ended`](ClusterManager::ended) reads what the
/// watch last saw, without a request.
pub struct KubernetesExecutors {
    settings: KubernetesSettings,
    coordinator: CoordinatorPod,
    api: Api<Pod>,
    state: Arc<State>,
    runtime: Handle,
    /// Ends the runtime's thread (and with it the watch); taken by `stop_all`.
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for KubernetesExecutors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesExecutors")
            .field("settings", &self.settings)
            .field("coordinator_uid", &self.coordinator.uid)
            .finish_non_exhaustive()
    }
}

impl KubernetesExecutors {
    /// The executor pods of the coordinator pod that runs this program: the settings from
    /// [`KubernetesSettings::from_env`], the client configured as `kube` infers it (in a
    /// pod: its service account's token and the cluster's CA), created on the manager's own
    /// runtime.
    ///
    /// # Errors
    /// [`Error::Config`] naming the missing environment variable, when no client
    /// configuration can be inferred, or as [`with_settings`](Self::with_settings).
    pub fn from_environment() -> Result<Self> {
        Self::with_settings(KubernetesSettings::from_env()?)
    }

    /// The executor pods `settings` describe, through a client configured as `kube` infers
    /// it (in a pod: its service account; elsewhere: the kubeconfig), created on the
    /// manager's own runtime.
    ///
    /// # Errors
    /// [`Error::Config`] when no client configuration can be inferred, or as
    /// [`new`](Self::new).
    pub fn with_settings(settings: KubernetesSettings) -> Result<Self> {
        settings.validate()?;
        let runtime = RuntimeThread::start()?;
        let client = call(
            &runtime.handle,
            "configure the Kubernetes client",
            async move {
                Client::try_default().await.map_err(|e| {
                    Error::Config(format!(
                        "kubernetes: cannot configure the client (in-cluster service account or kubeconfig): {e}"
                    ))
                })
            },
        )?;
        Self::build(runtime, client, settings)
    }

    /// The executor pods `settings` describe, through `client`. Reads the coordinator pod
    /// (its uid, image, command, args, environment) and starts the watch of its executor
    /// pods.
    ///
    /// `client` sends its requests through a task on the tokio runtime it was created on
    /// (`kube` buffers them there): that runtime must keep running on threads other than the
    /// one calling the manager. A client created inside the actix system that then calls the
    /// manager would wait for itself; [`with_settings`](Self::with_settings) and
    /// [`from_environment`](Self::from_environment) create theirs on the manager's runtime.
    ///
    /// # Errors
    /// [`Error::Config`] naming the pod and namespace when the coordinator pod cannot be
    /// read (missing, forbidden: the service account needs `get` on pods, see
    /// [`POD_VERBS`]), has no uid or no container, or the settings are invalid (an empty
    /// name, a coordinator pod name longer than 63 characters).
    pub fn new(client: Client, settings: KubernetesSettings) -> Result<Self> {
        settings.validate()?;
        Self::build(RuntimeThread::start()?, client, settings)
    }

    fn build(runtime: RuntimeThread, client: Client, settings: KubernetesSettings) -> Result<Self> {
        let api: Api<Pod> = Api::namespaced(client, &settings.namespace);
        let coordinator = {
            let api = api.clone();
            let (name, namespace) = (settings.coordinator_pod.clone(), settings.namespace.clone());
            call(&runtime.handle, "read the coordinator pod", async move {
                api.get(&name)
                    .await
                    .map_err(|e| api_error("read the coordinator", &name, &namespace, &e))
            })?
        };
        let coordinator = CoordinatorPod::from_pod(coordinator, &settings)?;
        let state = Arc::new(State::default());
        runtime.handle.spawn(watch::watch_pods(
            api.clone(),
            selector(&settings),
            state.clone(),
        ));
        info!(
            namespace = settings.namespace,
            coordinator = settings.coordinator_pod,
            "Kubernetes executor pods: watching."
        );
        Ok(KubernetesExecutors {
            settings,
            coordinator,
            api,
            state,
            runtime: runtime.handle,
            shutdown: Mutex::new(Some(runtime.shutdown)),
            thread: Mutex::new(Some(runtime.thread)),
        })
    }

    /// The settings the pods are made with.
    pub fn settings(&self) -> &KubernetesSettings {
        &self.settings
    }

    /// Runs `f` on the manager's runtime and waits for it (10 s at most).
    fn call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        call(&self.runtime, what, f)
    }

    /// Deletes this coordinator's executor pods, with `grace` seconds to stop.
    fn delete_all(&self, grace: u32) -> Result<()> {
        let api = self.api.clone();
        let sel = selector(&self.settings);
        let namespace = self.settings.namespace.clone();
        self.call("delete the executor pods", async move {
            let params = DeleteParams::background().grace_period(grace);
            api.delete_collection(&params, &ListParams::default().labels(&sel))
                .await
                .map(drop)
                .map_err(|e| {
                    api_error(
                        "delete the executor",
                        &format!("pods {sel}"),
                        &namespace,
                        &e,
                    )
                })
        })
    }
}

impl ClusterManager for KubernetesExecutors {
    /// `"kubernetes"`.
    fn name(&self) -> &str {
        "kubernetes"
    }

    /// Creates pod `<coordinator pod>-exec-<slot>` (see the crate's documentation for its
    /// spec), deleting a previous pod of that name first (without grace: a lost executor
    /// may still run, cut off) and retrying the create while that pod is still going away
    /// (5 s at most). The slot's earlier end, if any, is forgotten.
    ///
    /// # Errors
    /// [`Error::Config`] naming the pod and namespace when the API refuses the delete or
    /// create (e.g. 403 Forbidden: the service account lacks a verb of [`POD_VERBS`]; a
    /// quota exceeded; an invalid resource quantity), or does not answer within 10 s, or
    /// after [`stop_all`](ClusterManager::stop_all).
    fn start_executor(&self, slot: usize, coordinator: &str) -> Result<()> {
        let name = executor_pod_name(&self.settings.coordinator_pod, slot);
        let namespace = self.settings.namespace.clone();
        let spec = executor_pod(&self.settings, &self.coordinator, slot, coordinator);
        let api = self.api.clone();
        let created = {
            let (name, namespace) = (name.clone(), namespace.clone());
            self.call("create an executor pod", async move {
                match api
                    .delete(&name, &DeleteParams::background().grace_period(0))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(e) => return Err(api_error("delete the previous", &name, &namespace, &e)),
                }
                let mut retries = 0;
                loop {
                    match api.create(&PostParams::default(), &spec).await {
                        Ok(pod) => return Ok(pod),
                        Err(kube::Error::Api(s))
                            if s.is_already_exists() && retries < CREATE_RETRIES =>
                        {
                            retries += 1;
                            tokio::time::sleep(CREATE_RETRY_WAIT).await;
                        }
                        Err(e) => {
                            return Err(api_error("create the executor", &name, &namespace, &e))
                        }
                    }
                }
            })?
        };
        let uid = created.metadata.uid.ok_or_else(|| {
            Error::Config(format!(
                "kubernetes: the API created executor pod {name} in namespace {namespace} without a uid"
            ))
        })?;
        info!(slot, pod = name, uid, "Executor pod created.");
        self.state.update(|pods| {
            // The pod exists (unless the watch already saw it go): `stop_all` waits for it.
            if !pods.ended.contains_key(&uid) {
                pods.live.insert(uid.clone());
            }
            if let Some(old) = pods.current.insert(slot, Current { name, uid }) {
                pods.ended.remove(&old.uid);
            }
        });
        Ok(())
    }

    /// Of `slots`, those whose current pod failed (phase `Failed`), completed (phase
    /// `Succeeded`), is being deleted or was deleted, as the watch last saw, each with the
    /// phase, the pod's reason and the container's exit code when known. Reads the watch's
    /// cache only (Spark: the lifecycle manager's snapshot).
    fn ended(&self, slots: &[usize]) -> Vec<(usize, String)> {
        let pods = self.state.pods.lock();
        slots
            .iter()
            .filter_map(|&slot| {
                let current = pods.current.get(&slot)?;
                Some((slot, pods.ended.get(&current.uid)?.clone()))
            })
            .collect()
    }

    /// Deletes the slot's pod with a grace period of 0 (the kubelet kills its container at
    /// once), only if it is still the pod this manager created for the slot (a uid
    /// precondition), and reports the slot as ended from then on.
    ///
    /// # Errors
    /// [`Error::Config`] when the slot has no pod this manager created, or the API refuses
    /// the delete (naming the pod and namespace).
    fn kill_executor(&self, slot: usize) -> Result<()> {
        let namespace = self.settings.namespace.clone();
        let current = self.state.pods.lock().current.get(&slot).cloned().ok_or_else(|| {
            Error::Config(format!(
                "kill_executor: executor slot {slot} has no pod this coordinator created (namespace {namespace})"
            ))
        })?;
        warn!(
            slot,
            pod = current.name,
            "Deleting executor pod without grace (fault injection)."
        );
        let api = self.api.clone();
        {
            let current = current.clone();
            self.call("delete an executor pod", async move {
                let mut params = DeleteParams::background().grace_period(0);
                params.preconditions = Some(Preconditions {
                    uid: Some(current.uid.clone()),
                    resource_version: None,
                });
                match api.delete(&current.name, &params).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                    Err(e) => Err(api_error(
                        "delete the executor",
                        &current.name,
                        &namespace,
                        &e,
                    )),
                }
            })?;
        }
        self.state.update(|pods| {
            pods.live.remove(&current.uid);
            pods.record_ended(
                &current.uid,
                format!(
                    "pod {} deleted by kill_executor (grace period 0)",
                    current.name
                ),
            )
        });
        Ok(())
    }

    /// Deletes every executor pod of this coordinator (by label selector) with `grace`
    /// (rounded up to whole seconds) to stop, waits up to `grace` for the watch to see them
    /// gone, deletes what is left without grace, then ends the watch and the manager's
    /// runtime. Errors are logged: the pods are owned by the coordinator pod and go with it
    /// in any case. A second call does nothing.
    fn stop_all(&self, grace: Duration) {
        let Some(shutdown) = self.shutdown.lock().take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        if let Err(e) = self.delete_all(u32::try_from(seconds).unwrap_or(u32::MAX)) {
            warn!(error = %e, "Cannot delete the executor pods at the stop.");
        }
        if !self
            .state
            .wait_until(deadline, |pods| pods.synced && pods.live.is_empty())
        {
            warn!(
                grace_ms = grace.as_millis() as u64,
                "Executor pods still there after the grace period; deleting them without grace."
            );
            if let Err(e) = self.delete_all(0) {
                warn!(error = %e, "Cannot delete the executor pods without grace.");
            }
        }
        let _ = shutdown.send(());
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for KubernetesExecutors {
    /// Ends the runtime's thread (without waiting for it: the drop may happen on an async
    /// thread). The pods stay: `stop_all` deletes them, or the coordinator pod's deletion.
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.lock().take() {
            let _ = shutdown.send(());
        }
    }
}

/// The manager's runtime: a current-thread tokio runtime driven by a thread of its own
/// until `shutdown` is sent (then dropped there, which ends the watch).
struct RuntimeThread {
    handle: Handle,
    shutdown: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl RuntimeThread {
    /// Starts the thread and its runtime.
    ///
    /// # Errors
    /// [`Error::Config`] when the thread or the runtime cannot be started.
    fn start() -> Result<RuntimeThread> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rivulet-kubernetes".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                // Spawned tasks (the watch, the calls) run while this waits.
                let _ = runtime.block_on(shutdown_rx);
            })
            .map_err(|e| Error::Config(format!("kubernetes: cannot start its thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|e| Error::Config(format!("kubernetes: cannot start its runtime: {e}")))?;
        Ok(RuntimeThread {
            handle,
            shutdown,
            thread,
        })
    }
}

/// Runs `f` on `runtime` and waits for its result, [`CALL_TIMEOUT`] at most.
fn call<T: Send + 'static>(
    runtime: &Handle,
    what: &str,
    f: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(tokio::time::timeout(CALL_TIMEOUT, f).await);
    });
    match rx.recv() {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::Config(format!(
            "kubernetes: cannot {what}: the API server did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
        Err(_) => Err(Error::Config(format!(
            "kubernetes: cannot {what}: the manager was stopped (stop_all)"
        ))),
    }
}

/// An API error as rivulet's, naming what was done to which pod in which namespace, with
/// the API's message, code and reason.
fn api_error(action: &str, name: &str, namespace: &str, e: &kube::Error) -> Error {
    let (detail, hint) = match e {
        kube::Error::Api(status) => {
            let hint = if status.is_forbidden() {
                format!(
                    "; the coordinator's service account needs these verbs on pods in namespace {namespace}: {} (deploy/kubernetes/role.yaml)",
                    POD_VERBS.join(", ")
                )
            } else {
                String::new()
            };
            (
                format!("{} ({} {})", status.message, status.code, status.reason),
                hint,
            )
        }
        other => (other.to_string(), String::new()),
    };
    Error::Config(format!(
        "kubernetes: cannot {action} pod {name} in namespace {namespace}: {detail}{hint}"
    ))
}
