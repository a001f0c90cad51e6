"""One table maps every domain error to a status code; the Status it sends follows AIP-193."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2

import airlock_server.domain
from airlock_server.domain import errors as e
from airlock_server.transport.errors import (
    DOMAIN,
    ERROR_TABLE,
    internal_status,
    status_code_for,
    to_status,
)

UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*\Z")
DOMAIN_DIR = Path(airlock_server.domain.__file__).parent

# Every domain module counts, today's (teams, identities) and those of later work (sessions,
# vaults, team_changes), so that a new error class cannot ship without its row.
for _module in pkgutil.iter_modules([str(DOMAIN_DIR)]):
    importlib.import_module(f"airlock_server.domain.{_module.name}")


def all_subclasses(cls: type[e.DomainError]) -> list[type[e.DomainError]]:
    found: list[type[e.DomainError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(all_subclasses(sub))
    return list(dict.fromkeys(found))


_CANDIDATES: list[type[e.DomainError]] = [e.DomainError, *all_subclasses(e.DomainError)]
ERROR_CLASSES = [c for c in _CANDIDATES if c.__module__.startswith("airlock_server.")]

# Mistakes of the caller: none of them may look like a server fault.
SERVER_FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}


def instance(cls: type[e.DomainError]) -> e.DomainError:
    """An instance built the way the class's own constructor wants it."""
    samples: dict[str, Any] = {
        "message": "something is wrong",
        "violations": [e.FieldViolation("name", "bad")],
        "kind": "approval team",
        "key": "team-1",
        "expected": 'W/"1"',
        "actual": 'W/"2"',
        "current": "ACTIVE",
        "target": "PENDING",
        "reason": e.Reason.TEAM_NOT_ACTIVE,
    }
    params = inspect.signature(cls.__init__).parameters
    args = {
        name: samples.get(name, "x")
        for name, p in params.items()
        if name != "self"
        and p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    return cls(**args)


def test_the_hierarchy_was_found() -> None:
    names = {c.__name__ for c in ERROR_CLASSES}
    assert {"InvalidArgument", "NotFound", "InvalidTransition", "Conflict"} <= names


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__qualname__)
def test_every_domain_error_has_a_row(cls: type[e.DomainError]) -> None:
    err = instance(cls)
    code = status_code_for(err)
    assert isinstance(code, grpc.StatusCode)
    assert code is not grpc.StatusCode.OK
    assert code not in SERVER_FAULTS


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__qualname__)
def test_every_reason_is_upper_snake(cls: type[e.DomainError]) -> None:
    assert UPPER_SNAKE.match(cls.reason), cls.reason
    assert len(cls.reason) <= 63
    assert UPPER_SNAKE.match(instance(cls).reason)


def test_every_row_is_a_domain_error() -> None:
    for cls in ERROR_TABLE:
        assert issubclass(cls, e.DomainError)


# That every reason is a member of the one catalogue (no literal, no reason built at run time) is
# tests/unit/test_error_reasons.py's job.


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (e.InvalidArgument.field("name", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (e.Unauthenticated("no token"), grpc.StatusCode.UNAUTHENTICATED),
        (e.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
        (e.NotFound("approver", "alice"), grpc.StatusCode.NOT_FOUND),
        (e.AlreadyExists("approver", "alice"), grpc.StatusCode.ALREADY_EXISTS),
        (
            e.FailedPrecondition("no", reason=e.Reason.TEAM_NOT_ACTIVE),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (e.EtagMismatch("a", "b"), grpc.StatusCode.FAILED_PRECONDITION),
        (e.InvalidTransition("team", "A", "B"), grpc.StatusCode.FAILED_PRECONDITION),
        (e.Unimplemented("later"), grpc.StatusCode.UNIMPLEMENTED),
        (e.Conflict("retry"), grpc.StatusCode.ABORTED),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, Exception) else x.name,
)
def test_the_table(err: e.DomainError, code: grpc.StatusCode) -> None:
    assert status_code_for(err) is code
    assert to_status(err).code == code.value[0]


def test_a_subclass_without_its_own_row_takes_its_parents() -> None:
    class Mine(e.NotFound):
        pass

    assert status_code_for(Mine("approver", "1")) is grpc.StatusCode.NOT_FOUND


def unpack(
    details: list[any_pb2.Any],
) -> tuple[list[error_details_pb2.ErrorInfo], list[error_details_pb2.BadRequest]]:
    infos, bad = [], []
    for d in details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            infos.append(info)
        elif d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            bad.append(br)
        else:  # pragma: no cover - a failure message
            raise AssertionError(f"unexpected detail {d.type_url}")
    return infos, bad


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__qualname__)
def test_to_status_packs_one_error_info(cls: type[e.DomainError]) -> None:
    err = instance(cls)
    status = to_status(err)
    infos, bad = unpack(list(status.details))
    assert len(infos) == 1
    assert infos[0].domain == DOMAIN == "airlock"
    assert infos[0].reason == err.reason
    assert dict(infos[0].metadata) == err.metadata
    assert status.message == err.message
    assert status.code == status_code_for(err).value[0]
    if isinstance(err, e.InvalidArgument):
        assert len(bad) == 1
    else:
        assert bad == []


def test_bad_request_names_every_field() -> None:
    err = e.InvalidArgument(
        [e.FieldViolation("name", "must match"), e.FieldViolation("min_approvals", "too big")]
    )
    infos, bad = unpack(list(to_status(err).details))
    assert infos[0].reason == "INVALID_ARGUMENT"
    assert [(v.field, v.description) for v in bad[0].field_violations] == [
        ("name", "must match"),
        ("min_approvals", "too big"),
    ]


def test_a_custom_reason_travels() -> None:
    err = e.FailedPrecondition(
        "expired", reason=e.Reason.INVITATION_EXPIRED, metadata={"invitationId": "i"}
    )
    infos, _ = unpack(list(to_status(err).details))
    assert infos[0].reason == "INVITATION_EXPIRED"
    assert dict(infos[0].metadata) == {"invitationId": "i"}


def test_internal_status_is_generic() -> None:
    status = internal_status()
    assert status.code == code_pb2.INTERNAL
    infos, bad = unpack(list(status.details))
    assert [(i.reason, i.domain) for i in infos] == [("INTERNAL", "airlock")]
    assert bad == []
    assert "details" in status.message
