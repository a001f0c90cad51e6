"""What an operator sees: OpenTelemetry metrics of every call and of the service's state,
exported for Prometheus on `--metrics-listen`, and a trace id for every call's log line.

Each call gets a trace id (the caller's W3C `traceparent`'s when it sends one): it goes on the
`rpc.completed` line, and its duration and status code into the
`rpc.server.call.duration` histogram (OpenTelemetry's RPC conventions: by service, method and
code). Gauges read values the process keeps (open streams, the pool) or that a sampler reads
from the database every few seconds (pending sessions, team slack): a scrape never waits for
the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagate import extract
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, start_http_server

log = structlog.get_logger("airlock.metrics")

CALL_DURATION = "rpc.server.call.duration"
# Seconds: from a cached authentication (sub-millisecond) to a long stream.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)
SAMPLE_INTERVAL = 15.0


@dataclass(slots=True)
class Call:
    """One call being served: its method's names, its start, its trace id (hex, as W3C spells
    it: the caller's when it sent a valid `traceparent`, else a new one)."""

    service: str
    method: str
    trace_id: str
    started: float = field(default_factory=time.perf_counter)


def trace_id_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The trace a call belongs to. Only a call that carries a `traceparent` pays for the W3C
    propagator; the others get a random id, as a new root span would (issue 11: a span per
    call, exported nowhere, cost more than the rest of the call log)."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            parent = trace.get_current_span(extract({key: value})).get_span_context()
            if parent.is_valid:
                return format(parent.trace_id, "032x")
            break
    trace_id = 0
    while not trace_id:
        trace_id = random.getrandbits(128)
    return format(trace_id, "032x")


@dataclass
class Sampled:
    """The latest values read from the database by the sampler."""

    pending_sessions: int = 0
    oldest_pending_age: float = 0.0
    team_slack: dict[str, int] = field(default_factory=dict)


class Telemetry:
    """Spans and metrics of the process; `Telemetry()` alone gives trace ids only."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        # Per method, and per method and code: names and metric attributes built once.
        self._names: dict[str, tuple[str, str]] = {}
        self._attributes: dict[tuple[str, str, grpc.StatusCode], dict[str, str | int]] = {}
        provider = meter_provider or metrics.NoOpMeterProvider()
        self.meter = provider.get_meter("airlock_server")
        self._duration = self.meter.create_histogram(
            CALL_DURATION, unit="s", description="Duration of the calls served, by method and code"
        )
        self._sweeper_failures = self.meter.create_counter(
            "airlock.sweeper.failures", description="Sweeper passes that failed, by task"
        )
        self._notification_attempts = self.meter.create_counter(
            "airlock.notifications.attempts",
            description="Notification delivery attempts, by channel and outcome "
            "(delivered, retry, dead)",
        )
        self.sampled = Sampled()

    def start(self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> Call:
        names = self._names.get(method)
        if names is None:
            service, _, name = method.lstrip("/").partition("/")
            names = self._names[method] = (service, name)
        return Call(names[0], names[1], trace_id_of(metadata))

    def finish(self, call: Call, code: grpc.StatusCode) -> None:
        key = (call.service, call.method, code)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = {
                "rpc.system": "grpc",
                "rpc.service": call.service,
                "rpc.method": call.method,
                "rpc.grpc.status_code": code.value[0],
            }
        self._duration.record(time.perf_counter() - call.started, attributes)

    def sweeper_failed(self, task: str, count: int = 1) -> None:
        """`count` 0 makes the task's series exist (at 0) before any failure."""
        self._sweeper_failures.add(count, {"task": task})

    def notification_attempt(self, channel: str, outcome: str) -> None:
        """One delivery attempt (the dispatcher's observer): `outcome` is the state it left
        the notification in: delivered, retry (pending again) or dead."""
        self._notification_attempts.add(1, {"channel": channel, "outcome": outcome})

    def gauge(self, name: str, description: str, read: Callable[[], float | Mapping[str, float]],
              label: str = "") -> None:  # fmt: skip
        """An observable gauge; `read` returns a value, or values by `label`."""

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            value = read()
            if isinstance(value, Mapping):
                return [Observation(v, {label: k}) for k, v in value.items()]
            return [Observation(value)]

        self.meter.create_observable_gauge(name, [observe], description=description)

    def observe_state(self) -> None:
        """The sampled gauges (see `sample`)."""
        self.gauge(
            "airlock.sessions.pending",
            "Sessions waiting for votes",
            lambda: self.sampled.pending_sessions,
        )
        self.gauge(
            "airlock.sessions.oldest_pending_age",
            "Age in seconds of the oldest session waiting for votes (0: none)",
            lambda: self.sampled.oldest_pending_age,
        )
        self.gauge(
            "airlock.team.slack",
            "Active approvers minus M, per team (below 0: the quorum cannot be reached)",
            lambda: dict(self.sampled.team_slack),
            label="team_id",
        )

    async def sample(
        self,
        pending: Callable[[], Awaitable[tuple[int, float]]],
        slack: Callable[[], Awaitable[dict[str, int]]],
        interval: float = SAMPLE_INTERVAL,
    ) -> None:
        """Read the sampled gauges now and every `interval` seconds, until cancelled."""
        while True:
            try:
                count, age = await pending()
                self.sampled.pending_sessions, self.sampled.oldest_pending_age = count, age
                self.sampled.team_slack = await slack()
            except Exception as exc:
                log.warning("metrics.sample_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)


@dataclass
class MetricsEndpoint:
    """The Prometheus endpoint and the provider that feeds it."""

    telemetry: Telemetry
    provider: MeterProvider
    port: int
    _stop: Callable[[], None]

    def close(self) -> None:
        self._stop()
        with contextlib.suppress(Exception):
            self.provider.shutdown()


def serve_metrics(listen: str) -> MetricsEndpoint:
    """Metrics for Prometheus at http://<listen>/metrics (port 0: any free port)."""
    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(
        metric_readers=[reader],
        views=[
            View(
                instrument_name=CALL_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
            )
        ],
    )
    httpd, thread = start_http_server(int(port), host.strip("[]") or "127.0.0.1", registry)

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

    return MetricsEndpoint(Telemetry(provider), provider, int(httpd.server_port), stop)


def peer_of(context: Any) -> str:
    """The caller's address as gRPC names it ("ipv4:127.0.0.1:5555"), or ""."""
    try:
        return str(context.peer() or "")
    except Exception:
        return ""
