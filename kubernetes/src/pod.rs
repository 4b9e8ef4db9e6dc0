//! The executor pod's spec, built from the coordinator pod (Spark:
//! `BasicExecutorFeatureStep` over the driver pod read through `spark.kubernetes.driver.pod.name`),
//! and what a pod's status says about why it ended.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rivulet_framework::cluster_manager::{ENV_COORDINATOR, ENV_SLOT};
use rivulet_framework::{Error, Result};

use crate::{
    KubernetesSettings, LABEL_COORDINATOR, LABEL_NAME, LABEL_ROLE, LABEL_SLOT, NAME_VALUE,
    ROLE_EXECUTOR,
};

/// What an executor pod takes from the coordinator pod, read once through the API.
#[derive(Clone, Debug)]
pub(crate) struct CoordinatorPod {
    /// The pod's uid: the executor pods' owner.
    pub(crate) uid: String,
    /// The coordinator's container, whose image, command, args and environment an executor
    /// runs.
    pub(crate) container: Container,
    /// The pod's image pull secrets (an executor pulls the same image).
    pub(crate) image_pull_secrets: Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>>,
}

impl CoordinatorPod {
    /// Reads what executors need from the coordinator pod `pod` as the API returned it.
    ///
    /// # Errors
    /// [`Error::Config`] naming the pod and namespace when it has no uid, no spec, or no
    /// container of the configured name (or none at all).
    pub(crate) fn from_pod(pod: Pod, settings: &KubernetesSettings) -> Result<CoordinatorPod> {
        let place = format!(
            "coordinator pod {} in namespace {}",
            settings.coordinator_pod, settings.namespace
        );
        let uid = pod
            .metadata
            .uid
            .clone()
            .ok_or_else(|| Error::Config(format!("kubernetes: the {place} has no uid")))?;
        let spec = pod
            .spec
            .ok_or_else(|| Error::Config(format!("kubernetes: the {place} has no spec")))?;
        let container = match &settings.container {
            Some(name) => spec
                .containers
                .into_iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "kubernetes: the {place} has no container named {name}"
                    ))
                })?,
            None => spec.containers.into_iter().next().ok_or_else(|| {
                Error::Config(format!("kubernetes: the {place} has no container"))
            })?,
        };
        if container.image.is_none() && settings.image.is_none() {
            return Err(Error::Config(format!(
                "kubernetes: container {} of the {place} names no image; set KubernetesSettings::image",
                container.name
            )));
        }
        Ok(CoordinatorPod {
            uid,
            container,
            image_pull_secrets: spec.image_pull_secrets,
        })
    }
}

/// The executor pod's name for `slot`: `<coordinator pod>-exec-<slot>` (Spark:
/// `<prefix>-exec-<id>`).
pub(crate) fn executor_pod_name(coordinator_pod: &str, slot: usize) -> String {
    format!("{coordinator_pod}-exec-{slot}")
}

/// The labels of every executor pod of `coordinator_pod`, without the slot's.
pub(crate) fn common_labels(settings: &KubernetesSettings) -> BTreeMap<String, String> {
    let mut labels = settings.labels.clone();
    labels.insert(LABEL_NAME.into(), NAME_VALUE.into());
    labels.insert(LABEL_ROLE.into(), ROLE_EXECUTOR.into());
    labels.insert(LABEL_COORDINATOR.into(), settings.coordinator_pod.clone());
    labels
}

/// The label selector of this coordinator's executor pods (the watch's, and `stop_all`'s).
pub(crate) fn selector(settings: &KubernetesSettings) -> String {
    format!(
        "{LABEL_ROLE}={ROLE_EXECUTOR},{LABEL_COORDINATOR}={}",
        settings.coordinator_pod
    )
}

/// The executor pod of `slot`, told to connect to `coordinator` (`host:port`): the
/// coordinator container's image (or the configured one), command, args, working directory
/// and environment plus [`ENV_COORDINATOR`] and [`ENV_SLOT`]; the labels; an owner reference
/// to the coordinator pod (`controller: true`, so the pods are garbage-collected with it);
/// the resource requests and limits; `restartPolicy: Never` (the coordinator replaces a
/// lost executor, as Spark's driver does, and the kubelet does not restart it).
pub(crate) fn executor_pod(
    settings: &KubernetesSettings,
    coordinator_pod: &CoordinatorPod,
    slot: usize,
    coordinator: &str,
) -> Pod {
    let source = &coordinator_pod.container;
    let mut labels = common_labels(settings);
    labels.insert(LABEL_SLOT.into(), slot.to_string());
    let mut env: Vec<EnvVar> = source
        .env
        .iter()
        .flatten()
        .filter(|e| e.name != ENV_COORDINATOR && e.name != ENV_SLOT)
        .cloned()
        .collect();
    env.push(EnvVar {
        name: ENV_COORDINATOR.into(),
        value: Some(coordinator.into()),
        ..EnvVar::default()
    });
    env.push(EnvVar {
        name: ENV_SLOT.into(),
        value: Some(slot.to_string()),
        ..EnvVar::default()
    });
    let quantities = |pairs: [(&str, &Option<String>); 2]| {
        let map: BTreeMap<String, Quantity> = pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), Quantity(v.clone()?))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let resources = ResourceRequirements {
        requests: quantities([
            ("cpu", &settings.cpu_request),
            ("memory", &settings.memory_request),
        ]),
        limits: quantities([
            ("cpu", &settings.cpu_limit),
            ("memory", &settings.memory_limit),
        ]),
        ..ResourceRequirements::default()
    };
    let container = Container {
        name: "executor".into(),
        image: settings.image.clone().or_else(|| source.image.clone()),
        image_pull_policy: source.image_pull_policy.clone(),
        command: source.command.clone(),
        args: source.args.clone(),
        working_dir: source.working_dir.clone(),
        env: Some(env),
        env_from: source.env_from.clone(),
        resources: Some(resources),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(executor_pod_name(&settings.coordinator_pod, slot)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: settings.coordinator_pod.clone(),
                uid: coordinator_pod.uid.clone(),
                controller: Some(true),
                // `blockOwnerDeletion` would need update on the coordinator pod's
                // finalizers (OwnerReferencesPermissionEnforcement); Spark leaves it unset too.
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            image_pull_secrets: coordinator_pod.image_pull_secrets.clone(),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Why `pod` ended, if its status says it did: phase `Failed` or `Succeeded` (with the
/// pod's reason and message and the container's exit code and reason when known), or a
/// deletion under way (`deletionTimestamp` set). `None` for a pod that still runs or waits.
pub(crate) fn ended_why(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match phase {
        Some(phase @ ("Failed" | "Succeeded")) => Some(format!(
            "pod {name} phase {phase}{}",
            details(pod.status.as_ref())
        )),
        _ if pod.metadata.deletion_timestamp.is_some() => Some(format!(
            "pod {name} is being deleted (phase {}){}",
            phase.unwrap_or("unknown"),
            details(pod.status.as_ref())
        )),
        _ => None,
    }
}

/// Why a pod the watch saw deleted ended: its last phase and status.
pub(crate) fn deleted_why(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("unknown");
    format!(
        "pod {name} deleted (last phase {phase}){}",
        details(pod.status.as_ref())
    )
}

/// `: reason R, message M, container exited with code C (reason)` from what `status` holds.
fn details(status: Option<&PodStatus>) -> String {
    let Some(status) = status else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(reason) = &status.reason {
        parts.push(format!("reason {reason}"));
    }
    if let Some(message) = &status.message {
        parts.push(format!("message {message:?}"));
    }
    for c in status.container_statuses.iter().flatten() {
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            let reason = t
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            parts.push(format!(
                "container {} exited with code {}{reason}",
                c.name, t.exit_code
            ));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}
