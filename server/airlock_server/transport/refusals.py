"""Refusals of an authenticated caller on a guarded object: each is a `call.denied` event of
the log, within a budget per principal (transport/limits.py) beyond which the call is
RESOURCE_EXHAUSTED and not recorded (the log does not grow with a caller's retries)."""

from __future__ import annotations

from typing import Any

import grpc
import structlog

from airlock_server.app.audit import AuditService
from airlock_server.app.identity import Caller
from airlock_server.domain.errors import DomainError
from airlock_server.transport.errors import status_code_for
from airlock_server.transport.limits import Limits

log = structlog.get_logger("airlock.rpc")

RECORDED_DENIALS = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)

# Request fields (and error metadata keys) that name what a call touches, and how the log's
# subjects spell them.
_SUBJECT_FIELDS = {
    "team_id": "team:",
    "session_id": "session:",
    "grant_id": "grant:",
    "approver_id": "approver:",
    "credential_id": "credential:",
    "invitation_id": "invitation:",
    "account_id": "account:",
    "vault_arn": "",
    "protected_resource": "",
}
_SUBJECT_METADATA = {
    "".join(w if i == 0 else w.title() for i, w in enumerate(k.split("_"))): v
    for k, v in _SUBJECT_FIELDS.items()
}


def denied_subjects(request: Any, error: DomainError) -> list[str]:
    """What a refused call tried to touch, where the request or the error names it."""
    found: list[str] = []
    for name, prefix in _SUBJECT_FIELDS.items():
        value = getattr(request, name, None)
        if isinstance(value, str) and value:
            found.append(prefix + value)
    for key, value in error.metadata.items():
        spelled = _SUBJECT_METADATA.get(key)
        if spelled is not None and value:
            found.append(spelled + value)
    return list(dict.fromkeys(found))


class Refusals:
    def __init__(self, audit: AuditService | None, limits: Limits) -> None:
        self._audit = audit
        self._limits = limits

    async def answer(
        self, caller: Caller | None, method: str, request: Any, error: DomainError
    ) -> DomainError:
        """The error to answer for a call that failed with `error`: itself, or
        RESOURCE_EXHAUSTED once the caller has made too many refused calls. A recorded
        refusal is written after the refused use case rolled back, in its own transaction;
        a failure to write it is logged, never turned into the caller's answer."""
        if caller is None or status_code_for(error) not in RECORDED_DENIALS:
            return error
        error = self._limits.refusal(str(caller.principal), error)
        code = status_code_for(error)
        if self._audit is None or code not in RECORDED_DENIALS:
            return error
        try:
            await self._audit.record_denial(
                caller.principal, method, code.name, error.reason, denied_subjects(request, error)
            )
        except Exception:
            log.exception("rpc.denial_not_recorded", method=method, reason=error.reason)
        return error
