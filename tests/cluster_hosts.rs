//! Executor processes on other "hosts" (`StreamingConfig::static_cluster`): each executor
//! runs in a network namespace of its own that this test creates (`ip netns`, a veth pair
//! each) and removes afterwards, started by the test as systemd would start it. One run
//! cuts a host's link mid-run (`ip link set ... down` inside its namespace) while the other
//! host reaches the coordinator through a proxy that delays every chunk by 10 ms; the
//! second run delays both by 100 ms. Each run must give the hand count; the cut host must
//! be detected within the heartbeat timeout, lost (its tasks run again), and its process
//! must exit by itself once it hears nothing from the coordinator.
//!
//! Needs root (`ip netns`), as CI runs; elsewhere it prints a loud SKIPPED line, and fails
//! instead with `RIVULET_REQUIRE_NETNS=1` (set by `.ci/run`). `tc netem` is not used: the
//! sandbox kernels here lack `sch_netem`, so the delay is a userspace proxy.
//!
//! ONE test on purpose: an executor is this test binary started again (see
//! tests/local_cluster.rs).

mod cluster_support;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::{hand_count, lines_of, words_upto, GatedLines};
use common::*;
use rivulet::prelude::*;

const CHUNK: usize = 150;
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(1_500);

fn lines() -> Vec<String> {
    lines_of(
        &["ash", "birch", "cedar", "elm", "fir", "oak", "yew"],
        1_200,
        11,
    )
}

/// The program: word counts per batch over the receiver's lines, summed by the test.
fn program(
    ssc: &StreamingContext,
    lines: Vec<String>,
    permits: Arc<tokio::sync::Semaphore>,
) -> Arc<Mutex<BTreeMap<String, u64>>> {
    let summed = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let sink = summed.clone();
    ssc.receiver_stream(GatedLines {
        records: lines,
        chunk: CHUNK,
        permits,
    })
    .repartition(2)
    .flat_map(|line: String| line.split(' ').map(str::to_string).collect::<Vec<String>>())
    .map(|w: String| (w, 1u64))
    .reduce_by_key(|a, b| a + b)
    .foreach_batch(move |_, batch: Vec<(String, u64)>| {
        let mut summed = sink.lock().unwrap();
        for (w, n) in batch {
            *summed.entry(w).or_default() += n;
        }
    });
    summed
}

fn config_for(listen: SocketAddr) -> StreamingConfig {
    config(1, 2)
        .static_cluster(listen.to_string(), 2)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces, each with a veth pair to this one: host `h` is `10.213.<k+h>.2`, and
/// this side of its link `10.213.<k+h>.1`. Removed on drop, with the processes started in
/// them.
struct Hosts {
    names: [String; 2],
    links: [String; 2],
    subnet: u32,
    children: Vec<Child>,
}

impl Hosts {
    fn create() -> Hosts {
        let id = std::process::id();
        let subnet = (id % 120) * 2;
        let names = [format!("rv{id}a"), format!("rv{id}b")];
        let links = [format!("rv{id}ha"), format!("rv{id}hb")];
        let hosts = Hosts {
            names: names.clone(),
            links: links.clone(),
            subnet,
            children: Vec::new(),
        };
        for h in 0..2 {
            let (ns, link, inner) = (&names[h], &links[h], format!("rv{id}e{h}"));
            let net = subnet + h as u32;
            ip(&["netns", "add", ns]);
            ip(&["link", "add", link, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", ns]);
            ip(&["addr", "add", &format!("10.213.{net}.1/30"), "dev", link]);
            ip(&["link", "set", link, "up"]);
            ip(&[
                "netns",
                "exec",
                ns,
                "ip",
                "addr",
                "add",
                &format!("10.213.{net}.2/30"),
                "dev",
                &inner,
            ]);
            ip(&["netns", "exec", ns, "ip", "link", "set", &inner, "up"]);
            ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
            ip(&[
                "netns",
                "exec",
                ns,
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("10.213.{net}.1"),
            ]);
        }
        hosts
    }

    /// This side's address on host `h`'s link.
    fn gateway(&self, h: usize) -> std::net::IpAddr {
        format!("10.213.{}.1", self.subnet + h as u32)
            .parse()
            .expect("an address")
    }

    /// Starts this test binary in host `h` as executor `slot` of the coordinator at `coordinator`.
    fn start_executor(&mut self, h: usize, slot: usize, coordinator: SocketAddr) -> u32 {
        let exe = std::env::current_exe().expect("the test binary");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.names[h]])
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env("RIVULET_EXECUTOR_OF", coordinator.to_string())
            .env("RIVULET_EXECUTOR_SLOT", slot.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("an executor process");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Cuts host `h`'s link, from inside its namespace.
    fn cut(&self, h: usize) {
        let inner = format!("rv{}e{h}", std::process::id());
        ip(&[
            "netns",
            "exec",
            &self.names[h],
            "ip",
            "link",
            "set",
            &inner,
            "down",
        ]);
    }

    /// Waits (bounded) for every executor started so far to exit; returns their statuses.
    fn wait_all(&mut self, within: Duration) -> Vec<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let mut statuses = Vec::new();
        for child in &mut self.children {
            loop {
                if let Some(status) = child.try_wait().expect("poll an executor") {
                    statuses.push(status);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "an executor process did not exit within {within:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.children.clear();
        statuses
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (ns, link) in self.names.iter().zip(&self.links) {
            let _ = Command::new("ip").args(["link", "del", link]).status();
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A TCP proxy on `listen` to `upstream` that passes every chunk on `delay` after it
/// arrived, both ways (chunks in flight overlap, as on a long link): a slow network. Runs
/// on its own thread until dropped.
struct DelayProxy(Option<tokio::sync::oneshot::Sender<()>>);

impl DelayProxy {
    fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        delay: Duration,
    ) -> (DelayProxy, SocketAddr) {
        let listener = std::net::TcpListener::bind(listen).expect("the proxy's port");
        let addr = listener.local_addr().expect("its address");
        listener.set_nonblocking(true).expect("non-blocking");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                let accept = async {
                    while let Ok((down, _)) = listener.accept().await {
                        tokio::spawn(async move {
                            let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                                return;
                            };
                            let (dr, dw) = down.into_split();
                            let (ur, uw) = up.into_split();
                            tokio::spawn(pipe(dr, uw, delay));
                            pipe(ur, dw, delay).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        (DelayProxy(Some(stop)), addr)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = tokio::time::Instant::now() + delay;
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// One run over `lines` with the two hosts: host 0 connects directly, or through a proxy
/// delaying by `delays[0]`, and so host 1; with `cut`, host 0's link is cut after the third
/// chunk.
async fn run(
    hosts: &mut Hosts,
    lines: Vec<String>,
    delays: [Duration; 2],
    cut: bool,
) -> (
    BTreeMap<String, u64>,
    SchedulerMetrics,
    Vec<rivulet::actors::cluster::ExecutorProcess>,
) {
    let coordinator_ip = hosts.gateway(0);
    let port = std::net::TcpListener::bind((coordinator_ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let coordinator = SocketAddr::new(coordinator_ip, port);
    let mut proxies = Vec::new();
    for (h, delay) in delays.iter().enumerate() {
        let via = if delay.is_zero() {
            coordinator
        } else {
            let (proxy, addr) =
                DelayProxy::start(SocketAddr::new(hosts.gateway(h), 0), coordinator, *delay);
            proxies.push(proxy);
            addr
        };
        hosts.start_executor(h, h, via);
    }
    let ssc = StreamingContext::new(config_for(coordinator)).expect("valid config");
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let words_upto = words_upto(&lines, CHUNK);
    let summed = program(&ssc, lines, permits.clone());
    ssc.start()
        .await
        .expect("started: both executors registered");
    let seen = || summed.lock().unwrap().values().sum::<u64>();
    for (i, upto) in words_upto.iter().enumerate() {
        permits.add_permits(1);
        advance_until(&ssc, || seen() >= *upto).await;
        if i == 2 && cut {
            hosts.cut(0);
        }
    }
    if cut {
        // The cut host is lost within the heartbeat timeout (and a monitor tick).
        advance_until(&ssc, || ssc.executor_processes()[0].losses > 0).await;
    }
    let metrics = ssc.scheduler_metrics().expect("started");
    let processes = ssc.executor_processes();
    ssc.stop(StopMode::Graceful).await.expect("stopped");
    let summed = summed.lock().unwrap().clone();
    (summed, metrics, processes)
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    assert!(
        std::env::var_os("RIVULET_REQUIRE_NETNS").is_none(),
        "RIVULET_REQUIRE_NETNS is set, but this test needs root and `ip` (iproute2)"
    );
    eprintln!(
        "SKIPPED tests/cluster_hosts.rs: needs root and `ip` (iproute2) for network namespaces"
    );
    false
}

#[actix_rt::test]
async fn executors_on_other_hosts_survive_a_cut_link_and_a_slow_network() {
    if StreamingContext::is_executor_process() {
        // This process is an executor on a "host": build the program and serve.
        let ssc = StreamingContext::new(config_for("127.0.0.1:1".parse().unwrap()))
            .expect("valid config");
        program(&ssc, Vec::new(), Arc::new(tokio::sync::Semaphore::new(0)));
        let _ = ssc.start().await;
        unreachable!("start serves the coordinator and exits");
    }
    if !can_run() {
        return;
    }
    let expected = hand_count(&lines());
    let mut hosts = Hosts::create();

    let started = Instant::now();
    let (summed, metrics, processes) = tokio::time::timeout(
        Duration::from_secs(120),
        run(
            &mut hosts,
            lines(),
            [Duration::ZERO, Duration::from_millis(10)],
            true,
        ),
    )
    .await
    .expect("the first run finished in time");
    assert_eq!(
        summed, expected,
        "a cut link and a 10 ms link: each word counted once"
    );
    assert_eq!(
        processes[0].losses, 1,
        "the cut host was lost: {processes:?}"
    );
    assert_eq!(
        processes[1].losses, 0,
        "the slow host was not: {processes:?}"
    );
    assert!(
        processes[1].map_tasks > 0,
        "the slow host ran map tasks: {processes:?}"
    );
    assert_eq!(metrics.executors_lost, 1, "{metrics:?}");
    // The cut-off executor hears nothing and exits by itself; the other was stopped.
    let statuses = hosts.wait_all(Duration::from_secs(10));
    assert_eq!(statuses.len(), 2);
    assert!(
        !statuses[0].success(),
        "the cut-off executor exits with an error: {statuses:?}"
    );
    assert!(
        statuses[1].success(),
        "the stopped executor exits cleanly: {statuses:?}"
    );
    eprintln!("first run: {:?}", started.elapsed());

    // Its link back up, both hosts behind 100 ms.
    let inner = format!("rv{}e0", std::process::id());
    ip(&[
        "netns",
        "exec",
        &hosts.names[0],
        "ip",
        "link",
        "set",
        &inner,
        "up",
    ]);
    ip(&[
        "netns",
        "exec",
        &hosts.names[0],
        "ip",
        "route",
        "replace",
        "default",
        "via",
        &hosts.gateway(0).to_string(),
    ]);
    // Three batches' worth: each batch takes several round trips of 200 ms.
    let few: Vec<String> = lines().into_iter().take(3 * CHUNK).collect();
    let (summed, metrics, processes) = tokio::time::timeout(
        Duration::from_secs(120),
        run(
            &mut hosts,
            few.clone(),
            [Duration::from_millis(100); 2],
            false,
        ),
    )
    .await
    .expect("the second run finished in time");
    assert_eq!(
        summed,
        hand_count(&few),
        "two 100 ms links: each word counted once"
    );
    assert_eq!(
        metrics.executors_lost, 0,
        "100 ms is well within the heartbeat timeout"
    );
    assert!(processes.iter().all(|p| p.map_tasks > 0), "{processes:?}");
    let statuses = hosts.wait_all(Duration::from_secs(10));
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
}
