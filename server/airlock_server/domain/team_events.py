"""The events of approval teams, their invitations and shares, one constructor per type
(docs/event-log.md): the one place each type's shape is written."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from airlock_server.domain.events import NewEvent, format_time
from airlock_server.domain.principals import SYSTEM, Principal
from airlock_server.domain.session_events import session_subject
from airlock_server.domain.sessions import KeyChange, TeamDraft, draft_digest
from airlock_server.domain.teams import Team, TeamMember, TeamVersion


def team_subject(team_id: str) -> str:
    return f"team:{team_id}"


def _moved(kind: str, team: Team, **details: object) -> NewEvent:
    """A team moved on its own or by a session's outcome: Airlock acting."""
    return NewEvent(
        kind,
        SYSTEM,
        (team_subject(team.team_id),),
        {
            "team_id": team.team_id,
            "state": team.state.value,
            "status": team.status.value,
            "version": team.current.version,
            **details,
        },
    )


def team_created(admin: Principal, team: Team) -> NewEvent:
    version = team.current
    return NewEvent(
        "team.created",
        admin,
        (team_subject(team.team_id), *(f"approver:{a}" for a in version.approver_ids)),
        {
            "team_id": team.team_id,
            "name": team.name,
            "version": version.version,
            "min_approvals": version.min_approvals,
            "approver_ids": list(version.approver_ids),
        },
    )


def _about_invitation(
    kind: str, actor: Principal, team_id: str, member: TeamMember, version: int
) -> NewEvent:
    return NewEvent(
        kind,
        actor,
        (team_subject(team_id), f"approver:{member.approver_id}"),
        {
            "invitation_id": member.invitation_id,
            "approver_id": member.approver_id,
            "version": version,
        },
    )


def invitation_sent(sender: Principal, team_id: str, member: TeamMember, version: int) -> NewEvent:
    """An invitation of a new team (sent by its creator) or of an approved draft (by Airlock)."""
    return _about_invitation("invitation.sent", sender, team_id, member, version)


def invitation_link_issued(
    admin: Principal, team_id: str, member: TeamMember, version: int
) -> NewEvent:
    """A one-time portal link for a PENDING invitation (only its digest is stored)."""
    return _about_invitation("invitation.link_issued", admin, team_id, member, version)


def invitation_answered(
    approver: Principal,
    team_id: str,
    invitation_id: str,
    version: int,
    public_key: bytes | None,
    replaced_key: bytes | None,
    channel: str = "",
) -> NewEvent:
    """invitation.accepted with the enrolled key (and the key it replaces, if any), or
    invitation.declined when `public_key` is None. `channel`: where the answer came from
    when not the API ("portal")."""
    accept = public_key is not None
    return NewEvent(
        "invitation.accepted" if accept else "invitation.declined",
        approver,
        (team_subject(team_id), f"approver:{approver.subject}"),
        {
            "invitation_id": invitation_id,
            "version": version,
            **({"public_key": public_key.hex()} if public_key is not None else {}),
            **({"replaced_key": replaced_key.hex()} if accept and replaced_key else {}),
            **({"channel": channel} if channel else {}),
        },
    )


def activation_decided(before: Team, settled: Team, active: bool) -> NewEvent:
    """A new team's answers or invitation TTL are in: team.activated, or .activation_failed."""
    return NewEvent(
        "team.activated" if active else "team.activation_failed",
        SYSTEM,
        (team_subject(before.team_id),),
        {
            "team_id": before.team_id,
            "version": settled.current.version,
            "status": settled.status.value,
        },
    )


def update_requested(
    admin: Principal,
    team: Team,
    draft: TeamVersion,
    shown: TeamDraft,
    session_id: str,
    reenroll_approver_ids: Sequence[str],
) -> NewEvent:
    return NewEvent(
        "team.update_requested",
        admin,
        (team_subject(team.team_id), *(f"approver:{a}" for a in draft.approver_ids)),
        {
            "team_id": team.team_id,
            "session_id": session_id,
            "version": team.current.version,
            "draft_version": draft.version,
            "min_approvals": draft.min_approvals,
            "approver_ids": list(draft.approver_ids),
            "reenroll_approver_ids": list(reenroll_approver_ids),
            "draft_sha256": draft_digest(shown),
            # Every key change the draft asks for, named (docs/signed-votes.md).
            "new_keys": [
                {
                    "approver_id": m.approver_id,
                    "public_key": m.public_key.hex(),
                    "signed_by_current_key": m.signed_by_current_key,
                }
                for m in shown.members
                if m.public_key is not None and m.change is not KeyChange.KEEPS_KEY
            ],
        },
    )


def update_approved(team: Team, session_id: str) -> NewEvent:
    return _moved("team.update_approved", team, session_id=session_id)


def update_failed(team: Team, session_id: str) -> NewEvent:
    return _moved("team.update_failed", team, session_id=session_id)


def team_updated(after: Team, previous_version: int) -> NewEvent:
    """A new version took force."""
    return _moved("team.updated", after, previous_version=previous_version)


def update_activation_failed(team: Team, draft_version: int) -> NewEvent:
    return _moved("team.update_activation_failed", team, draft_version=draft_version)


def deletion_requested(
    admin: Principal, team_id: str, session_id: str, pending_window_days: int
) -> NewEvent:
    return NewEvent(
        "team.deletion_requested",
        admin,
        (team_subject(team_id),),
        {
            "team_id": team_id,
            "session_id": session_id,
            "pending_window_days": pending_window_days,
        },
    )


def deletion_approved(
    team: Team, session_id: str, pending_window_days: int, complete_time: datetime
) -> NewEvent:
    return _moved(
        "team.deletion_approved",
        team,
        session_id=session_id,
        pending_window_days=pending_window_days,
        complete_time=format_time(complete_time),
    )


def deletion_failed(team: Team, session_id: str) -> NewEvent:
    return _moved("team.deletion_failed", team, session_id=session_id)


def team_deleted(team: Team) -> NewEvent:
    """The team is DELETED by its approved deletion."""
    return _moved("team.deleted", team)


def inactive_team_deleted(admin: Principal, team_id: str, previous_state: str) -> NewEvent:
    """team.deleted of a PENDING or INACTIVE team, which no one could vote on."""
    return NewEvent(
        "team.deleted",
        admin,
        (team_subject(team_id),),
        {"team_id": team_id, "previous_state": previous_state},
    )


def baseline_started(
    admin: Principal, team: Team, session_id: str, approver_ids: Sequence[str]
) -> NewEvent:
    return NewEvent(
        "team.baseline_started",
        admin,
        (team_subject(team.team_id), session_subject(session_id)),
        {
            "team_id": team.team_id,
            "session_id": session_id,
            "version": team.current.version,
            "approver_ids": list(approver_ids),
        },
    )


def team_shared(admin: Principal, team_id: str, principal: Principal) -> NewEvent:
    return NewEvent(
        "team.shared",
        admin,
        (team_subject(team_id), str(principal)),
        {"team_id": team_id, "principal": str(principal)},
    )


def team_unshared(admin: Principal, team_id: str, principal: Principal) -> NewEvent:
    return NewEvent(
        "team.unshared",
        admin,
        (team_subject(team_id), str(principal)),
        {"team_id": team_id, "principal": str(principal)},
    )
