"""The edge (transport/edge.py): every field of every request in range, before a use case."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from airlock.v1 import (
    audit_service_pb2,
    event_pb2,
    identity_service_pb2,
    session_service_pb2,
    team_service_pb2,
)
from airlock_server.domain.errors import InvalidArgument
from airlock_server.transport.edge import (
    MAX_INT64,
    MAX_STRING,
    Undecodable,
    admit,
    decoding,
    fingerprint,
)


def refused_fields(request: object) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        admit(request)
    return [v.field for v in caught.value.violations]


def test_a_well_formed_request_is_admitted() -> None:
    admit(
        identity_service_pb2.IssueCredentialRequest(
            description="ann", expire_time=timestamp_pb2.Timestamp(seconds=1_900_000_000)
        )
    )
    admit(audit_service_pb2.ListEventsRequest(after_seq=MAX_INT64))


def test_timestamps_out_of_range_and_bad_nanos_are_named() -> None:
    request = session_service_pb2.ListSessionsRequest(
        create_time_start=timestamp_pb2.Timestamp(seconds=253_402_300_800),
        create_time_end=timestamp_pb2.Timestamp(seconds=0, nanos=1_000_000_000),
    )
    assert refused_fields(request) == ["create_time_start", "create_time_end.nanos"]


def test_a_nested_timestamp_is_named_by_its_path() -> None:
    request = audit_service_pb2.VerifyLogRequest(
        checkpoint=event_pb2.LogCheckpoint(time=timestamp_pb2.Timestamp(seconds=-62_135_596_801))
    )
    assert refused_fields(request) == ["checkpoint.time"]


def test_durations_past_a_thousand_years_or_with_mixed_signs_are_refused() -> None:
    request = team_service_pb2.CreateApprovalTeamRequest(name="t")
    request.session_ttl.seconds = 365_251 * 86_400
    request.invitation_ttl.seconds = 5
    request.invitation_ttl.nanos = -1
    assert refused_fields(request) == ["session_ttl", "invitation_ttl.nanos"]


def test_nul_and_overlong_strings_are_refused_also_in_maps() -> None:
    request = session_service_pb2.StartSessionRequest(
        team_id="a\x00b", comment="x" * (MAX_STRING + 1), metadata={"k": "v\x00"}
    )
    assert refused_fields(request) == ["team_id", "metadata['k']", "comment"]


def test_int64_at_the_storage_edge_is_refused() -> None:
    assert refused_fields(audit_service_pb2.ListEventsRequest(after_seq=2**63 - 1)) == ["after_seq"]


def test_an_undecodable_body_becomes_invalid_argument() -> None:
    decode = decoding(identity_service_pb2.CreateApproverRequest.FromString)
    assert decode is not None
    body = decode(b"\xff\xff\xff\xff")
    assert isinstance(body, Undecodable)
    with pytest.raises(InvalidArgument) as caught:
        admit(body)
    assert caught.value.reason == "UNDECODABLE_REQUEST"
    ok = decode(identity_service_pb2.CreateApproverRequest(approver_id="a").SerializeToString())
    assert ok.approver_id == "a"


def test_the_fingerprint_ignores_request_id_and_sees_everything_else() -> None:
    a = identity_service_pb2.CreateApproverRequest(approver_id="x1", request_id="r1")
    same = identity_service_pb2.CreateApproverRequest(approver_id="x1", request_id="r2")
    other = identity_service_pb2.CreateApproverRequest(approver_id="x2", request_id="r1")
    assert fingerprint(a) == fingerprint(same)
    assert fingerprint(a) != fingerprint(other)
    assert len(fingerprint(a)) == 64
    assert a.request_id == "r1"  # the request itself is left as it came
    assert fingerprint(identity_service_pb2.CreateApproverRequest(approver_id="x1")) == ""
