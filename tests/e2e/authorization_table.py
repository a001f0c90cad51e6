"""Who may do what: every RPC of airlock.v1 against every principal kind, with the answer.

The one source of truth for docs/authorization.md (written from this module by
`scripts/authorization_doc.py`; tests/unit/test_authorization_doc.py fails when the doc differs)
and for tests/e2e/test_authorization_matrix.py, which calls every RPC as every principal
against a real server and asserts these answers.

Pure data: no gRPC, no server imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OK = "OK"
PERMISSION_DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"


@dataclass(frozen=True)
class Principal:
    key: str
    title: str
    who: str


# The columns, in order. "none" sends no credential at all.
PRINCIPALS: tuple[Principal, ...] = (
    Principal("admin", "admin", "the org's admin credential"),
    Principal(
        "owner",
        "account (owner)",
        "the account that owns the vault; the team is shared with it",
    ),
    Principal(
        "recovery",
        "account (recovery)",
        "another account the team is shared with; it requested the open restore session and "
        "holds the grants",
    ),
    Principal("other", "account (other)", "a registered account with no share and no vault"),
    Principal(
        "member",
        "approver (member)",
        "an approver of the team concerned (a frozen approver of its sessions)",
    ),
    Principal("nonmember", "approver (non-member)", "an approver of no team concerned"),
    Principal(
        "service",
        "service (shared)",
        "a service principal the team is shared with; it started the generic sessions",
    ),
    Principal("lone_service", "service (not shared)", "a service principal with no share"),
    Principal("auditor", "auditor", "an auditor credential"),
    Principal("none", "no credential", "no `authorization` metadata"),
)
KEYS: tuple[str, ...] = tuple(p.key for p in PRINCIPALS)
CREDENTIALED: frozenset[str] = frozenset(KEYS) - {"none"}
ACCOUNTS = frozenset({"owner", "recovery", "other"})
APPROVERS = frozenset({"member", "nonmember"})
SERVICES = frozenset({"service", "lone_service"})
READERS = frozenset({"admin", "auditor"})


@dataclass(frozen=True)
class Row:
    """One RPC aimed at one object of the world.

    `ok`: who gets OK. Everyone else with a credential gets PERMISSION_DENIED unless `other`
    names another answer; no credential is always UNAUTHENTICATED.
    """

    service: str
    rpc: str
    target: str
    ok: frozenset[str]
    note: str = ""
    other: tuple[tuple[str, str], ...] = ()
    mutates: bool = False
    stream: bool = False
    answers: dict[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        assert self.ok <= CREDENTIALED, self
        answers = {k: OK if k in self.ok else PERMISSION_DENIED for k in KEYS}
        answers["none"] = UNAUTHENTICATED
        for key, code in self.other:
            assert key in CREDENTIALED, (self.rpc, key)
            assert key not in self.ok, (self.rpc, key)
            answers[key] = code
        object.__setattr__(self, "answers", answers)

    @property
    def id(self) -> str:
        slug = self.target.split(" (")[0].replace(" ", "-").replace("'", "")
        return f"{self.rpc}[{slug}]" if self.target else self.rpc


def _ok(*keys: str | frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for k in keys:
        out |= {k} if isinstance(k, str) else k
    return frozenset(out)


ID = "IdentityService"
TEAM = "TeamService"
SES = "SessionService"
VAULT = "VaultService"
APPR = "ApproverService"
AUDIT = "AuditService"
NOTIFY = "NotificationService"

ROWS: tuple[Row, ...] = (
    # --- IdentityService -------------------------------------------------------------------
    Row(ID, "WhoAmI", "", CREDENTIALED, "every credential learns who it is"),
    Row(ID, "CreateApprover", "a new approver id", _ok("admin"), mutates=True),
    Row(
        ID,
        "GetApprover",
        "the member approver",
        _ok(READERS, "member"),
        "an approver reads its own identity only",
    ),
    Row(ID, "ListApprovers", "", _ok(READERS)),
    Row(ID, "DisableApprover", "a spare approver", _ok("admin"), mutates=True),
    Row(ID, "RegisterAccount", "a new account id", _ok("admin"), mutates=True),
    Row(ID, "ListAccounts", "", _ok(READERS)),
    Row(ID, "IssueCredential", "a new service credential", _ok("admin"), mutates=True),
    Row(ID, "RevokeCredential", "a spare credential", _ok("admin"), mutates=True),
    Row(ID, "ListCredentials", "", _ok(READERS)),
    # --- TeamService -----------------------------------------------------------------------
    Row(TEAM, "CreateApprovalTeam", "a new team of the member", _ok("admin"), mutates=True),
    Row(
        TEAM,
        "GetApprovalTeam",
        "the shared team",
        _ok(READERS, "owner", "recovery", "service"),
        "accounts and services see teams shared with them; approvers see theirs through "
        "invitations and sessions",
    ),
    Row(
        TEAM,
        "ListApprovalTeams",
        "",
        _ok(READERS, ACCOUNTS, SERVICES),
        "accounts and services get the teams shared with them only (possibly none)",
    ),
    Row(TEAM, "UpdateApprovalTeam", "an ACTIVE team", _ok("admin"), mutates=True),
    Row(TEAM, "StartTeamDeletion", "an ACTIVE team", _ok("admin"), mutates=True),
    Row(TEAM, "DeleteInactiveTeam", "a PENDING team", _ok("admin"), mutates=True),
    Row(TEAM, "ShareTeam", "the shared team, with a service", _ok("admin"), mutates=True),
    Row(TEAM, "UnshareTeam", "the shared team, from a service", _ok("admin"), mutates=True),
    Row(TEAM, "ListTeamShares", "the shared team", _ok(READERS)),
    Row(TEAM, "GetTeamHealth", "the shared team", _ok(READERS)),
    Row(
        TEAM,
        "IssueInvitationLink",
        "the member's invitation to a PENDING team",
        _ok("admin"),
        mutates=True,
    ),
    Row(TEAM, "StartTeamBaseline", "the shared team", _ok("admin"), mutates=True),
    # --- SessionService --------------------------------------------------------------------
    Row(
        SES,
        "StartSession",
        "the shared team",
        _ok("service"),
        "services only, on teams shared with them",
        mutates=True,
    ),
    Row(
        SES,
        "GetSession",
        "the restore session (requested by recovery on owner's vault)",
        _ok(READERS, "owner", "recovery", "member"),
        "the requester, the protected vault's owner, the session's frozen approvers",
    ),
    Row(
        SES,
        "GetSession",
        "the service's session (a generic session)",
        _ok(READERS, "service", "member"),
    ),
    Row(
        SES,
        "ListSessions",
        "",
        CREDENTIALED,
        "each caller gets the sessions it may see (possibly none)",
    ),
    Row(
        SES,
        "CancelSession",
        "a restore session (requested by recovery on owner's vault)",
        _ok("admin", "recovery"),
        "the requester or the admin; a vault owner cannot cancel a recovery account's request",
        mutates=True,
    ),
    Row(
        SES,
        "CancelSession",
        "a service's session (a generic session)",
        _ok("admin", "service"),
        mutates=True,
    ),
    Row(
        SES,
        "CompleteSession",
        "an APPROVED service's session",
        _ok("service"),
        "the service that started it, once",
        mutates=True,
    ),
    Row(
        SES,
        "WatchSession",
        "the restore session (requested by recovery on owner's vault)",
        _ok(READERS, "owner", "recovery", "member"),
        "as GetSession",
        stream=True,
    ),
    Row(
        SES,
        "WatchSession",
        "the service's session (a generic session)",
        _ok(READERS, "service", "member"),
        "as GetSession",
        stream=True,
    ),
    Row(
        SES,
        "ExportApprovalProof",
        "an APPROVED service's session",
        _ok(READERS, "service", "member"),
        "whoever may read the session",
    ),
    # --- VaultService ----------------------------------------------------------------------
    Row(
        VAULT,
        "CreateVault",
        "a new vault in owner's account",
        _ok("owner"),
        "an account creates vaults in its own account only",
        mutates=True,
    ),
    Row(
        VAULT,
        "GetVault",
        "owner's vault",
        _ok(READERS, "owner", "recovery"),
        "the owner, and accounts its guarding team is shared with",
    ),
    Row(
        VAULT,
        "ListVaults",
        "owner's account",
        _ok(READERS, "owner"),
        "an account lists its own vaults only",
    ),
    Row(
        VAULT,
        "AssociateApprovalTeam",
        "a vault of owner without a team, the shared team",
        _ok("owner"),
        mutates=True,
    ),
    Row(
        VAULT,
        "DisassociateApprovalTeam",
        "a vault of owner guarded by the shared team",
        _ok("owner"),
        "the owner; while another account's restore access on the vault is open, removing or "
        "changing the team is refused to it (FAILED_PRECONDITION, VAULT_UNDER_RECOVERY)",
        mutates=True,
    ),
    Row(
        VAULT,
        "RequestRestoreAccess",
        "a vault of owner guarded by the shared team",
        _ok("owner", "recovery"),
        "accounts the guarding team is shared with",
        mutates=True,
    ),
    Row(
        VAULT,
        "ListRestoreAccess",
        "owner's vault",
        _ok(READERS, "owner", "recovery"),
        "an account gets the grants it holds or that are on its vaults; naming a vault of "
        "another account on which it holds no grant is refused, like ListVaults",
    ),
    Row(
        VAULT,
        "RevokeRestoreAccess",
        "an AVAILABLE grant of recovery on a vault of owner",
        _ok("admin"),
        "the admin, or the vault's owner for grants its own account requested; another "
        "account's open grant is a recovery in progress, which the owner cannot revoke "
        "(FAILED_PRECONDITION, VAULT_UNDER_RECOVERY); the grant's holder cannot",
        other=(("owner", "FAILED_PRECONDITION"),),
        mutates=True,
    ),
    Row(
        VAULT,
        "CheckAccess",
        "owner's vault, for recovery",
        _ok(READERS, "owner", SERVICES),
        "services ask on behalf of a restore; an account asks about its own vaults only",
    ),
    # --- ApproverService -------------------------------------------------------------------
    Row(APPR, "ListInvitations", "", _ok(APPROVERS), "an approver gets its own (possibly none)"),
    Row(
        APPR,
        "RespondToInvitation",
        "the member's invitation to a PENDING team",
        _ok("member"),
        "the approver it is addressed to only",
        mutates=True,
    ),
    Row(
        APPR,
        "ListAssignedSessions",
        "",
        _ok(APPROVERS),
        "an approver gets its own (possibly none)",
    ),
    Row(
        APPR,
        "Vote",
        "a service's open session, APPROVE, signed",
        _ok("member"),
        "the session's frozen approvers only",
        mutates=True,
    ),
    # --- AuditService ----------------------------------------------------------------------
    Row(AUDIT, "ListEvents", "", _ok(READERS)),
    Row(AUDIT, "WatchEvents", "", _ok(READERS), stream=True),
    Row(AUDIT, "VerifyLog", "", _ok(READERS)),
    Row(AUDIT, "GetLogCheckpoint", "", _ok(READERS)),
    # --- NotificationService ---------------------------------------------------------------
    Row(NOTIFY, "CreateEndpoint", "a new webhook endpoint", _ok("admin"), mutates=True),
    Row(
        NOTIFY,
        "ListEndpoints",
        "",
        _ok("admin"),
        "the admin only: where notifications go is configuration, not audit data",
    ),
    Row(NOTIFY, "UpdateEndpoint", "the webhook endpoint", _ok("admin"), mutates=True),
    Row(NOTIFY, "DeleteEndpoint", "a spare webhook endpoint", _ok("admin"), mutates=True),
    Row(NOTIFY, "SendTestNotification", "the webhook endpoint", _ok("admin"), mutates=True),
    Row(NOTIFY, "ListDeliveries", "", _ok("admin")),
)

SERVICES_IN_ORDER: tuple[str, ...] = (ID, TEAM, SES, VAULT, APPR, AUDIT, NOTIFY)
