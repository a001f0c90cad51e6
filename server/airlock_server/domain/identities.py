"""Approvers, accounts and credentials: the people and systems that call Airlock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from airlock_server.domain.errors import FieldViolation, InvalidArgument
from airlock_server.domain.principals import ACCOUNT_ID, NAME, Principal

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\Z")
MAX_DISPLAY_NAME = 128
MAX_DESCRIPTION = 256


@dataclass(frozen=True)
class Approver:
    approver_id: str
    display_name: str
    email: str
    enabled: bool
    create_time: datetime
    disable_time: datetime | None = None


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    create_time: datetime


@dataclass(frozen=True)
class Credential:
    """A bearer credential's metadata. The token itself exists only as a hash."""

    credential_id: str
    principal: Principal
    description: str
    create_time: datetime
    expire_time: datetime | None = None
    revoke_time: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        if self.revoke_time is not None:
            return False
        return self.expire_time is None or now < self.expire_time


def validate_approver(approver_id: str, display_name: str, email: str) -> None:
    violations: list[FieldViolation] = []
    if not NAME.match(approver_id):
        violations.append(FieldViolation("approver_id", "must match [a-zA-Z0-9._-]{1,64}"))
    if not display_name.strip() or len(display_name) > MAX_DISPLAY_NAME:
        violations.append(
            FieldViolation("display_name", f"must be 1 to {MAX_DISPLAY_NAME} characters")
        )
    if email and not EMAIL.match(email):
        violations.append(FieldViolation("email", "must be an email address"))
    if violations:
        raise InvalidArgument(violations)


def validate_account(account_id: str, name: str) -> None:
    violations: list[FieldViolation] = []
    if not ACCOUNT_ID.match(account_id):
        violations.append(FieldViolation("account_id", "an account id is exactly 12 digits"))
    if not NAME.match(name):
        violations.append(FieldViolation("name", "must match [a-zA-Z0-9._-]{1,64}"))
    if violations:
        raise InvalidArgument(violations)


def validate_description(description: str, field: str = "description") -> None:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgument.field(field, f"at most {MAX_DESCRIPTION} characters")
