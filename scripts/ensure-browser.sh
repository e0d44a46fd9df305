#!/usr/bin/env bash
# What the browser tests need (tests/integration/test_desk_browser.py, test_grafana_schema.py):
# Debian's chromium (/usr/bin/chromium, driven by playwright-core: no browser download), Node.js 18
# or newer with npm, and the npm packages of tests/browser/package-lock.json in tests/browser/node_modules
# (ignored by git), installed with `npm ci` when missing or not of the current lock file.
# Installs Debian packages when missing and running as root; otherwise says what to install.
set -euo pipefail

# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
browser="$root/tests/browser"

# Ubuntu's chromium package only installs a shim that runs the snap, which does not work in containers.
shim_note="On Ubuntu, apt's chromium is a snap shim that does not work in containers: install Debian's chromium package or Google's Chrome build so that /usr/bin/chromium is a real browser."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

apt_install "the browser tests" "$shim_note" ${missing[@]+"${missing[@]}"}

if ! version="$(timeout 60 /usr/bin/chromium --version 2>&1)"; then
  echo "/usr/bin/chromium does not run: ${version:0:300}" >&2
  echo "$shim_note" >&2
  exit 1
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "The browser tests need Node.js 18 or newer (playwright-core 1.61); this one is $(node --version)" >&2
  exit 1
fi

# A copy of the lock file npm ci installed: reinstall when it is missing or differs from the lock.
stamp="$browser/node_modules/.installed-lock.json"
if [ ! -f "$stamp" ] || ! cmp -s "$browser/package-lock.json" "$stamp"; then
  echo "Installing the browser tests' npm packages (tests/browser/package-lock.json)…" >&2
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$browser/package-lock.json" "$stamp"
  echo "Installed tests/browser/node_modules" >&2
fi
