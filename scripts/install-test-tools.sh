#!/usr/bin/env bash
# Installs what tests need beyond Rust, on Debian or Ubuntu, when it is missing: headless
# Chromium for the status page's browser test (tests/ui_browser.rs), promtool (Debian's
# `prometheus` package) for the /metrics check (tests/ui_promtool.rs), redis-server for
# the Redis Streams source (tests/redis_stream.rs), and mosquitto (the MQTT broker; Debian
# installs it as /usr/sbin/mosquitto) for the MQTT receiver (tests/mqtt_stream.rs), and
# nats-server (JetStream, /usr/sbin/nats-server) for the NATS connector (connectors/nats), and
# iproute2 (`ip`) for the executor processes on network namespaces (tests/cluster_hosts.rs,
# which also needs root). The
# tests start and stop servers of their own on free 127.0.0.1 ports; nothing here needs to
# run (the package's own service is not needed, and is harmless). Run as root (as .ci/run
# does) or with sudo available.
set -euo pipefail

packages=()
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    packages+=(chromium)
fi
if ! command -v promtool >/dev/null 2>&1; then
    packages+=(prometheus)
fi
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    packages+=(redis-server)
fi
# /usr/sbin is not on every user's PATH: look there too.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    packages+=(mosquitto)
fi
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    packages+=(nats-server)
fi
if ! command -v ip >/dev/null 2>&1 && [ ! -x /usr/sbin/ip ] && [ ! -x /sbin/ip ]; then
    packages+=(iproute2)
fi
# The Kubernetes crate's API client links the system's OpenSSL (kube's `openssl-tls`).
if ! pkg-config --exists openssl 2>/dev/null; then
    packages+=(libssl-dev pkg-config)
fi
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools.sh: no apt-get here; install ${packages[*]} with your package" \
         "manager (or set RIVULET_CHROMIUM to a Chromium or Chrome binary)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
