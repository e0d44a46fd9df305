# The Mekong IOC Python image: `ioc ingest`, `ioc simulate`, ... (ENTRYPOINT ["ioc"]).
#   docker build -t mekong-ioc:0.1.0 .
# Build stage: install the package and its dependencies into a virtual environment.
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# .dockerignore keeps tests, docs, secrets (.env) and local state out of the context.
COPY . .
RUN pip install .

# Runtime stage: the virtual environment only, run as an unprivileged user.
FROM python:3.11-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# /data: the fleet file and the registry database; /broker-auth: where compose's ioc-init writes
# the local CA, the broker's certificate and the service passwords. Created here so that named
# volumes mounted there start owned by `ioc`.
RUN groupadd --system --gid 10001 ioc \
 && useradd --system --uid 10001 --gid ioc --home-dir /home/ioc --create-home --shell /usr/sbin/nologin ioc \
 && mkdir -p /data /broker-auth \
 && chown ioc:ioc /data /broker-auth

COPY --from=build /opt/venv /opt/venv

USER ioc
WORKDIR /home/ioc

# Prometheus metrics of `ioc ingest` (IOC_METRICS_PORT).
EXPOSE 9108

ENTRYPOINT ["ioc"]
CMD ["--help"]
