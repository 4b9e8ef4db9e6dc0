//! Harness: end-to-end latency through the reactive service — from an event posted over HTTP
//! to the moment `GET /stats` shows a batch that counted it — while a load generator posts
//! the access log at a steady rate, at 100 ms and at 1 s batches.
//!
//! It runs the `reactive_service` example binary (built in the same profile: `cargo build
//! --release --example reactive_service` first) as the server (`--serve-only`) and as the load
//! (`--generate-only`), and probes it itself: at random points of the batch interval it posts
//! one event, notes the wall
//! clock once the service accepted it (the event is then in the stream), and polls `/stats`
//! until the latest batch's time is at or after that instant (the first batch cut after the
//! event holds it, and `/stats` shows a batch only once its analytics reached the dashboard).
//! Prints p50, p99 and max per batch interval.
//!
//! ```text
//! cargo build --release --example reactive_service
//! cargo run --release -p rivulet-benches --bin bench_service_latency -- --rate 20000 --secs 30
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rivulet_benches::harness;
use rivulet_benches::support;

#[derive(Parser, Debug)]
#[command(about = "Event posted to visible in GET /stats, through the reactive service")]
struct Args {
    /// Events per second the load generator posts (about half of what the service
    /// sustains on 2 cores).
    #[arg(long, default_value_t = 20000)]
    rate: u64,
    /// Seconds of probing per batch interval.
    #[arg(long, default_value_t = 20)]
    secs: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One HTTP/1.0 request; the status code and body.
fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure(args: &Args, batch_ms: u64) -> Result<support::Latencies, rivulet::prelude::BoxError> {
    let bin = harness::example_binary("reactive_service")?;
    let port = free_port()?;
    let _server = Killed(
        Command::new(&bin)
            .args(["--serve-only", "--quiet", "--port", &port.to_string()])
            .args(["--batch-ms", &batch_ms.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while request(port, "GET", "/stats", "").is_err() {
        if Instant::now() > deadline {
            return Err("the service did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The generator plays the access log once; it is started again each time it ends, so
    // the load lasts as long as the probing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (bin, stop, rate) = (bin.clone(), stop.clone(), args.rate);
        std::thread::spawn(move || -> std::io::Result<()> {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut child = Killed(
                    Command::new(&bin)
                        .args(["--generate-only", "--target", &format!("127.0.0.1:{port}")])
                        .args(["--rate", &rate.to_string(), "--quiet", "--malformed", "0"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()?,
                );
                while child.0.try_wait()?.is_none() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_secs(2)); // warm-up under load
    let mut latencies = support::Latencies::new();
    let end = Instant::now() + Duration::from_secs(args.secs);
    let mut n = 0u64;
    let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
    while Instant::now() < end {
        n += 1;
        let event = format!(
            r#"{{"user":"probe","page":"/probe/{n}","time":{}}}"#,
            now_ms() / 1000
        );
        let (status, _) = request(port, "POST", "/events", &event)?;
        let accepted = Instant::now();
        let accepted_ms = now_ms();
        if status != 200 {
            continue;
        }
        loop {
            let (_, body) = request(port, "GET", "/stats", "")?;
            let stats: serde_json::Value = serde_json::from_str(&body)?;
            if stats["batch"]["time_ms"].as_i64().unwrap_or(0) >= accepted_ms {
                latencies.record(accepted.elapsed());
                break;
            }
            if accepted.elapsed() > Duration::from_secs(30) {
                return Err("an event was not visible within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // The next probe at a uniformly random point of the batch interval (a probe right
        // after a batch would always wait a whole interval).
        std::thread::sleep(Duration::from_millis(20 + rng.u64(..batch_ms)));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().map_err(|_| "the load thread panicked")??;
    Ok(latencies)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let run = || -> Result<(), rivulet::prelude::BoxError> {
        println!(
            "load: {} events/s from the bundled access log; probing for {} s per interval",
            args.rate, args.secs
        );
        for batch_ms in [100, 1000] {
            let l = measure(&args, batch_ms)?;
            if l.is_empty() {
                return Err("no probe was accepted".into());
            }
            println!(
                "{batch_ms:>4} ms batches: {} probes, latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({:.1}/{:.1} batch intervals)",
                l.len(),
                support::ms(l.quantile(0.5)),
                support::ms(l.quantile(0.99)),
                support::ms(l.max()),
                support::ms(l.quantile(0.5)) / batch_ms as f64,
                support::ms(l.quantile(0.99)) / batch_ms as f64,
            );
        }
        Ok(())
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
