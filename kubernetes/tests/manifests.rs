//! The manifests of `deploy/kubernetes/` parse into Kubernetes' typed objects, and the
//! pieces that must agree do: labels and selectors, the service account and its Role, the
//! checkpoint volume's mount path and the program's `--checkpoint-dir`, the downward-API
//! variables the crate reads, the port, and the Dockerfile's program path.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use rivulet_kubernetes::{
    ENV_POD_NAME, ENV_POD_NAMESPACE, LABEL_COORDINATOR, LABEL_NAME, LABEL_ROLE, NAME_VALUE,
    POD_VERBS, ROLE_EXECUTOR,
};

const STATEFULSET: &str = include_str!("../../deploy/kubernetes/statefulset.yaml");
const SERVICE: &str = include_str!("../../deploy/kubernetes/service.yaml");
const SERVICE_ACCOUNT: &str = include_str!("../../deploy/kubernetes/serviceaccount.yaml");
const ROLE: &str = include_str!("../../deploy/kubernetes/role.yaml");
const ROLE_BINDING: &str = include_str!("../../deploy/kubernetes/rolebinding.yaml");
const DOCKERFILE: &str = include_str!("../../deploy/kubernetes/Dockerfile");

fn statefulset() -> StatefulSet {
    serde_saphyr::from_str(STATEFULSET).unwrap()
}

fn coordinator_container(set: &StatefulSet) -> Container {
    let spec = set.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

/// The value following `option` in the container's arguments.
fn argument(container: &Container, option: &str) -> String {
    let args = container.args.as_ref().unwrap();
    let i = args.iter().position(|a| a == option).unwrap();
    args[i + 1].clone()
}

#[test]
fn the_statefulset_service_and_selectors_agree() {
    let set = statefulset();
    let service: Service = serde_saphyr::from_str(SERVICE).unwrap();
    let spec = set.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name, service.metadata.name);
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selector = spec.selector.match_labels.clone().unwrap();
    assert!(selector
        .iter()
        .all(|(k, v)| template_labels.get(k) == Some(v)));
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(service_spec.selector.as_ref(), Some(&selector));
    // The coordinator's selector does not match its executor pods (role executor).
    let mut executor = BTreeMap::new();
    executor.insert(LABEL_NAME.to_string(), NAME_VALUE.to_string());
    executor.insert(LABEL_ROLE.to_string(), ROLE_EXECUTOR.to_string());
    executor.insert(
        LABEL_COORDINATOR.to_string(),
        "rivulet-wordcount-0".to_string(),
    );
    assert!(!selector.iter().all(|(k, v)| executor.get(k) == Some(v)));
    // The port executors connect to is the example's listen port.
    let container = coordinator_container(&set);
    let ports = container.ports.unwrap();
    assert!(ports.iter().any(|p| p.container_port == 7077));
    assert!(service_spec.ports.unwrap().iter().any(|p| p.port == 7077));
}

#[test]
fn the_checkpoint_volume_is_mounted_at_the_checkpoint_dir() {
    let set = statefulset();
    let spec = set.spec.as_ref().unwrap();
    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims.len(), 1);
    let claim = claims[0].metadata.name.clone().unwrap();
    let container = coordinator_container(&set);
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == claim)
        .unwrap()
        .mount_path
        .clone();
    assert_eq!(mount, argument(&container, "--checkpoint-dir"));
    assert!(
        argument(&container, "--executor-pods")
            .parse::<u16>()
            .unwrap()
            >= 1
    );
    // The watched directory is mounted too, and is not the checkpoint's.
    let input = argument(&container, "--input");
    assert_ne!(input, mount);
    assert!(container
        .volume_mounts
        .unwrap()
        .iter()
        .any(|m| m.mount_path == input));
}

#[test]
fn the_downward_api_gives_what_the_program_reads() {
    let container = coordinator_container(&statefulset());
    let field = |name: &str| {
        container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone())
    };
    assert_eq!(field(ENV_POD_NAME).as_deref(), Some("metadata.name"));
    assert_eq!(
        field(ENV_POD_NAMESPACE).as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(field("POD_IP").as_deref(), Some("status.podIP"));
}

#[test]
fn the_service_account_may_do_what_the_code_calls() {
    let set = statefulset();
    let account: ServiceAccount = serde_saphyr::from_str(SERVICE_ACCOUNT).unwrap();
    let role: Role = serde_saphyr::from_str(ROLE).unwrap();
    let binding: RoleBinding = serde_saphyr::from_str(ROLE_BINDING).unwrap();
    let pod_spec = set.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod_spec.service_account_name, account.metadata.name);
    let subjects = binding.subjects.unwrap();
    assert!(subjects
        .iter()
        .any(|s| s.kind == "ServiceAccount" && Some(&s.name) == account.metadata.name.as_ref()));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let rules = role.rules.unwrap();
    for verb in POD_VERBS {
        assert!(
            rules.iter().any(|r| {
                r.api_groups
                    .as_ref()
                    .is_some_and(|g| g.iter().any(|g| g.is_empty()))
                    && r.resources
                        .as_ref()
                        .is_some_and(|res| res.iter().any(|x| x == "pods"))
                    && r.verbs.iter().any(|v| v == verb)
            }),
            "the Role does not allow {verb} on pods"
        );
    }
}

#[test]
fn the_image_holds_the_program_the_statefulset_runs() {
    let container = coordinator_container(&statefulset());
    let program = &container.command.as_ref().unwrap()[0];
    assert!(
        DOCKERFILE.contains(&format!(
            "COPY --from=build /wordcount_on_kubernetes {program}"
        )),
        "the Dockerfile does not install {program}"
    );
    assert!(DOCKERFILE.contains("--example wordcount_on_kubernetes"));
    // The directories exist in the image for executor pods, which mount no volume.
    assert!(DOCKERFILE.contains(&argument(&container, "--checkpoint-dir")));
    assert!(DOCKERFILE.contains(&argument(&container, "--input")));
}
