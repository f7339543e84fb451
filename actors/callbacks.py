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
(``https://user:pass@host/...``) are sent as HTTP Basic auth, by httpx (see
`callback_net.GuardedPost`), and are shown as ``user:***@host`` in the
task's log and the server's.

Verifying a signature (receiver side): take the raw request body bytes as
received (before any JSON parsing), build the message
``<X-AIPython-Timestamp value> + "." + body``, compute HMAC-SHA256 over it
with the shared secret, hex-encode it, prefix ``sha256=`` and compare it with
``X-AIPython-Signature`` in constant time (``verify_signature`` does exactly
that). Because the timestamp is signed, a receiver that also rejects
timestamps older than a few minutes is protected against replays.

Targets: callbacks are requests this server makes, so by default they may
only reach public addresses: loopback, private, link-local (the cloud
metadata service), unspecified, multicast and other non-global addresses are
refused unless ``callback_allowed_hosts`` lists the host (an exact name such
as ``localhost``, an address, or a network such as ``10.0.0.0/8``); a
non-empty list also limits callbacks to the hosts it lists.
`callback_targets` holds the rules. They are applied when the task is
submitted (IP addresses and names such as ``localhost``: a 400 that names
the setting) and again on every address the delivery actually connects to
(`callback_net`: the name is resolved there, and refused addresses are never
connected to, so DNS rebinding cannot get around it).

Delivery: one POST over httpx, without environment proxies. Success is any
2xx answer. Redirects are not followed: a 3xx is a failed attempt, as are
connection errors and timeouts (``timeout_s``, default 10 s, per socket
operation). After failed attempt ``n`` the next comes
``backoff_s * 2**(n-1)`` seconds later, capped at ``max_backoff_s``, for at
most ``retries`` retries: with the defaults (5 retries, 2 s, cap 300 s) after
2, 4, 8, 16 and 32 s, i.e. six attempts over about a minute. A target refused
by the rules ends the delivery at once.

Dramatiq does the retrying: the ``deliver_callback`` actor takes the task
id only; attempt n is the message after n-1 retries (its ``retries``
option, read through the ``CurrentMessage`` middleware). A failed attempt
due another raises ``dramatiq.Retry(delay=...)``, and the ``Retries``
middleware enqueues the message again that much later (a delayed message,
on Redis and the embedded broker alike; a Retry is not logged as an error).
`CallbackPolicy.actor_options` caps that at ``retries`` and retries nothing
else: any other exception (a store that cannot be read or written) fails
the message, logged with its traceback by Dramatiq's worker, and ends the
delivery, since a blind retry could POST twice when only recording failed.

Every attempt is recorded as a ``callback`` event in the task's log, which
the submitter can read: ``url`` (credentials masked), ``attempt``,
``delivered``, ``status_code`` (when an HTTP answer came, else null),
``error`` and ``next_attempt_in_s``. ``error`` is null or a coarse phrase:
``refused by policy: <why>``, ``could not resolve the host name``, ``could
not connect``, ``timed out``, ``TLS failed``, ``invalid or incomplete HTTP
answer``, ``connection failed``, ``invalid URL``, ``delivery failed`` or
``HTTP <status>`` (see `callback_net.describe_failure`). The exception text
itself (which would tell a submitter what answers where inside the network)
goes to the server log only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Protocol

import dramatiq
from dramatiq.middleware import CurrentMessage

from storage import TaskNotFound, shown_url

from .callback_net import DestinationRefused, GuardedBackend, GuardedPost, describe_failure
from .callback_targets import CallbackTargets

log = logging.getLogger("aipy.callbacks")

SIGNATURE_HEADER = "X-AIPython-Signature"
TIMESTAMP_HEADER = "X-AIPython-Timestamp"
TASK_ID_HEADER = "X-AIPython-Task-Id"
ATTEMPT_HEADER = "X-AIPython-Attempt"
USER_AGENT = "AIPython-Agent-Callback/1.0"

#: `post(url, body, headers, timeout_s) -> HTTP status`; credentials in
#: `url` (``user:pass@``) go as HTTP Basic auth; raises when no status could
#: be had (DestinationRefused for a target the rules refuse;
#: what the task's log shows is `describe_failure` of the exception). The
#: default is `GuardedPost`; tests inject their own.
PostFn = Callable[[str, bytes, dict, float], int]


class AttemptCounter(Protocol):
    """Told of each attempt (the metrics); must not raise."""

    def __call__(self, delivered: bool, *, ended: bool, refused: bool) -> None:
        """`ended`: no attempt follows; `refused`: the rules refused the
        target, so nothing was sent."""


_URL_PREFIX = "callback_url: "


@dataclass(frozen=True)
class CallbackPolicy:
    """How callbacks are checked and delivered. Defaults: unsigned, public
    hosts only, 5 retries after the first attempt, backoff 2 s doubling up to
    300 s, 10 s timeout per attempt. Raises ValueError for an
    `allowed_hosts` entry that is no host, address or network."""

    secret: str | None = None            # HMAC key; None = unsigned
    allowed_hosts: tuple[str, ...] = ()  # empty = public hosts; else see callback_targets
    retries: int = 5                     # attempts after the first
    backoff_s: float = 2.0               # before retry n: backoff_s * 2**(n-1), capped
    max_backoff_s: float = 300.0
    timeout_s: float = 10.0              # per HTTP attempt
    targets: CallbackTargets = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parsed once, here, so a bad entry fails the start, not a callback.
        object.__setattr__(self, "targets", CallbackTargets.parse(self.allowed_hosts))

    def delay_before_retry(self, n: int) -> float:
        """Seconds to wait before retry `n` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** min(max(n - 1, 0), 64))

    def actor_options(self) -> dict:
        """The options of the Dramatiq actor that makes the attempts
        (`CallbackSender.deliver_current`): Dramatiq's Retries middleware
        retries it at most `retries` times, and only for the `dramatiq.Retry`
        an attempt raises to ask for one."""
        return {"max_retries": self.retries, "retry_when": self.should_retry}

    def should_retry(self, retries: int, exc: BaseException) -> bool:
        """Dramatiq's ``retry_when``: whether a message that raised `exc`
        after `retries` earlier retries goes again."""
        # Retries ignores max_retries once retry_when is set, so the cap is here too.
        return isinstance(exc, dramatiq.Retry) and retries < self.retries


def check_callback_url(url: str, policy: CallbackPolicy) -> str | None:
    """None when `url` may be a callback target, else why not (a message for
    a 400, naming the setting to change when the host is the problem). Needs
    http or https and a host that the policy's targets allow as far as can
    be told without DNS (see `CallbackTargets.host_problem`)."""
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
    problem = policy.targets.host_problem(host)
    return _URL_PREFIX + problem if problem else None


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


class CallbackSender:
    """Makes the delivery attempts of task callbacks: `deliver_current` is
    the Dramatiq actor's body, `deliver` one attempt."""

    def __init__(self, store, policy: CallbackPolicy, *, post: PostFn | None = None,
                 on_attempt: AttemptCounter = lambda delivered, *, ended, refused: None):
        self.store = store
        self.policy = policy
        self.post: PostFn = post or GuardedPost(GuardedBackend(policy.targets))
        self.on_attempt = on_attempt

    def deliver_current(self, task_id: str) -> None:
        """Make the attempt the current Dramatiq message stands for: 1 + the
        retries Dramatiq made of it (1 when called outside a worker). Raises
        ``dramatiq.Retry`` with the policy's delay when another attempt is
        due, for the Retries middleware to enqueue the message again."""
        message = CurrentMessage.get_current_message()
        attempt = 1 + (message.options.get("retries", 0) if message is not None else 0)
        delay = self.deliver(task_id, attempt)
        if delay is not None:
            raise dramatiq.Retry(f"callback attempt {attempt} failed", delay=round(delay * 1000))

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
                reason = problem.removeprefix(_URL_PREFIX)
                return self._record(task_id, shown_url(url), attempt, None,
                                    f"refused by policy: {reason}", final=True)
            body = json.dumps(self.store.result(task_id)).encode("utf-8")
        except TaskNotFound:
            return None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TASK_ID_HEADER: task_id,
            ATTEMPT_HEADER: str(attempt),
        }
        if self.policy.secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.policy.secret, timestamp, body)
        status, error, detail, final = self._post(url, body, headers)
        try:
            return self._record(task_id, shown_url(url), attempt, status, error, final=final, detail=detail)
        except TaskNotFound:
            return None

    def _post(self, url: str, body: bytes, headers: dict) -> tuple[int | None, str | None, str | None, bool]:
        """One POST: (HTTP status or None, coarse error or None, the full
        error for the server log or None, whether no retry can help)."""
        try:
            status = int(self.post(url, body, headers, self.policy.timeout_s))
        except Exception as exc:  # any failure to get an answer is a failed attempt
            error = describe_failure(exc)
            return None, error, f"{error} ({type(exc).__name__}: {exc})", isinstance(exc, DestinationRefused)
        if 200 <= status < 300:
            return status, None, None, False
        return status, f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else ""), None, False

    def _record(self, task_id: str, url: str, attempt: int, status: int | None, error: str | None,
                *, final: bool = False, detail: str | None = None) -> float | None:
        """Append the attempt's event (with the coarse `error`), log it (with
        the full `detail` when there is one), and return the next delay."""
        delivered = error is None
        more = not delivered and not final and attempt <= self.policy.retries
        next_in = self.policy.delay_before_retry(attempt) if more else None
        # Only a target the rules refuse makes an attempt `final` (nothing was sent).
        self.on_attempt(delivered, ended=next_in is None, refused=final)
        self.store.append_event(task_id, "callback", {
            "url": url, "attempt": attempt, "delivered": delivered, "status_code": status,
            "error": error, "next_attempt_in_s": next_in,
        })
        if delivered:
            log.info("Task %s: callback delivered to %s (attempt %d, HTTP %s)", task_id, url, attempt, status)
        elif next_in is not None:
            log.warning("Task %s: callback to %s failed (attempt %d): %s; retrying in %g s",
                        task_id, url, attempt, detail or error, next_in)
        else:
            log.warning("Task %s: callback to %s failed (attempt %d): %s; giving up",
                        task_id, url, attempt, detail or error)
        return next_in
