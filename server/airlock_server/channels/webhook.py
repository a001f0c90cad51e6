"""Webhooks per the Standard Webhooks specification, signed with the `standardwebhooks` package.

Each delivery carries `webhook-id` (the notification id, the same on every retry, so receivers
can drop duplicates), `webhook-timestamp` and `webhook-signature` (HMAC-SHA256 with the
endpoint's `whsec_` secret). A 2xx answer is a delivery; anything else is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from airlock_server.domain.notifications import Attempt, Outgoing, body_bytes

USER_AGENT = "airlock-webhooks/1"


def signed_request(out: Outgoing, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery."""
    # Standard Webhooks timestamps are whole seconds: the body's timestamp is the same one.
    now = now.replace(microsecond=0)
    body = body_bytes(out, now)
    signature = Webhook(out.secret).sign(out.notification_id, now, body)
    return body, {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": out.notification_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


class WebhookSender:
    def __init__(
        self, timeout: float = 10.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._timeout = timeout
        self._clock = clock
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # No redirects: a receiver cannot send the signed body somewhere else.
            self._client = httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, trust_env=False
            )
        return self._client

    async def send(self, out: Outgoing) -> Attempt:
        now = self._clock()
        body, headers = signed_request(out, now)
        try:
            response = await self._http().post(out.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The URL may carry a credential in its path (incoming webhooks): never repeat it.
            error = f"{type(exc).__name__}: {exc}".replace(out.url, "<endpoint url>")
            return Attempt(0, now, False, 0, error[:500])
        if 200 <= response.status_code < 300:
            return Attempt(0, now, True, response.status_code)
        return Attempt(0, now, False, response.status_code, f"HTTP {response.status_code}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
