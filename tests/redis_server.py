"""A private redis-server for a test, on a free loopback port, keeping nothing
on disk. Tests that use it skip, with the reason, where no binary exists."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from .polling import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, workdir, port: int | None = None, password: str | None = None):
        """Start one on `port` (default: a free one); give the port of one
        just stopped to stand for that Redis back after a restart, empty.
        With `password` it requires it (and `url` carries it)."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--daemonize", "no", *(["--requirepass", password] if password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError("redis-server exited at start")
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, timeout=10, what="redis-server to answer", every=0.05)
        except AssertionError as exc:
            self.stop()
            raise RuntimeError(f"redis-server did not start: {exc}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
