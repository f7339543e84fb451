"""Task-completion callbacks: POST a finished task's result to the URL its
submitter gave as ``callback_url``.

Why: a workflow tool should not have to poll. n8n's Wait node ("Resume: On
Webhook Call") pauses an execution until something calls
``$execution.resumeUrl``; passing that URL as ``callback_url`` resumes the
workflow with the task's result as soon as the task completes, fails or is
cancelled.

The request: ``POST <callback_url>`` with ``Content-Type: application/json``;
the body is exactly the body of ``GET /tasks/{id}/result`` at send time, so a
retry also carries the ``callback`` events of the earlier attempts. Headers:
``User-Agent: AIPython-Agent-Callback/1.0``, ``X-AIPython-Task-Id``,
``X-AIPython-Attempt`` (1-based) and, when a secret is configured
(``callback_secret``), ``X-AIPython-Timestamp`` (unix seconds) and
``X-AIPython-Signature: sha256=<hex>``. Credentials in the URL
(``https://user:pass@host/...``) are sent as HTTP Basic auth and are shown
as ``user:***@host`` in the task's log.

Verifying a signature (receiver side): take the raw request body bytes as
received (before any JSON parsing), build the message
``<X-AIPython-Timestamp value> + "." + body``, compute HMAC-SHA256 over it
with the shared secret, hex-encode it, prefix ``sha256=`` and compare it with
``X-AIPython-Signature`` in constant time (``verify_signature`` does exactly
that). Because the timestamp is signed, a receiver that also rejects
timestamps older than a few minutes is protected against replays.

Delivery: success is any 2xx answer. Redirects are not followed (a 3xx is a
failed attempt), and neither are connection errors and timeouts
(``timeout_s``, default 10 s, per socket operation). After failed attempt
``n`` the next comes ``backoff_s * 2**(n-1)`` seconds later, capped at
``max_backoff_s``, for at most ``retries`` retries: with the defaults (5
retries, 2 s, cap 300 s) after 2, 4, 8, 16 and 32 s, i.e. six attempts over
about a minute. Every attempt is recorded as a ``callback`` event in the
task's log. The URL is checked against the policy when the task is submitted
and again before each attempt; a refused URL ends the delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

from storage import TaskNotFound

log = logging.getLogger("aipy.callbacks")

SIGNATURE_HEADER = "X-AIPython-Signature"
TIMESTAMP_HEADER = "X-AIPython-Timestamp"
TASK_ID_HEADER = "X-AIPython-Task-Id"
ATTEMPT_HEADER = "X-AIPython-Attempt"
USER_AGENT = "AIPython-Agent-Callback/1.0"

#: `post(url, body, headers, timeout_s) -> HTTP status`; raises OSError (or
#: http.client.HTTPException) when no status could be had.
PostFn = Callable[[str, bytes, dict, float], int]


@dataclass(frozen=True)
class CallbackPolicy:
    """How callbacks are checked and delivered. Defaults: unsigned, any host,
    5 retries after the first attempt, backoff 2 s doubling up to 300 s, 10 s
    timeout per attempt."""

    secret: str | None = None            # HMAC key; None = unsigned
    allowed_hosts: tuple[str, ...] = ()  # empty = any host; else exact names or "*.example.com"
    retries: int = 5                     # attempts after the first
    backoff_s: float = 2.0               # before retry n: backoff_s * 2**(n-1), capped
    max_backoff_s: float = 300.0
    timeout_s: float = 10.0              # per HTTP attempt

    def delay_before_retry(self, n: int) -> float:
        """Seconds to wait before retry `n` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** min(max(n - 1, 0), 64))


def _host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.strip().lower().rstrip(".").strip("[]")
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def check_callback_url(url: str, policy: CallbackPolicy) -> str | None:
    """None when `url` may be a callback target, else why not (a message for
    a 400). Needs http or https and a host; with `policy.allowed_hosts` set,
    the host must equal one of them (case-insensitively) or, for a pattern
    ``*.example.com``, be a subdomain of example.com (not example.com itself)."""
    if not isinstance(url, str) or not url:
        return "callback_url: must be an http or https URL"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "callback_url: must not contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "callback_url: is not a valid URL (check the host and port)"
    if parts.scheme.lower() not in ("http", "https"):
        return "callback_url: must be an http or https URL"
    host = parts.hostname
    if not host:
        return "callback_url: must name a host (e.g. https://example.com/hook)"
    if policy.allowed_hosts and not _host_allowed(host, policy.allowed_hosts):
        return f"callback_url: host {host!r} is not in the allowed callback hosts (callback_allowed_hosts)"
    return None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of
    ``timestamp + "." + body`` keyed with `secret`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, header_value: str,
                     *, tolerance_s: float | None = None) -> bool:
    """True when `header_value` signs `timestamp` and `body` with `secret`
    (constant-time compare). With `tolerance_s`, the timestamp must also be
    within that many seconds of now (replay protection); default: unchecked."""
    if not header_value or not isinstance(timestamp, str):
        return False
    if tolerance_s is not None:
        try:
            if abs(time.time() - float(timestamp)) > tolerance_s:
                return False
        except ValueError:
            return False
    expected = sign(secret, timestamp, body).encode("utf-8")
    return hmac.compare_digest(expected, header_value.strip().encode("utf-8", "replace"))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None  # the 3xx then surfaces as an HTTPError


def urllib_post(url: str, body: bytes, headers: dict, timeout_s: float) -> int:
    """POST with the standard library; returns the status (3xx included:
    redirects are never followed). Honours the usual *_proxy variables."""
    opener = urllib.request.build_opener(_NoRedirects)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def _split_credentials(url: str) -> tuple[str, str, str | None]:
    """(URL to request, URL to show, Authorization header or None)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    shown = parts._replace(netloc=f"{urllib.parse.quote(user, safe='')}:***@{hostport}")
    return parts._replace(netloc=hostport).geturl(), shown.geturl(), f"Basic {token}"


def _describe(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    text = str(reason) or type(reason).__name__
    return text if isinstance(reason, str) else f"{type(reason).__name__}: {text}"


class CallbackSender:
    """Makes the delivery attempts of task callbacks; the caller schedules
    them (e.g. a Dramatiq message delayed by the returned seconds)."""

    def __init__(self, store, policy: CallbackPolicy, *, post: PostFn | None = None):
        self.store = store
        self.policy = policy
        self.post: PostFn = post or urllib_post

    def deliver(self, task_id: str, attempt: int) -> float | None:
        """Make attempt `attempt` (1-based) to POST the task's result to its
        ``callback_url``. Returns the seconds to wait before the next attempt,
        or None when there is none (delivered, no callback_url, task gone,
        URL refused, or all ``retries + 1`` attempts made). Records one
        ``callback`` event per attempt. Network and HTTP failures never
        raise; storage failures other than TaskNotFound do."""
        attempt = max(int(attempt), 1)
        try:
            state = self.store.get(task_id)
            url = state.get("callback_url")
            if not url:
                return None
            task_id = state["task_id"]
            problem = check_callback_url(url, self.policy)
            if problem:
                return self._record(task_id, url, attempt, None, f"refused: {problem}", final=True)
            body = json.dumps(self.store.result(task_id)).encode("utf-8")
        except TaskNotFound:
            return None
        target, shown, authorization = _split_credentials(url)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TASK_ID_HEADER: task_id,
            ATTEMPT_HEADER: str(attempt),
        }
        if authorization:
            headers["Authorization"] = authorization
        if self.policy.secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.policy.secret, timestamp, body)
        status: int | None = None
        error: str | None = None
        try:
            status = int(self.post(target, body, headers, self.policy.timeout_s))
        except Exception as exc:  # any failure to get an answer is a failed attempt
            error = _describe(exc)
        if status is not None and not 200 <= status < 300:
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        try:
            return self._record(task_id, shown, attempt, status, error)
        except TaskNotFound:
            return None

    def _record(self, task_id: str, url: str, attempt: int, status: int | None, error: str | None,
                *, final: bool = False) -> float | None:
        """Append the attempt's event, log it, and return the next delay."""
        delivered = error is None
        more = not delivered and not final and attempt <= self.policy.retries
        next_in = self.policy.delay_before_retry(attempt) if more else None
        self.store.append_event(task_id, "callback", {
            "url": url, "attempt": attempt, "delivered": delivered, "status_code": status,
            "error": error, "next_attempt_in_s": next_in,
        })
        if delivered:
            log.info("Task %s: callback delivered to %s (attempt %d, HTTP %s)", task_id, url, attempt, status)
        elif next_in is not None:
            log.warning("Task %s: callback to %s failed (attempt %d): %s; retrying in %g s",
                        task_id, url, attempt, error, next_in)
        else:
            log.warning("Task %s: callback to %s failed (attempt %d): %s; giving up",
                        task_id, url, attempt, error)
        return next_in
