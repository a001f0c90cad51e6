"""The SDK exposes the server's reason as the contract's ErrorReason enum, beside the string."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from airlock.v1 import errors_pb2
from airlock_client import ErrorReason, FailedPreconditionError, StatusCode
from airlock_client.errors import from_status
from airlock_server.domain.errors import Reason


def failure(reason: str, domain: str = "airlock") -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
    return status_pb2.Status(code=9, message="no", details=[detail])


def test_a_known_reason_is_its_enum_value() -> None:
    err = from_status(StatusCode.FAILED_PRECONDITION, "no", failure("TEAM_NOT_ACTIVE"))
    assert isinstance(err, FailedPreconditionError)
    assert err.reason == "TEAM_NOT_ACTIVE"
    assert err.error_reason == errors_pb2.TEAM_NOT_ACTIVE == ErrorReason.Value("TEAM_NOT_ACTIVE")


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_every_reason_the_server_sends_maps_to_its_value(reason: Reason) -> None:
    err = from_status(StatusCode.FAILED_PRECONDITION, "no", failure(reason.value))
    assert ErrorReason.Name(err.error_reason) == reason.value


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, ""),  # no rich status at all (a connection failure)
        (failure("A_REASON_FROM_A_NEWER_SERVER"), "A_REASON_FROM_A_NEWER_SERVER"),
        (failure("TEAM_NOT_ACTIVE", domain="googleapis.com"), "TEAM_NOT_ACTIVE"),
    ],
    ids=["none", "newer", "other-domain"],
)
def test_anything_else_is_unspecified_and_keeps_its_string(
    status: status_pb2.Status | None, reason: str
) -> None:
    err = from_status(StatusCode.FAILED_PRECONDITION, "no", status)
    assert err.error_reason == errors_pb2.ERROR_REASON_UNSPECIFIED
    assert err.reason == reason
