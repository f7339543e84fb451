"""Callbacks are no server-side request forgery tool: by default they reach
public addresses only, judged on the address actually connected to (so a
name that resolves to 127.0.0.1 is refused when the connection is made),
unless callback_allowed_hosts lists the host.

Every test here either opens no socket at all (a recording backend stands in
for the network, a fake resolver for DNS) or connects to 127.0.0.1 only."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import typing

import httpcore
import pytest

from actors.callback_net import DestinationRefused, GuardedBackend, GuardedPost
from actors.callback_targets import CallbackTargets, public_address
from actors.callbacks import CallbackPolicy, CallbackSender, check_callback_url
from storage import TaskStore

from .test_callback_flow import LOCAL_TARGETS
from .test_callbacks import callback_events, finished_task, no_proxy, receiver  # noqa: F401  (fixtures)

PUBLIC_IP = "93.184.216.34"
ANSWER_204 = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class RecordingStream(httpcore.MockStream):
    """A scripted connection that remembers the name TLS was started for."""

    def __init__(self, backend: RecordingBackend, buffer: list[bytes]):
        super().__init__(buffer)
        self.backend = backend

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        self.backend.tls_names.append(server_hostname)
        return self


class RecordingBackend(httpcore.NetworkBackend):
    """Stands in for the network: records each address asked for and answers
    HTTP 204 without opening a socket."""

    def __init__(self) -> None:
        self.connected: list[str] = []
        self.tls_names: list[str | None] = []

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        self.connected.append(host)
        return RecordingStream(self, [ANSWER_204])


def resolver(table: dict[str, list[str]]):
    """A resolver that knows only `table` (name -> addresses), as getaddrinfo
    would answer; any other name is unknown."""

    def resolve(host: str, port: int) -> list[tuple]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        entries = []
        for address in table[host]:
            if ipaddress.ip_address(address).version == 6:
                entries.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                entries.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return entries

    return resolve


def guarded_post(allowed: tuple[str, ...] = (), *, table: dict[str, list[str]] | None = None,
                 inner: httpcore.NetworkBackend | None = None) -> GuardedPost:
    targets = CallbackPolicy(allowed_hosts=allowed).targets
    resolve = resolver(table) if table is not None else None
    backend = GuardedBackend(targets, inner=inner, **({"resolve": resolve} if resolve else {}))
    return GuardedPost(backend, ssl_context=ssl.create_default_context())


def post(poster: GuardedPost, url: str) -> int:
    return poster(url, b"{}", {"Content-Type": "application/json"}, 2.0)


@pytest.fixture
def store(tmp_path):
    s = TaskStore(tmp_path)
    yield s
    s.close()


# -- the address rules --------------------------------------------------------

@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1", "10.0.0.1",
    "172.16.5.4", "192.168.1.1", "fc00::1", "fd12:3456::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1",
    "100.64.0.1", "192.0.2.1", "240.0.0.1", "255.255.255.255", "fec0::1", "64:ff9b::7f00:1",
    "64:ff9b::a00:1", "2002:7f00:1::1", "2002:a00:1::1", "::ffff:10.0.0.1", "2001:db8::1",
])
def test_non_public_addresses_are_not_public(address):
    assert not public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [PUBLIC_IP, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_are_public(address):
    assert public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", LOCAL_TARGETS + ["http://127.1/", "http://2130706433/", "http://foo.localhost/",
                                                 "http://[64:ff9b::7f00:1]/", "http://224.0.0.1/"])
def test_default_policy_refuses_local_targets_without_dns(url):
    problem = check_callback_url(url, CallbackPolicy())
    assert problem is not None and "callback_allowed_hosts" in problem


def test_a_public_name_passes_the_submit_check_and_is_judged_at_delivery():
    assert check_callback_url("https://rebind.example.com/hook", CallbackPolicy()) is None


def test_allow_list_takes_names_addresses_and_networks():
    policy = CallbackPolicy(allowed_hosts=("localhost", "127.0.0.1", "10.0.0.0/8", "[::1]", "*.corp.example"))
    for url in ("http://localhost:5678/x", "http://127.0.0.1/x", "http://10.20.30.40/x", "http://[::1]/x",
                "http://[::ffff:127.0.0.1]/x", "http://n8n.corp.example/x"):
        assert check_callback_url(url, policy) is None, url
    # A non-empty list admits the hosts it lists and nothing else, public or not.
    for url in ("http://127.0.0.2/x", "http://11.0.0.1/x", "https://example.com/x", "http://corp.example/x"):
        assert "is not in the allowed callback hosts" in check_callback_url(url, policy), url


def test_a_star_entry_allows_any_public_host_but_no_local_one():
    policy = CallbackPolicy(allowed_hosts=("*",))
    assert check_callback_url("https://example.com/x", policy) is None
    assert check_callback_url(f"http://{PUBLIC_IP}/x", policy) is None
    assert "loopback" in check_callback_url("http://127.0.0.1/x", policy)
    assert "local name" in check_callback_url("http://localhost/x", policy)


@pytest.mark.parametrize("entry", ["http://n8n:5678", "n8n.example.com/hook", "user@host", "10.0.0.0/33", "a*b"])
def test_a_bad_allow_list_entry_fails_at_start(entry):
    with pytest.raises(ValueError, match="callback_allowed_hosts"):
        CallbackPolicy(allowed_hosts=(entry,))


# -- delivery: the address actually connected to ---------------------------------

@pytest.mark.parametrize("url", LOCAL_TARGETS)
def test_the_transport_never_connects_to_a_local_address(url):
    network = RecordingBackend()
    with pytest.raises(DestinationRefused):
        # "localhost" goes to the system resolver: /etc/hosts, no DNS query.
        post(guarded_post(inner=network), url)
    assert network.connected == []


@pytest.mark.parametrize("url", LOCAL_TARGETS)
def test_delivery_to_a_local_target_is_refused_once_and_for_all(store, url):
    network = RecordingBackend()
    task_id = finished_task(store, url)
    assert CallbackSender(store, CallbackPolicy(), post=guarded_post(inner=network)).deliver(task_id, 1) is None
    [event] = callback_events(store, task_id)
    assert event["delivered"] is False and event["status_code"] is None and event["next_attempt_in_s"] is None
    assert event["error"].startswith("refused by policy: host ") and "callback_allowed_hosts" in event["error"]
    assert network.connected == []


def test_a_name_resolving_to_loopback_is_refused_at_delivery(store, receiver):
    # Passes the submit check (a public-looking name), then DNS says 127.0.0.1:
    # the rebinding case. The real network backend is used; it must not connect.
    url = f"http://rebind.test:{receiver.port}/hook"
    assert check_callback_url(url, CallbackPolicy()) is None
    task_id = finished_task(store, url)
    sender = CallbackSender(store, CallbackPolicy(), post=guarded_post(table={"rebind.test": ["127.0.0.1"]}))
    assert sender.deliver(task_id, 1) is None
    assert receiver.requests == []
    [event] = callback_events(store, task_id)
    assert event["error"] == ("refused by policy: host 'rebind.test' resolves to no public address; "
                              "list it in callback_allowed_hosts to allow it")
    assert event["next_attempt_in_s"] is None and "127.0.0.1" not in event["error"]


def test_a_listed_name_may_resolve_to_loopback(store, receiver):
    # The n8n-on-the-same-host case: AIPYTHON_CALLBACK_ALLOWED_HOSTS=localhost.
    url = f"http://n8n.test:{receiver.port}/hook"
    policy = CallbackPolicy(allowed_hosts=("n8n.test",))
    task_id = finished_task(store, url)
    sender = CallbackSender(store, policy, post=guarded_post(("n8n.test",), table={"n8n.test": ["127.0.0.1"]}))
    assert sender.deliver(task_id, 1) is None
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"n8n.test:{receiver.port}"
    assert callback_events(store, task_id)[0]["delivered"] is True


def test_a_pattern_allows_names_but_not_their_private_addresses():
    table = {"n8n.test": ["127.0.0.1"]}
    network = RecordingBackend()
    with pytest.raises(DestinationRefused):
        post(guarded_post(("*.test",), table=table, inner=network), "http://n8n.test/hook")
    assert network.connected == []
    # ...unless the address is listed too.
    assert post(guarded_post(("*.test", "127.0.0.0/8"), table=table, inner=network), "http://n8n.test/hook") == 204
    assert network.connected == ["127.0.0.1"]


def test_only_the_public_addresses_of_a_mixed_answer_are_connected_to():
    network = RecordingBackend()
    table = {"mixed.test": ["127.0.0.1", "10.0.0.5", "169.254.169.254", PUBLIC_IP]}
    assert post(guarded_post(table=table, inner=network), "http://mixed.test/hook") == 204
    assert network.connected == [PUBLIC_IP]


def test_tls_is_started_for_the_host_name_not_the_address():
    network = RecordingBackend()
    assert post(guarded_post(table={"hooks.test": [PUBLIC_IP]}, inner=network), "https://hooks.test/hook") == 204
    assert network.connected == [PUBLIC_IP] and network.tls_names == ["hooks.test"]


def test_an_unknown_name_is_a_retried_failure_not_a_refusal(store):
    task_id = finished_task(store, "http://nowhere.test/hook")
    sender = CallbackSender(store, CallbackPolicy(), post=guarded_post(table={}, inner=RecordingBackend()))
    assert sender.deliver(task_id, 1) == 2.0
    assert callback_events(store, task_id)[0]["error"] == "could not resolve the host name"


def test_targets_of_an_empty_list_are_unrestricted_names():
    assert not CallbackTargets.parse([]).restricted and CallbackTargets.parse(["*"]).restricted
