#!/usr/bin/env bash
# Installs what two tests need beyond Rust, on Debian or Ubuntu, when it is missing:
# headless Chromium for the status page's browser test (tests/ui_browser.rs) and promtool
# (Debian's `prometheus` package; its server is not started) for the /metrics check
# (tests/ui_promtool.rs). Run as root (as .ci/run does) or with sudo available.
set -euo pipefail

packages=()
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    packages+=(chromium)
fi
if ! command -v promtool >/dev/null 2>&1; then
    packages+=(prometheus)
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
