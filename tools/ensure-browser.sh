#!/usr/bin/env bash
# Install what the dashboard's browser tests need: Debian's chromium (Playwright drives it through
# executable_path; no browser download). Needs root or an already installed chromium.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the dashboard's browser tests..."
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-core >/dev/null
else
  echo "chromium is missing: install Debian's 'chromium' package to run the dashboard tests" >&2
  exit 1
fi
