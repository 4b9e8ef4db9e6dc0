//! The load generator: the access log's requests as events (client IP as the user, path as
//! the page, timestamp as the time), posted over real HTTP/1.1 at a set rate from a few
//! keep-alive connections, with a minimal client on `tokio::net::TcpStream` (the service
//! answers with `Content-Length`, so no chunked decoding is needed).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use rivulet::prelude::BoxError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::digest::CountDigest;
use crate::parse::parse;
use crate::support::{read_lines, Latencies, TokioClock};
use crate::PageEvent;

/// The events of the access log at `path`, at most `limit` (0: all), and the number of
/// lines that did not parse (skipped).
///
/// # Errors
/// When the file cannot be read.
pub fn events_from_log(
    path: &Path,
    limit: usize,
    fresh_users: bool,
) -> Result<(Vec<PageEvent>, usize), BoxError> {
    let mut events = Vec::new();
    let mut skipped = 0;
    let lines = read_lines(path)?;
    for line in &lines {
        if limit > 0 && events.len() == limit {
            break;
        }
        let line = String::from_utf8_lossy(line);
        match parse(&line).ok().and_then(|r| {
            let time = apache_time(&r.time)?;
            Some(PageEvent {
                user: r.client,
                page: r.path,
                time,
            })
        }) {
            Some(event) => events.push(event),
            None => skipped += 1,
        }
    }
    if fresh_users {
        // The log played again up to `limit`, every event from a user never seen before.
        let played = events.len();
        while played > 0 && events.len() < limit {
            events.push(events[events.len() % played].clone());
        }
        for (i, event) in events.iter_mut().enumerate() {
            event.user = format!("user-{i}");
        }
    }
    Ok((events, skipped))
}

/// `17/May/2015:10:05:03 +0000` as seconds since the Unix epoch.
pub fn apache_time(s: &str) -> Option<i64> {
    let (date_time, zone) = s.split_once(' ')?;
    let mut parts = date_time.splitn(4, ':');
    let (date, h, m, sec) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let mut d = date.split('/');
    let (day, month, year) = (d.next()?, d.next()?, d.next()?);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let (year, day): (i64, i64) = (year.parse().ok()?, day.parse().ok()?);
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zone: i64 = zone.get(1..)?.parse().ok()?;
    let offset = sign * ((zone / 100) * 3600 + (zone % 100) * 60);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec - offset)
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `Retry-After`, in seconds, if given.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: String,
}

/// A keep-alive HTTP/1.1 connection to one server, reconnecting when the server closed it.
pub struct Client {
    address: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of `address` (connects on first use).
    pub fn new(address: SocketAddr) -> Client {
        Client {
            address,
            connection: None,
        }
    }

    /// Sends one request and reads its answer. A request on a kept-alive connection that the
    /// server closed before answering (it closes idle ones) is sent again once, on a new one.
    ///
    /// # Errors
    /// Connection and protocol errors.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let reused = self.connection.is_some();
        match self.try_request(method, path, body).await {
            Err(e) if reused && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.connection = None;
                self.try_request(method, path, body).await
            }
            result => result,
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let result = self.exchange(method, path, body).await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        if self.connection.is_none() {
            let stream = TcpStream::connect(self.address).await?;
            stream.set_nodelay(true)?;
            self.connection = Some(BufReader::new(stream));
        }
        let Some(conn) = self.connection.as_mut() else {
            return Err(invalid("no connection".into()));
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.address,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        conn.get_mut().write_all(&request).await?;

        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("not an HTTP status line: {line:?}")))?;
        let (mut length, mut retry_after, mut close) = (None, None, false);
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err(invalid("the connection closed in the headers".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "retry-after" => retry_after = value.parse().ok(),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                conn.read_exact(&mut body).await?;
            }
            None => {
                conn.read_to_end(&mut body).await?;
                close = true;
            }
        }
        if close {
            self.connection = None;
        }
        Ok(Response {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// How the generator runs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Events per second (0: as fast as the service answers).
    pub rate: u64,
    /// Concurrent connections.
    pub connections: usize,
    /// Times an event answered `503` is sent again (after its `Retry-After`, at most 1 s).
    pub retries: u32,
    /// Malformed bodies to send among the events (each should be answered `400`).
    pub malformed: usize,
}

/// What the generator saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Events posted (malformed bodies not included).
    pub events: usize,
    /// Per user: events answered 2xx, as a digest.
    pub accepted: CountDigest,
    /// Events answered `503` on their last try.
    pub unavailable: u64,
    /// `503`s that were sent again.
    pub retried: u64,
    /// Malformed bodies answered `400` (of [`LoadOptions::malformed`]).
    pub bad_request: u64,
    /// Other answers (status, body), e.g. a valid event answered `400`.
    pub unexpected: Vec<(u16, String)>,
    /// Requests that got no answer (connection errors).
    pub errors: Vec<String>,
    /// The latencies of the answered requests.
    pub latencies: Latencies,
    /// How long it all took.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Events answered 2xx.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.events
    }
}

/// A body that is not an event, for the `i`th malformed request.
fn malformed_body(i: usize) -> Vec<u8> {
    match i % 3 {
        0 => b"{\"user\": \"1.2.3.4\", \"page\": ".to_vec(),
        1 => b"{\"user\": \"1.2.3.4\", \"time\": 1}".to_vec(),
        _ => b"not json at all".to_vec(),
    }
}

/// Posts `events` (and `options.malformed` malformed bodies spread among them) to
/// `address` at `options.rate`, and reports the answers.
pub async fn run(address: SocketAddr, events: Vec<PageEvent>, options: LoadOptions) -> LoadReport {
    // The requests in order: `None` for a malformed one, spread evenly.
    let total = events.len() + options.malformed;
    let every = total / options.malformed.max(1);
    let mut requests: Vec<Option<PageEvent>> = Vec::with_capacity(total);
    let mut events = events.into_iter();
    for i in 0..total {
        let bad = options.malformed > 0 && i % every == every / 2 && {
            let sent = requests.iter().filter(|r| r.is_none()).count();
            sent < options.malformed
        };
        requests.push(if bad { None } else { events.next() });
    }
    requests.extend(events.map(Some));
    // Malformed ones that did not fit in the spread go last.
    let placed = requests.iter().filter(|r| r.is_none()).count();
    requests.extend((placed..options.malformed).map(|_| None));

    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let limiter = NonZeroU32::new(u32::try_from(options.rate).unwrap_or(u32::MAX)).map(|r| {
        let burst = NonZeroU32::new((r.get() / 100).max(1)).unwrap_or(NonZeroU32::MIN);
        Arc::new(RateLimiter::direct_with_clock(
            Quota::per_second(r).allow_burst(burst),
            TokioClock,
        ))
    });
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..options.connections.max(1) {
        let (requests, next, report, limiter) = (
            requests.clone(),
            next.clone(),
            report.clone(),
            limiter.clone(),
        );
        let retries = options.retries;
        workers.push(actix::spawn(async move {
            let mut client = Client::new(address);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                if let Some(limiter) = &limiter {
                    while let Err(not_until) = limiter.check() {
                        tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
                    }
                }
                post(&mut client, i, request.as_ref(), retries, &report).await;
            }
        }));
    }
    for worker in workers {
        if let Err(e) = worker.await {
            report
                .lock()
                .errors
                .push(format!("a sender task failed: {e}"));
        }
    }
    let mut report = std::mem::take(&mut *report.lock());
    report.elapsed = started.elapsed();
    report
}

/// Posts request `i` (`None`: a malformed body), retrying `503`s, and records the answer.
async fn post(
    client: &mut Client,
    i: usize,
    event: Option<&PageEvent>,
    retries: u32,
    report: &Mutex<LoadReport>,
) {
    let body = match event {
        Some(e) => serde_json::to_vec(e).unwrap_or_default(),
        None => malformed_body(i),
    };
    let mut tries = 0;
    loop {
        let sent = Instant::now();
        let answer = client.request("POST", "/events", &body).await;
        let latency = sent.elapsed();
        let response = match answer {
            Ok(response) => response,
            Err(e) => {
                report.lock().errors.push(format!("request {i}: {e}"));
                return;
            }
        };
        if event.is_some() && response.status == 503 && tries < retries {
            {
                let mut r = report.lock();
                r.latencies.record(latency);
                r.retried += 1;
            }
            tries += 1;
            let wait = response.retry_after.unwrap_or(1).min(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let mut r = report.lock();
        r.latencies.record(latency);
        if event.is_some() {
            r.events += 1;
        }
        match (event, response.status) {
            (Some(e), 200..=299) => r.accepted.add(&e.user, 1),
            (Some(_), 503) => r.unavailable += 1,
            (None, 400) => r.bad_request += 1,
            (_, status) => r.unexpected.push((status, response.body)),
        }
        return;
    }
}

/// `GET path` on `address`, the body if the answer is 200.
///
/// # Errors
/// Connection errors, or the status and body of another answer.
pub async fn get(address: SocketAddr, path: &str) -> Result<String, BoxError> {
    let response = Client::new(address).request("GET", path, b"").await?;
    if response.status != 200 {
        return Err(format!("GET {path}: {} {}", response.status, response.body).into());
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn apache_time_is_unix_seconds() {
        assert_eq!(
            super::apache_time("17/May/2015:10:05:03 +0000"),
            Some(1_431_857_103)
        );
        assert_eq!(
            super::apache_time("17/May/2015:12:05:03 +0200"),
            Some(1_431_857_103)
        );
        assert_eq!(super::apache_time("17/Foo/2015:10:05:03 +0000"), None);
    }
}
