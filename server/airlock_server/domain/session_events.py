"""The events of a session's life, one constructor per type (docs/event-log.md).

Their details are part of the hash-chained, signed log: a constructor is the one place its
type's shape is written.
"""

from __future__ import annotations

import hashlib

from airlock_server.domain.events import NewEvent, format_time
from airlock_server.domain.principals import SYSTEM, Principal
from airlock_server.domain.sessions import (
    Session,
    SessionStatus,
    VoteDecision,
    draft_digest,
)


def session_subject(session_id: str) -> str:
    return f"session:{session_id}"


def comment_digest(comment: str) -> str:
    """Events name a comment by its SHA-256: the log proves it without carrying its body."""
    return hashlib.sha256(comment.encode("utf-8")).hexdigest()


def _details(s: Session) -> dict[str, object]:
    return {
        "session_id": s.session_id,
        "kind": s.kind.value,
        "team_id": s.team_id,
        "team_version": s.team_version,
        "action": s.action,
        "protected_resource": s.protected_resource,
        "state": s.state.value,
        "status": s.status.value,
        "approvals": s.approval_count,
        "rejections": s.rejection_count,
    }


_FINAL_EVENTS = {
    SessionStatus.APPROVED: "session.approved",
    SessionStatus.REJECTED: "session.rejected",
    SessionStatus.EXPIRED: "session.expired",
    SessionStatus.CANCELLED_BY_USER: "session.cancelled",
    SessionStatus.CONFIGURATION_CHANGED: "session.cancelled",
    SessionStatus.TEAM_DELETED: "session.cancelled",
}


def session_created(session: Session) -> NewEvent:
    return NewEvent(
        "session.created",
        session.requester,
        (
            session_subject(session.session_id),
            f"team:{session.team_id}",
            session.protected_resource,
        ),
        {
            **_details(session),
            "min_approvals": session.min_approvals,
            "approver_ids": list(session.approver_ids),
            "expire_time": format_time(session.expire_time),
            "comment_sha256": comment_digest(session.comment),
            **({"draft_sha256": draft_digest(session.draft)} if session.draft is not None else {}),
        },
    )


def vote_cast(
    voter: Principal,
    session_id: str,
    decision: VoteDecision,
    comment: str,
    signature: bytes,
    channel: str = "",
) -> NewEvent:
    """`channel`: where the vote came from when not the API ("portal")."""
    return NewEvent(
        "vote.cast",
        voter,
        (session_subject(session_id), f"approver:{voter.subject}"),
        {
            "session_id": session_id,
            "approver_id": voter.subject,
            "decision": decision.value,
            "comment_sha256": comment_digest(comment),
            "signature": signature.hex(),
            **({"channel": channel} if channel else {}),
        },
    )


def session_ended(after: Session, actor: Principal) -> NewEvent:
    """session.approved, .rejected, .expired or .cancelled: the session just became final."""
    return NewEvent(
        _FINAL_EVENTS[after.status],
        actor,
        (session_subject(after.session_id), after.protected_resource),
        {**_details(after), "message": after.status_message},
    )


def session_completed(after: Session, reporter: Principal) -> NewEvent:
    """The service that started a generic session reported its execution."""
    return NewEvent(
        "session.completed",
        reporter,
        (session_subject(after.session_id), after.protected_resource),
        {
            "session_id": after.session_id,
            "execution_status": after.execution_status.value,
            "message": after.execution_message,
        },
    )


def session_executed(done: Session, ok: bool) -> NewEvent:
    """Airlock ran the effect of a session it decided (session.executed), or could not."""
    return NewEvent(
        "session.executed" if ok else "session.execution_failed",
        SYSTEM,
        (session_subject(done.session_id), done.protected_resource),
        {"session_id": done.session_id, "message": done.execution_message},
    )
