//! Counts the words of the text files moved into a directory, in batches, on Kubernetes:
//! the coordinator is the pod of `deploy/kubernetes/statefulset.yaml` (its checkpoint
//! directory on a persistent volume) and, with `--executor-pods N`, it creates N executor
//! pods of its own image (`rivulet_kubernetes::KubernetesExecutors`) that run the map tasks
//! and are replaced when lost. See the README's "Executor pods on Kubernetes".
//!
//! ```text
//! wordcount_on_kubernetes --input /data/in --checkpoint-dir /var/lib/rivulet/checkpoint \
//!     --executor-pods 2
//! ```
//!
//! The coordinator's pod must set `POD_NAME` and `POD_NAMESPACE` (which pod owns the
//! executors) and `POD_IP` (where they connect) from the downward API. Each batch prints
//! its 10 first word counts. Runs under `StreamingContext::get_or_create`: a coordinator pod
//! started again restores the checkpoint and reads each file once. SIGTERM (the pod's
//! deletion) or SIGINT stop it gracefully, deleting the executor pods. Without
//! `--executor-pods` it runs on in-process executors only (and needs no Kubernetes).
//!
//! In an executor pod (`RIVULET_EXECUTOR_OF` set by the coordinator) the same command
//! builds the same graph and serves tasks; it creates no pods and reads no checkpoint.
//!
//! Which process reads the files: with `--shared-input` (the input directory is a volume
//! every pod mounts at the same path, e.g. a ReadWriteMany claim) the executor pods read
//! the files of the batches they map and run the word count's map stages, as Spark's
//! executors read HDFS; without it (the bundled manifest's `emptyDir`, the coordinator's
//! own) the coordinator reads them and its in-process executors map them, and the pods
//! register and stand by. The example shows the pod lifecycle and the deployment; it has
//! not run on a cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;
use rivulet_kubernetes::{KubernetesExecutors, KubernetesSettings};

/// The address the coordinator listens on for its executor pods (the StatefulSet's
/// `containerPort`).
const LISTEN: &str = "0.0.0.0:7077";
/// The downward-API variable holding the coordinator pod's IP, which executors connect to.
const ENV_POD_IP: &str = "POD_IP";

/// Command-line options.
#[derive(Parser, Debug, PartialEq)]
#[command(
    about = "Counts the words of text files moved into a directory, with executor pods on Kubernetes"
)]
struct Args {
    /// Directory to watch for new text files (moved in atomically).
    #[arg(long, value_name = "DIR")]
    input: PathBuf,
    /// Checkpoint directory (on the StatefulSet's persistent volume).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: PathBuf,
    /// The input directory is shared by every pod at the same path: the executor pods read
    /// the files themselves.
    #[arg(long)]
    shared_input: bool,
    /// Run the map tasks on N executor pods created by this coordinator pod (1 to 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    executor_pods: Option<u16>,
    /// The batch interval, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    batch_ms: u64,
    /// Partitions of the word-count shuffle (the same in the coordinator and executor pods).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    partitions: u16,
    /// The cpu an executor pod requests (a Kubernetes quantity).
    #[arg(long, value_name = "QUANTITY", default_value = "1")]
    executor_cpu: String,
    /// The memory an executor pod requests and is limited to (a Kubernetes quantity).
    #[arg(long, value_name = "QUANTITY", default_value = "1Gi")]
    executor_memory: String,
    /// The executor pods' image (default: the coordinator pod's).
    #[arg(long, value_name = "IMAGE")]
    executor_image: Option<String>,
}

/// What `--executor-pods` asks for: where the coordinator listens and is reached, how many
/// pods, and their settings.
#[derive(Debug, PartialEq)]
struct PodsPlan {
    advertise_host: String,
    n: usize,
    settings: KubernetesSettings,
}

impl Args {
    /// The executor pods to create, read from the options and the environment through
    /// `var`; `None` without `--executor-pods`.
    ///
    /// # Errors
    /// Naming the downward-API variable (`POD_NAME`, `POD_NAMESPACE`, `POD_IP`) that is not set.
    fn pods_plan(&self, var: impl Fn(&str) -> Option<String>) -> Result<Option<PodsPlan>> {
        let Some(n) = self.executor_pods else {
            return Ok(None);
        };
        let mut settings = KubernetesSettings::from_lookup(&var)?
            .cpu_request(Some(&self.executor_cpu))
            .memory_request(Some(&self.executor_memory))
            .memory_limit(Some(&self.executor_memory));
        if let Some(image) = &self.executor_image {
            settings = settings.image(image.clone());
        }
        let advertise_host = var(ENV_POD_IP).filter(|v| !v.is_empty()).ok_or_else(|| {
            Error::Config(format!(
                "environment variable {ENV_POD_IP} is not set; the coordinator's pod spec must set it from the downward API (fieldRef: fieldPath: status.podIP)"
            ))
        })?;
        Ok(Some(PodsPlan {
            advertise_host,
            n: usize::from(n),
            settings,
        }))
    }
}

/// Lowercased maximal runs of ASCII letters and digits.
fn words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[actix::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut config = StreamingConfig::new()
        .app_name("wordcount_on_kubernetes")
        .batch_interval(Duration::from_millis(args.batch_ms))
        .default_parallelism(usize::from(args.partitions));
    // Only the coordinator creates pods: an executor pod runs this command too.
    if !StreamingContext::is_executor_process() {
        if let Some(plan) = args.pods_plan(|name| std::env::var(name).ok())? {
            let executors = KubernetesExecutors::with_settings(plan.settings)?;
            config =
                config.cluster_manager(LISTEN, plan.advertise_host, plan.n, Arc::new(executors));
        }
    }
    let source = rivulet::receivers::TextFileSource::new(args.input.clone())
        .read_in_executor_processes(args.shared_input);
    let ssc = StreamingContext::get_or_create(&args.checkpoint_dir, config, move |ssc| {
        ssc.text_file_stream_with(source)
            .flat_map(words)
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .print(10);
        Ok(())
    })?;
    ssc.start().await?;
    println!(
        "Watching {} for new files; SIGTERM or SIGINT to stop.",
        args.input.display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ended = tokio::select! {
        ended = ssc.await_termination() => ended,
        _ = terminate.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    match ssc.stop(StopMode::Graceful).await {
        Ok(()) | Err(Error::NotRunning(_)) => {}
        Err(e) => return Err(e.into()),
    }
    ended?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, clap::Error> {
        Args::try_parse_from(
            std::iter::once("wordcount_on_kubernetes").chain(line.split_whitespace()),
        )
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "POD_NAME" => Some("rivulet-wordcount-0".into()),
            "POD_NAMESPACE" => Some("streams".into()),
            "POD_IP" => Some("10.1.2.3".into()),
            _ => None,
        }
    }

    #[test]
    fn the_statefulsets_arguments_parse() {
        let args = parse(
            "--input /data/in --checkpoint-dir /var/lib/rivulet/checkpoint --executor-pods 2",
        )
        .unwrap();
        assert_eq!(args.input, PathBuf::from("/data/in"));
        assert_eq!(
            args.checkpoint_dir,
            PathBuf::from("/var/lib/rivulet/checkpoint")
        );
        assert_eq!(args.executor_pods, Some(2));
        assert_eq!((args.batch_ms, args.partitions), (1000, 4));
        let plan = args.pods_plan(env).unwrap().unwrap();
        assert_eq!(
            plan,
            PodsPlan {
                advertise_host: "10.1.2.3".into(),
                n: 2,
                settings: KubernetesSettings::new("streams", "rivulet-wordcount-0")
                    .cpu_request(Some("1"))
                    .memory_request(Some("1Gi"))
                    .memory_limit(Some("1Gi")),
            }
        );
    }

    #[test]
    fn executor_settings_come_from_the_options() {
        let args = parse("--input i --checkpoint-dir c --executor-pods 3 --executor-cpu 250m --executor-memory 512Mi --executor-image reg/x:1").unwrap();
        let plan = args.pods_plan(env).unwrap().unwrap();
        assert_eq!(
            plan.settings,
            KubernetesSettings::new("streams", "rivulet-wordcount-0")
                .cpu_request(Some("250m"))
                .memory_request(Some("512Mi"))
                .memory_limit(Some("512Mi"))
                .image("reg/x:1")
        );
    }

    #[test]
    fn without_executor_pods_no_kubernetes_is_needed() {
        let args = parse("--input i --checkpoint-dir c").unwrap();
        assert_eq!(args.pods_plan(|_| None).unwrap(), None);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse("--input i --checkpoint-dir c --executor-pods 0").is_err());
        assert!(parse("--checkpoint-dir c").is_err());
        assert!(parse("--input i --checkpoint-dir c --batch-ms 0").is_err());
        let args = parse("--input i --checkpoint-dir c --executor-pods 1").unwrap();
        let e = args
            .pods_plan(|k| (k != "POD_IP").then(|| env(k)).flatten())
            .unwrap_err()
            .to_string();
        assert!(e.contains("POD_IP") && e.contains("status.podIP"), "{e}");
        let e = args
            .pods_plan(|k| (k != "POD_NAME").then(|| env(k)).flatten())
            .unwrap_err()
            .to_string();
        assert!(e.contains("POD_NAME "), "{e}");
    }

    #[test]
    fn words_are_lowercased_alphanumeric_runs() {
        assert_eq!(
            words("To be, or NOT 2b!".into()),
            ["to", "be", "or", "not", "2b"]
        );
    }
}
