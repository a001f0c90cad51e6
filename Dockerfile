# syntax=docker/dockerfile:1
# Airlock server image. Two stages: the builder makes the wheel (with the Alembic migrations inside,
# as airlock_server/_migrations) and installs it with the server extra into a venv; the runtime
# stage copies only that venv and runs as a non-root user.
#
#   docker build -t airlock .
#   docker volume create airlock-data
#   docker run --rm -v airlock-data:/var/lib/airlock airlock migrate          # schema, its own step
#   docker run --rm -v airlock-data:/var/lib/airlock airlock bootstrap        # first admin token, once
#   docker run -d -p 50051:50051 -v airlock-data:/var/lib/airlock airlock     # serve
#
# With PostgreSQL, pass -e AIRLOCK_DATABASE_URL=postgresql://user:pass@host/db to every step.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/airlock
COPY pyproject.toml README.md ./
COPY server/ server/
COPY clients/ clients/
COPY migrations/ migrations/
RUN /opt/airlock/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/airlock/bin/pip install "$(ls /tmp/wheels/airlock-*.whl)[server]" \
    && /opt/airlock/bin/python -c "from airlock_server.persistence.migrate import migrations_dir; print(migrations_dir())"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 airlock \
    && useradd --system --uid 10001 --gid airlock --home-dir /var/lib/airlock --create-home \
        --shell /usr/sbin/nologin airlock
COPY --from=builder /opt/airlock /opt/airlock
ENV PATH=/opt/airlock/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIRLOCK_DATABASE_URL=sqlite:////var/lib/airlock/airlock.db \
    AIRLOCK_ADMIN_TOKEN_FILE=/var/lib/airlock/admin.token \
    AIRLOCK_LOG_KEY_FILE=/var/lib/airlock/log-key.pem \
    AIRLOCK_LOG_FORMAT=json
USER airlock:airlock
WORKDIR /var/lib/airlock
VOLUME ["/var/lib/airlock"]
EXPOSE 50051
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; r = g.HealthStub(grpc.insecure_channel('127.0.0.1:50051')).Check(h.HealthCheckRequest(), timeout=4); sys.exit(r.status != h.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["airlock-server"]
CMD ["serve", "--listen", "0.0.0.0:50051"]
