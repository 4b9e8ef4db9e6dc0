#!/usr/bin/env bash
# Installs headless Chromium for the status page's browser test (tests/ui_browser.rs), on
# Debian or Ubuntu, when it is missing. Run as root (as .ci/run does) or with sudo available.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium.sh: no apt-get here; install Chromium with your package manager," \
         "or set RIVULET_CHROMIUM to a Chromium or Chrome binary" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
