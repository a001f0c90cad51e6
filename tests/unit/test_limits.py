"""The load bounds' rules, without a server: stream slots, the refusal token bucket, and the
RetryInfo that a RESOURCE_EXHAUSTED answer carries."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2, error_details_pb2

from airlock_server.domain.errors import (
    TOO_MANY_REFUSED_CALLS,
    TOO_MANY_STREAMS,
    PermissionDenied,
    ResourceExhausted,
)
from airlock_server.transport.errors import to_status
from airlock_server.transport.limits import Limits, RefusalBudget, StreamSlots


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stream_slots_per_principal_then_per_process() -> None:
    slots = StreamSlots(total=3, per_principal=2)
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(ResourceExhausted, match="the limit per caller") as per_caller:
            slots.hold("a").__enter__()
        assert per_caller.value.reason == TOO_MANY_STREAMS
        with slots.hold("b"):
            assert slots.open == 3
            with pytest.raises(ResourceExhausted, match="this server has 3 streams open"):
                slots.hold("c").__enter__()
    assert slots.open == 0
    with slots.hold("a"), slots.hold("a"):  # given back
        assert slots.open == 2


def test_the_refusal_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = RefusalBudget(rate=2.0, burst=3, clock=clock)
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)  # one token comes back every 0.5 s
    assert bucket.take("b") == 0.0  # another caller has its own
    clock.now += 0.5
    assert bucket.take("a") == 0.0
    assert bucket.take("a") > 0
    clock.now += 10  # refilled to the burst, not beyond
    assert [bucket.take("a") for _ in range(4)][-1] > 0


def test_a_throttled_refusal_is_resource_exhausted_with_retry_info() -> None:
    limits = Limits.of(refusal_rate=1.0, refusal_burst=1)
    denied = PermissionDenied("no")
    assert limits.refusal("a", denied) is denied
    throttled = limits.refusal("a", denied)
    assert isinstance(throttled, ResourceExhausted)
    assert throttled.reason == TOO_MANY_REFUSED_CALLS
    status = to_status(throttled)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert status.details[1].Unpack(retry)
    assert info.reason == TOO_MANY_REFUSED_CALLS
    assert 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 1.0
