# syntax=docker/dockerfile:1
# Airlock server image. Two stages: the builder installs the locked dependencies
# (requirements/server.txt, every file checked against its hash) and the project's wheel (with
# the Alembic migrations inside, as airlock_server/_migrations) into a venv; the runtime stage
# copies only that venv and runs as the numeric user 10001.
#
#   docker build -t airlock .
#   docker volume create airlock-data
#   docker run --rm -v airlock-data:/var/lib/airlock airlock migrate          # schema, its own step
#   docker run --rm -v airlock-data:/var/lib/airlock airlock bootstrap        # first admin token, once
#   docker run -d -p 127.0.0.1:50051:50051 -v airlock-data:/var/lib/airlock airlock   # serve
#
# With PostgreSQL, pass -e AIRLOCK_DATABASE_URL=postgresql://user:pass@host/db to every step;
# compose.yaml runs two replicas on PostgreSQL. Settings are AIRLOCK_* variables (see
# `docker run --rm airlock --help`); AIRLOCK_LISTEN picks the address, and the health check reads
# the same variables, so it follows the port and TLS (AIRLOCK_TLS_CERT/KEY) of the server.
#
# The base image is pinned by digest: the multi-platform index of python:3.11-slim-bookworm
# (Python 3.11.16, Debian 12), as docker-library/repo-info lists it at commit
# 33a22f41ac7bf613bc03380b0317536a9a7fb5e8 (repos/python/remote/3.11-slim-bookworm.md). To move
# to a newer one, take the index digest from `docker buildx imagetools inspect
# python:3.11-slim-bookworm` (the "Digest:" line) or from that repo-info file today, replace it
# below, rebuild, and run the tests (tests/unit/test_deployment.py checks that a digest is there).
# The wheel's build backend (hatchling, builder stage only) is the one unlocked download; nothing
# of it reaches the runtime image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/airlock
COPY requirements/server.txt requirements/server.txt
RUN /opt/airlock/bin/pip install --require-hashes --no-deps -r requirements/server.txt
COPY pyproject.toml README.md LICENSE ./
COPY server/ server/
COPY clients/ clients/
COPY migrations/ migrations/
RUN /opt/airlock/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/airlock/bin/pip install --no-deps /tmp/wheels/airlock-*.whl \
    && /opt/airlock/bin/pip check \
    && /opt/airlock/bin/python -c "from airlock_server.persistence.migrate import migrations_dir; print(migrations_dir())"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 airlock \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/airlock --create-home \
        --shell /usr/sbin/nologin airlock
COPY --from=builder /opt/airlock /opt/airlock
ENV PATH=/opt/airlock/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GRPC_VERBOSITY=NONE \
    AIRLOCK_LISTEN=0.0.0.0:50051 \
    AIRLOCK_DATABASE_URL=sqlite:////var/lib/airlock/airlock.db \
    AIRLOCK_ADMIN_TOKEN_FILE=/var/lib/airlock/admin.token \
    AIRLOCK_LOG_KEY_FILE=/var/lib/airlock/log-key.pem \
    AIRLOCK_LOG_FORMAT=json
# Numeric, so that a runtime enforcing runAsNonRoot can tell it is not root without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/airlock
VOLUME ["/var/lib/airlock"]
EXPOSE 50051
# grpc.health.v1 on AIRLOCK_LISTEN's port of this container, with TLS when AIRLOCK_TLS_CERT is set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["airlock-server", "healthcheck", "--timeout", "4"]
ENTRYPOINT ["airlock-server"]
CMD ["serve"]
