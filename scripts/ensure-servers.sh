#!/usr/bin/env bash
# Make sure Debian's mosquitto and influxdb (InfluxDB 1.x, `influxd`) are installed, with
# influxdb-client (the `influx` shell the README's first query uses), postgresql
# for the device registry's tests (its initdb and postgres live in /usr/lib/postgresql/<version>/bin),
# and mosquitto-dev with a C compiler for the broker plugin of ThingsBoard's device API.
# Installs them when missing and running as root; otherwise says what to install.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; }

missing=()
have mosquitto || missing+=(mosquitto)
have influxd || missing+=(influxdb)
have influx || missing+=(influxdb-client)  # `influx -database ioc -execute '…'`, as in the README
have curl || missing+=(curl)  # the README's API tour (tests/integration/test_readme_tour.py)
have mosquitto_pub || missing+=(mosquitto-clients)
have victoria-metrics || missing+=(victoria-metrics)  # a real /api/v2/write server for the v2 path tests
have_postgres || missing+=(postgresql)  # the registry's tests start their own server (ioc/servers.py)
# The ThingsBoard identity plugin (deploy/mosquitto-plugin) is built against the broker's headers.
[ -f /usr/include/mosquitto_broker.h ] || missing+=(mosquitto-dev)
have cc || missing+=(gcc libc6-dev)
have make || missing+=(make)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}" >&2
  echo "Install them with:  sudo apt-get install ${missing[*]}" >&2
  echo "or run the whole stack in containers with:  docker compose up" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing ${missing[*]} and no apt-get here: install them, or use docker compose up" >&2
  exit 1
fi
echo "Installing ${missing[*]} from Debian's packages…" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}
# Debian may start the packaged services; ours run on their own ports and data dirs.
echo "Installed ${missing[*]}" >&2
