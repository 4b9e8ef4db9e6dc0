//! What the MQTT tests share (with `mod common;` beside it): a `mosquitto` broker of the
//! test's own on a free 127.0.0.1 port, its configuration, persistence file and log in a
//! temporary directory, killed on drop and restartable; `None` (after a loud `SKIPPED` line)
//! when mosquitto is not installed, a failure under `RIVULET_REQUIRE_BROKERS=1`. And a QoS 1
//! publisher (rumqttc) that returns once the broker acknowledged every message.
//! [`broker_with_password`] starts one that admits a single user with a password
//! (`password_file`, made with Debian's `mosquitto_passwd`, and `allow_anonymous false`).
//!
//! The broker's configuration departs from mosquitto's defaults where they would lose or
//! throttle what the tests publish: `max_queued_messages 0` (mosquitto drops messages past
//! 1000 queued for a subscriber, silently) and `max_inflight_messages 1000` (20 by default:
//! the receiver acknowledges a block once stored, so at most this many messages per block).
//! mosquitto writes its persistence file when it stops (SIGTERM: [`Broker::stop`]), not per
//! message: a SIGKILLed broker ([`Broker::kill`]) loses what it queued since its start.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// A mosquitto of the test's own, killed on drop.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    /// The user and password the broker admits (`None`: anonymous clients).
    pub credentials: Option<(String, String)>,
}

/// The broker, started, or `None` after a loud line when mosquitto is missing (a failure
/// under `RIVULET_REQUIRE_BROKERS=1`).
pub fn broker(test: &str) -> Option<Broker> {
    let mut broker = broker_not_started(test)?;
    broker.start();
    Some(broker)
}

/// A broker that admits only `user` with `password`, started, or `None` as [`broker`] (also
/// when `mosquitto_passwd` is missing).
pub fn broker_with_password(test: &str, user: &str, password: &str) -> Option<Broker> {
    let passwd = crate::common::installed_tool(
        "mosquitto_passwd",
        "mosquitto",
        "RIVULET_REQUIRE_BROKERS",
        test,
    )?;
    let mut broker = configured(test, Some((user, password)), &passwd)?;
    broker.start();
    Some(broker)
}

/// The broker, configured on its port but not started (for a broker down at the start).
pub fn broker_not_started(test: &str) -> Option<Broker> {
    configured(test, None, std::path::Path::new(""))
}

/// The broker's configuration, with a password file of `credentials` (made by the
/// `mosquitto_passwd` at `passwd`) when given.
fn configured(
    test: &str,
    credentials: Option<(&str, &str)>,
    passwd: &std::path::Path,
) -> Option<Broker> {
    let binary =
        crate::common::installed_tool("mosquitto", "mosquitto", "RIVULET_REQUIRE_BROKERS", test)?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let access = match credentials {
        Some((user, password)) => {
            let file = dir.path().join("passwords");
            let made = Command::new(passwd)
                .arg("-b")
                .arg("-c")
                .arg(&file)
                .args([user, password])
                .output()
                .expect("mosquitto_passwd runs");
            assert!(made.status.success(), "mosquitto_passwd: {made:?}");
            format!("allow_anonymous false\npassword_file {}\n", file.display())
        }
        None => "allow_anonymous true\n".to_string(),
    };
    let config = format!(
        "listener {port} 127.0.0.1\n\
         {access}\
         persistence true\n\
         persistence_location {}/\n\
         max_queued_messages 0\n\
         max_inflight_messages 1000\n\
         # Started as root, mosquitto 2 would switch to the `mosquitto` user, which cannot\n\
         # write to this directory; ignored when not root.\n\
         user root\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("mosquitto.conf"), config).expect("write mosquitto.conf");
    Some(Broker {
        child: None,
        port,
        dir,
        binary,
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
    })
}

impl Broker {
    /// Starts (or restarts) the broker and waits until it accepts connections; it reloads
    /// the sessions and messages its last graceful stop saved.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("the broker's log file");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mosquitto exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker gracefully (SIGTERM): it saves its sessions and queued messages.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while ok && Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("mosquitto did not stop on SIGTERM:\n{}", self.log());
    }

    /// Kills the broker (SIGKILL): what it queued since its last graceful stop is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the broker logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Publishes `payloads` to `topic` at QoS 1 and returns once the broker acknowledged
    /// each (see [`publish_at`]).
    pub fn publish(&self, topic: &str, payloads: Vec<Vec<u8>>) {
        publish_with(self.port, self.credentials.clone(), topic, payloads);
    }

    /// Publishes in a thread of its own, for a test that runs batches meanwhile.
    pub fn publish_in_background(
        &self,
        topic: &str,
        payloads: Vec<Vec<u8>>,
    ) -> std::thread::JoinHandle<()> {
        let (port, topic) = (self.port, topic.to_string());
        std::thread::spawn(move || publish_at(port, &topic, payloads))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes `payloads` in order to `topic` at QoS 1 on the broker at `127.0.0.1:port`, as
/// a clean-session client of its own, and returns once every `PUBACK` came (the broker then
/// has each message, queued for every subscribed session). Fails the test on a connection
/// error or after 60 s. Runs in threads of its own (rumqttc's blocking client has its own
/// runtime), so it may be called from an async test.
pub fn publish_at(port: u16, topic: &str, payloads: Vec<Vec<u8>>) {
    publish_with(port, None, topic, payloads);
}

/// [`publish_at`], connecting with `credentials` (user, password) when given.
pub fn publish_with(
    port: u16,
    credentials: Option<(String, String)>,
    topic: &str,
    payloads: Vec<Vec<u8>>,
) {
    let total = payloads.len();
    if total == 0 {
        return;
    }
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let id = format!("publisher-{}", fastrand::u64(..));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 1_000);
        let sender = {
            let client = client.clone();
            std::thread::spawn(move || {
                for payload in payloads {
                    client
                        .publish(&topic, QoS::AtLeastOnce, false, payload)
                        .expect("queue a publish");
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acked = 0;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => {
                    panic!("publishing to 127.0.0.1:{port}: {e} ({acked} of {total} acknowledged)")
                }
            }
            if acked == total {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "publishing to 127.0.0.1:{port}: {acked} of {total} acknowledged in 60 s"
            );
        }
        sender.join().expect("the publishing thread");
        let _ = client.disconnect();
    })
    .join()
    .expect("the publisher");
}

/// Creates the persistent session of client `client_id` on the broker at `127.0.0.1:port`,
/// subscribed to `topic` at QoS 1, and leaves: from then on the broker keeps the topic's
/// messages for that client until it connects (as a deployment does before its first
/// start, so that nothing published before the job first runs is dropped).
pub fn create_session(port: u16, client_id: &str, topic: &str) {
    let (client_id, topic) = (client_id.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_clean_session(false);
        let (client, mut connection) = Client::new(options, 10);
        client
            .subscribe(&topic, QoS::AtLeastOnce)
            .expect("queue the subscription");
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("subscribing on 127.0.0.1:{port}: {e}"),
            }
        }
        let _ = client.disconnect();
        // Until the DISCONNECT is written and the broker closes the connection.
        for event in connection.iter() {
            if event.is_err() {
                break;
            }
        }
    })
    .join()
    .expect("the session's creator");
}

/// The first `n` lines of the bundled text, cycled.
pub fn lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/shakespeare.txt"),
    )
    .expect("the bundled text");
    text.lines().cycle().take(n).map(str::to_string).collect()
}
