#!/usr/bin/env bash
# Make sure Debian's mosquitto and influxdb (InfluxDB 1.x, `influxd`) are installed, with
# influxdb-client (the `influx` shell the README's first query uses), postgresql
# for the device registry's tests (its initdb and postgres live in /usr/lib/postgresql/<version>/bin),
# and mosquitto-dev and libmosquitto-dev with a C compiler for the broker plugin of ThingsBoard's device API.
# Installs them when missing and running as root; otherwise says what to install.
set -euo pipefail

# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

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
# The ThingsBoard identity plugin (deploy/mosquitto-plugin) is built against the broker's headers
# (mosquitto-dev: mosquitto_broker.h, mosquitto_plugin.h) and the client library's (libmosquitto-dev:
# mosquitto.h, which mosquitto-dev does not pull in with --no-install-recommends).
[ -f /usr/include/mosquitto_broker.h ] || missing+=(mosquitto-dev)
[ -f /usr/include/mosquitto.h ] || missing+=(libmosquitto-dev)
have cc || missing+=(gcc libc6-dev)
have make || missing+=(make)
apt_install "the servers the tests start" "Or run the whole stack in containers with:  docker compose up" ${missing[@]+"${missing[@]}"}
# Debian may start the packaged services it installed; ours run on their own ports and data dirs.
