#!/bin/bash
# InfluxDB 2.x first-start script (docker-compose.yml mounts this directory at
# /docker-entrypoint-initdb.d). The image runs it once, right after `influx setup` created org
# `mekong` and bucket `ioc`, with the influx CLI already configured with the admin token.
#
# 1. DBRP mapping: InfluxQL database `ioc` (retention policy `autogen`) -> bucket `ioc`, so the
#    API and Grafana query with InfluxQL through /query, as on InfluxDB 1.x and 3.x, and the
#    1.x /write API (IOC_INFLUX_API=v1, IOC_INFLUX_DB=ioc) writes to the same bucket.
# 2. A v1 user for Grafana ($GRAFANA_INFLUX_USER / $GRAFANA_INFLUX_PASSWORD), read-only on `ioc`.
set -euo pipefail

: "${DOCKER_INFLUXDB_INIT_ORG:?}"
: "${DOCKER_INFLUXDB_INIT_BUCKET_ID:?exported by the image after setup}"
: "${GRAFANA_INFLUX_USER:?set in docker-compose.yml}"
: "${GRAFANA_INFLUX_PASSWORD:?set GRAFANA_INFLUX_PASSWORD in .env}"

influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --db ioc \
  --rp autogen \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --default

influx v1 auth create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --username "${GRAFANA_INFLUX_USER}" \
  --password "${GRAFANA_INFLUX_PASSWORD}" \
  --read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --description "Grafana: InfluxQL, read-only on bucket ioc"

echo "ioc init: DBRP ioc/autogen -> bucket ioc; v1 user ${GRAFANA_INFLUX_USER} (read)"
