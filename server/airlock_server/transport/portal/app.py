"""The portal's routes: pages rendered on the server, JSON for the WebAuthn ceremonies, and a
stream of server-sent events that tells an open page to refresh its list of requests."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airlock_server.app.audit import AuditService
from airlock_server.app.feed import EventFeed
from airlock_server.app.passkeys import PortalService
from airlock_server.app.sessions import SessionService, SessionView
from airlock_server.app.teams import TeamService
from airlock_server.domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unavailable,
)
from airlock_server.domain.events import Event
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import SessionKind, SessionState, VoteDecision
from airlock_server.domain.teams import Team, TeamVersion
from airlock_server.transport.portal.visits import COOKIE, Visit, Visits, csrf_ok

log = structlog.get_logger("airlock.portal")

HERE = Path(__file__).parent
# How long an open page waits on the feed before it sends a keep-alive comment.
KEEPALIVE = 15.0
# No script or style but our own files, no frames, forms only back to us.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def fingerprint(key: bytes | None) -> str:
    """As the CLI and the API show a key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:16] if key else "—"


def http_status(err: DomainError) -> int:
    if isinstance(err, InvalidArgument):
        return 400
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, PermissionDenied):
        return 403
    if isinstance(err, FailedPrecondition):
        return 409
    if isinstance(err, Unavailable):
        return 503
    return 401 if err.reason == Reason.UNAUTHENTICATED else 400


def left(expire: datetime, now: datetime) -> str:
    seconds = int((expire - now).total_seconds())
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def ttl(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    return f"{hours:g} h"


class SecurityHeaders:
    """Headers on every answer: the CSP, no caching, no referrer (an invitation link's token
    stays out of other sites' logs), no framing, no sniffing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class PortalDeps:
    portal: PortalService
    teams: TeamService
    sessions: SessionService
    audit: AuditService
    feed: EventFeed
    origin: str
    secure: bool  # TLS: cookies carry Secure


class Portal:
    def __init__(self, deps: PortalDeps) -> None:
        self.d = deps
        self.visits = Visits()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            auto_reload=False,
        )

    # --- plumbing -------------------------------------------------------------------------

    def _visit(self, request: Request) -> Visit | None:
        return self.visits.get(request.cookies.get(COOKIE))

    def _set_cookie(self, response: Response, token: str, max_age: float) -> None:
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(max_age),
            httponly=True,
            secure=self.d.secure,
            samesite="strict",
            path="/",
        )

    def page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        visit: Visit | None = None,
        *,
        start_visit: bool = True,
        **context: Any,
    ) -> Response:
        """A rendered page; a visitor without a visit gets one (its CSRF token is in the page),
        except on an error page: a late error answer must not replace a newer visit's cookie."""
        new_token = ""
        if visit is None:
            visit = self._visit(request)
            if visit is None and start_visit:
                new_token, visit = self.visits.start()
        html = self.templates.get_template(template).render(
            csrf=visit.csrf if visit else "",
            approver=visit.approver_id if visit else "",
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if new_token and visit is not None:
            self._set_cookie(response, new_token, visit.expires - _monotonic())
        return response

    async def _refused(
        self, caller: Principal | None, method: str, err: DomainError, subjects: tuple[str, ...]
    ) -> None:
        """A refusal in the event log (call.denied), as the gRPC interceptor records them; a
        failure to record is logged, never the visitor's answer."""
        if isinstance(err, (NotFound, Unavailable)):
            return
        who = caller
        if who is None and err.metadata.get("approverId"):
            who = Principal(PrincipalKind.APPROVER, err.metadata["approverId"])
        if who is None:
            # Nobody proved who they are: a log line, not an event (anonymous visitors must
            # not be able to fill the event log).
            log.warning("portal.refused", method=method, reason=str(err.reason))
            return
        try:
            await self.d.audit.record_denial(
                who,
                f"portal:{method}",
                _code_name(err),
                str(err.reason),
                subjects,
            )
        except Exception:
            log.exception("portal.denial_not_recorded", method=method, reason=str(err.reason))

    def _csrf_refusal(self) -> PermissionDenied:
        return PermissionDenied("the form's CSRF token is missing or wrong: reload the page")

    async def _check_post(
        self, request: Request, method: str, supplied: str | None, subjects: tuple[str, ...]
    ) -> tuple[Visit | None, Response | None]:
        """Every POST: same origin, and the CSRF token of the visit the cookie names."""
        visit = self._visit(request)
        origin = request.headers.get("origin")
        if csrf_ok(visit, supplied) and (origin is None or origin == self.d.origin):
            return visit, None
        err = self._csrf_refusal()
        caller = _principal(visit)
        await self._refused(caller, method, err, subjects)
        log.warning("portal.csrf_refused", method=method)
        return visit, self._error(request, err, json_answer=_wants_json(request))

    def _error(self, request: Request, err: DomainError, *, json_answer: bool) -> Response:
        status = http_status(err)
        if json_answer:
            return JSONResponse({"error": err.message, "reason": str(err.reason)}, status)
        return self.page(
            request,
            "message.html",
            status,
            start_visit=False,
            title="Refused",
            message=err.message,
        )

    async def _signed_in(self, request: Request) -> tuple[Visit, Principal] | Response:
        """The visit's approver, still enabled; otherwise the sign-in page."""
        visit = self._visit(request)
        caller = _principal(visit)
        if visit is None or caller is None:
            return RedirectResponse("/sign-in", 303)
        try:
            await self.d.portal.check_signed_in(caller)
        except DomainError as err:
            self.visits.end(request.cookies.get(COOKIE))
            await self._refused(caller, "CheckSignedIn", err, (f"approver:{caller.subject}",))
            return self._error(request, err, json_answer=_wants_json(request))
        return visit, caller

    async def _signed_post(
        self, request: Request, method: str, subjects: tuple[str, ...]
    ) -> Principal | Response:
        """A script's POST by a signed-in approver: the visit's approver, then its CSRF header."""
        signed = await self._signed_in(request)
        if isinstance(signed, Response):
            return signed
        _, caller = signed
        _, refused = await self._check_post(
            request, method, request.headers.get("x-csrf-token"), subjects
        )
        return refused or caller

    async def _as_approver(
        self,
        request: Request,
        method: str,
        work: Callable[[Visit, Principal], Awaitable[Response]],
    ) -> Response:
        """A page for the signed-in approver: `work` with the visit and its approver."""
        signed = await self._signed_in(request)
        if isinstance(signed, Response):
            return signed
        visit, caller = signed
        return await self._run(request, method, caller, (), lambda: work(visit, caller))

    async def _run(
        self,
        request: Request,
        method: str,
        caller: Principal | None,
        subjects: tuple[str, ...],
        work: Callable[[], Awaitable[Response]],
    ) -> Response:
        try:
            return await work()
        except DomainError as err:
            await self._refused(caller, method, err, subjects)
            return self._error(request, err, json_answer=_wants_json(request))

    # --- sign-in --------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        visit = self._visit(request)
        return RedirectResponse("/requests" if visit and visit.approver_id else "/sign-in", 303)

    async def sign_in_page(self, request: Request) -> Response:
        return self.page(request, "sign_in.html", title="Sign in")

    async def sign_in_options(self, request: Request) -> Response:
        _, refused = await self._check_post(
            request, "BeginSignIn", request.headers.get("x-csrf-token"), ()
        )
        if refused:
            return refused
        return JSONResponse(json.loads(await self.d.portal.begin_sign_in()))

    async def sign_in(self, request: Request) -> Response:
        _, refused = await self._check_post(
            request, "SignIn", request.headers.get("x-csrf-token"), ()
        )
        if refused:
            return refused
        body = await request.body()

        async def work() -> Response:
            approver = await self.d.portal.finish_sign_in(body.decode())
            self.visits.end(request.cookies.get(COOKIE))
            token, visit = self.visits.start(approver.subject)
            response = JSONResponse({"next": "/requests"})
            self._set_cookie(response, token, visit.expires - _monotonic())
            log.info("portal.signed_in", approver_id=approver.subject)
            return response

        return await self._run(request, "SignIn", None, (), work)

    async def sign_out(self, request: Request) -> Response:
        form = await request.form()
        _, refused = await self._check_post(request, "SignOut", _field(form, "csrf"), ())
        if refused:
            return refused
        self.visits.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/sign-in", 303)
        response.delete_cookie(COOKIE, path="/", secure=self.d.secure, httponly=True)
        return response

    # --- invitations ----------------------------------------------------------------------

    async def invitation(self, request: Request) -> Response:
        token = request.path_params["token"]
        visit = self._visit(request)
        caller = _principal(visit)

        async def work() -> Response:
            details = await self.d.portal.invitation_by_link(token, caller)
            return self.page(
                request,
                "invitation.html",
                title=f"Invitation to {details.team_name}",
                inv=details,
                others=[a for a in details.approver_ids if a != details.approver_id],
                session_ttl=ttl(details.session_ttl),
                invitation_ttl=ttl(details.invitation_ttl),
                expires=left(details.expire_time, _now()),
                token_path=token,
            )

        return await self._run(request, "GetInvitation", caller, (), work)

    async def invitation_options(self, request: Request) -> Response:
        token = request.path_params["token"]
        visit, refused = await self._check_post(
            request, "BeginRegistration", request.headers.get("x-csrf-token"), ()
        )
        if refused:
            return refused
        caller = _principal(visit)

        async def work() -> Response:
            return JSONResponse(json.loads(await self.d.portal.begin_registration(token, caller)))

        return await self._run(request, "BeginRegistration", caller, (), work)

    async def invitation_accept(self, request: Request) -> Response:
        token = request.path_params["token"]
        visit, refused = await self._check_post(
            request, "AcceptInvitation", request.headers.get("x-csrf-token"), ()
        )
        if refused:
            return refused
        caller = _principal(visit)
        body = await request.body()

        async def work() -> Response:
            view = await self.d.portal.finish_registration(token, body.decode(), caller, "")
            log.info("portal.invitation_accepted", approver_id=view.member.approver_id)
            return JSONResponse({"next": "/sign-in?enrolled=1"})

        return await self._run(request, "AcceptInvitation", caller, (), work)

    async def invitation_decline(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await request.form()
        visit, refused = await self._check_post(
            request, "DeclineInvitation", _field(form, "csrf"), ()
        )
        if refused:
            return refused
        caller = _principal(visit)

        async def work() -> Response:
            view = await self.d.portal.decline(token, caller, "")
            return self.page(
                request,
                "message.html",
                title="Invitation declined",
                message=f"You declined the invitation to {view.team.name}.",
            )

        return await self._run(request, "DeclineInvitation", caller, (), work)

    # --- requests and votes ---------------------------------------------------------------

    async def _pending(self, caller: Principal) -> list[dict[str, Any]]:
        page = await self.d.sessions.list_assigned(caller, SessionState.PENDING, False, 100, "")
        now = _now()
        shown = []
        for view in page.items:
            current = None
            if view.session.kind is SessionKind.TEAM_UPDATE and view.session.draft is not None:
                try:
                    current = (await self.d.teams.get_team(caller, view.session.team_id)).current
                except DomainError:
                    current = None
            shown.append(_session_view(view, caller.subject, now, current))
        return shown

    async def requests_page(self, request: Request) -> Response:
        async def work(visit: Visit, caller: Principal) -> Response:
            items = await self._pending(caller)
            return self.page(request, "requests.html", visit=visit, title="Requests", items=items)

        return await self._as_approver(request, "ListAssignedSessions", work)

    async def requests_fragment(self, request: Request) -> Response:
        async def work(visit: Visit, caller: Principal) -> Response:
            items = await self._pending(caller)
            return self.page(request, "_requests.html", visit=visit, items=items)

        return await self._as_approver(request, "ListAssignedSessions", work)

    async def events(self, request: Request) -> Response:
        """Server-sent events: `changed` whenever the log records anything about a session or
        a team; the page then fetches its list again (which is authorized as any read)."""
        signed = await self._signed_in(request)
        if isinstance(signed, Response):
            return signed

        def relevant(event: Event) -> bool:
            return any(s.startswith(("session:", "team:")) for s in event.subjects)

        async def stream() -> AsyncIterator[bytes]:
            sub = await self.d.feed.subscribe(relevant)
            try:
                yield b"retry: 2000\n\n"
                while not await request.is_disconnected():
                    try:
                        batch = await sub.next(KEEPALIVE)
                    except DomainError:
                        yield b"event: changed\ndata: overflow\n\n"
                        return
                    yield b"event: changed\ndata: 1\n\n" if batch else b": keep-alive\n\n"
            finally:
                self.d.feed.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def vote_options(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        subjects = (f"session:{session_id}",)
        caller = await self._signed_post(request, "VoteOptions", subjects)
        if isinstance(caller, Response):
            return caller

        async def work() -> Response:
            body = await _json_object(request)
            decision = _decision(body.get("decision"))
            options = await self.d.portal.vote_options(caller, session_id, decision)
            return JSONResponse(json.loads(options))

        return await self._run(request, "VoteOptions", caller, subjects, work)

    async def vote(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        subjects = (f"session:{session_id}",)
        caller = await self._signed_post(request, "VoteOnSession", subjects)
        if isinstance(caller, Response):
            return caller

        async def work() -> Response:
            body = await _json_object(request)
            decision = _decision(body.get("decision"))
            comment = str(body.get("comment") or "")
            credential = json.dumps(body.get("credential"))
            view = await self.d.portal.vote(
                caller, session_id, decision, comment, credential, str(body.get("request_id", ""))
            )
            log.info("portal.voted", approver_id=caller.subject, session_id=session_id)
            return JSONResponse({"state": view.session.state.value})

        return await self._run(request, "VoteOnSession", caller, subjects, work)

    async def session_link(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        return RedirectResponse(f"/requests#h-{session_id}", 303)

    async def invitation_link(self, request: Request) -> Response:
        # An invitation is answered through its one-time link (in the email), never by its id.
        return RedirectResponse("/teams", 303)

    # --- history and teams ----------------------------------------------------------------

    async def history(self, request: Request) -> Response:
        async def work(visit: Visit, caller: Principal) -> Response:
            page = await self.d.sessions.list_assigned(caller, None, False, 100, "")
            votes = []
            for view in page.items:
                mine = [v for v in view.session.votes if v.approver_id == caller.subject]
                for v in mine:
                    votes.append(
                        {
                            "session_id": view.session.session_id,
                            "action": view.session.action,
                            "resource": view.session.protected_resource,
                            "team": view.team_name,
                            "decision": v.decision.value,
                            "time": _when(v.time),
                            "state": view.session.state.value,
                        }
                    )
            return self.page(request, "history.html", visit=visit, title="History", votes=votes)

        return await self._as_approver(request, "ListAssignedSessions", work)

    async def teams(self, request: Request) -> Response:
        async def work(visit: Visit, caller: Principal) -> Response:
            page = await self.d.teams.list_invitations(caller, None, "", 100, "")
            seen: dict[str, dict[str, Any]] = {}
            for inv in page.items:
                if inv.team.team_id in seen:
                    continue
                seen[inv.team.team_id] = _team_health(inv.team)
            return self.page(
                request, "teams.html", visit=visit, title="Teams", teams=list(seen.values())
            )

        return await self._as_approver(request, "ListInvitations", work)


# --- helpers ----------------------------------------------------------------------------------


def _monotonic() -> float:
    return time.monotonic()


def _now() -> datetime:
    return datetime.now(UTC)


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _principal(visit: Visit | None) -> Principal | None:
    if visit is None or not visit.approver_id:
        return None
    return Principal(PrincipalKind.APPROVER, visit.approver_id)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("content-type", "") or (
        "application/json" in request.headers.get("accept", "")
    )


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument.field("body", "a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidArgument.field("body", "a JSON object")
    return body


def _decision(value: object) -> VoteDecision:
    try:
        return VoteDecision(str(value))
    except ValueError:
        raise InvalidArgument.field("decision", "APPROVE or REJECT") from None


def _code_name(err: DomainError) -> str:
    status = http_status(err)
    return {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        409: "FAILED_PRECONDITION",
    }.get(status, "INVALID_ARGUMENT")


def _members(version: TeamVersion) -> list[dict[str, str]]:
    return [
        {
            "approver": m.approver_id,
            "state": m.invitation_state.value,
            "key": fingerprint(m.public_key),
        }
        for m in version.members
    ]


def _team_health(team: Team) -> dict[str, Any]:
    accepted = sum(1 for m in team.current.members if m.public_key)
    m = team.current.min_approvals
    return {
        "name": team.name,
        "state": team.state.value,
        "status": team.status.value,
        "message": team.status_message,
        "m": m,
        "n": len(team.current.members),
        "accepted": accepted,
        "slack": accepted - m,
        "members": _members(team.current),
        "session_ttl": ttl(team.current.session_ttl),
    }


def _session_view(
    view: SessionView, me: str, now: datetime, current: TeamVersion | None
) -> dict[str, Any]:
    s = view.session
    # The vault's owner is the account its ARN names (arn:aws:backup:REGION:ACCOUNT:...).
    parts = s.protected_resource.split(":") if s.protected_resource.startswith("arn:") else []
    owner = parts[4] if len(parts) > 4 else ""
    draft = None
    if s.draft is not None:
        draft = {
            "description": s.draft.description,
            "m": s.draft.min_approvals,
            "session_ttl": ttl(s.draft.session_ttl),
            "invitation_ttl": ttl(s.draft.invitation_ttl),
            "members": [
                {
                    "approver": d.approver_id,
                    "change": d.change.value,
                    "key": fingerprint(d.public_key),
                }
                for d in s.draft.members
            ],
        }
    return {
        "id": s.session_id,
        "kind": s.kind.value,
        "action": s.action,
        "resource": s.protected_resource,
        "owner": owner,
        "team": view.team_name,
        "requester": str(s.requester),
        "comment": s.comment,
        "left": left(s.expire_time, now),
        "m": s.min_approvals,
        "n": s.number_of_approvers,
        "votes": [
            {"approver": v.approver_id, "decision": v.decision.value, "comment": v.comment}
            for v in s.votes
        ],
        "voted": any(v.approver_id == me for v in s.votes),
        "draft": draft,
        "current": (
            {
                "description": current.description,
                "m": current.min_approvals,
                "session_ttl": ttl(current.session_ttl),
                "invitation_ttl": ttl(current.invitation_ttl),
                "members": _members(current),
            }
            if current is not None
            else None
        ),
    }


def build_portal(deps: PortalDeps) -> Starlette:
    p = Portal(deps)
    routes = [
        Route("/", p.home),
        Route("/sign-in", p.sign_in_page, methods=["GET"]),
        Route("/sign-in/options", p.sign_in_options, methods=["POST"]),
        Route("/sign-in", p.sign_in, methods=["POST"]),
        Route("/sign-out", p.sign_out, methods=["POST"]),
        Route("/invite/{token}", p.invitation, methods=["GET"]),
        Route("/invite/{token}/options", p.invitation_options, methods=["POST"]),
        Route("/invite/{token}/accept", p.invitation_accept, methods=["POST"]),
        Route("/invite/{token}/decline", p.invitation_decline, methods=["POST"]),
        Route("/requests", p.requests_page, methods=["GET"]),
        Route("/requests/list", p.requests_fragment, methods=["GET"]),
        Route("/requests/events", p.events, methods=["GET"]),
        Route("/requests/{session_id}/options", p.vote_options, methods=["POST"]),
        Route("/requests/{session_id}/vote", p.vote, methods=["POST"]),
        Route("/history", p.history, methods=["GET"]),
        # Where the notifications' links (AIRLOCK_PORTAL_URL) point.
        Route("/sessions/{session_id}", p.session_link, methods=["GET"]),
        Route("/invitations/{invitation_id}", p.invitation_link, methods=["GET"]),
        Route("/teams", p.teams, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.portal = p
    return app
