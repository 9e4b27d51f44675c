"""Child processes of the demo: start, wait until ready, kill one, stop all.

Each child runs in its own process group so that stopping the demo (Ctrl-C) ends everything it
started, and killing one operator (SIGKILL) leaves the others running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str | None = None
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (a connect attempt is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) != 0


def wait_http_ok(url: str, timeout_s: float = 30.0, child: Child | None = None) -> bool:
    """Poll ``url`` until it answers 2xx, the child dies, or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - 127.0.0.1 only
                if 200 <= resp.status < 300:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    return False


class ProcessGroup:
    """The demo's children. Use as a context manager: leaving it stops every child."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}

    def start(self, child: Child, env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child.log_path = self.log_dir / f"{child.name}.log"
        log = open(child.log_path, "ab")  # noqa: SIM115 - owned by the child process
        child.proc = subprocess.Popen(
            child.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        log.close()
        self.children[child.name] = child
        return child

    def python_module(self, name: str, module: str, *args: str, ready_url: str | None = None,
                      env: dict[str, str] | None = None) -> Child:
        return self.start(Child(name, [sys.executable, "-m", module, *args], ready_url), env)

    def wait_ready(self, timeout_s: float = 60.0) -> list[Child]:
        """Wait for every child with a ``ready_url``; returns the ones that did not come up."""
        failed = []
        for child in self.children.values():
            if child.ready_url and not wait_http_ok(child.ready_url, timeout_s, child):
                failed.append(child)
        return failed

    def reap(self) -> list[str]:
        """Collect the exit status of children that died on their own (so none stays a zombie);
        returns their names."""
        return [c.name for c in self.children.values() if c.proc is not None and c.proc.poll() is not None]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        child = self.children[name]
        if child.alive():
            os.killpg(child.proc.pid, sig)
            child.proc.wait(timeout=10)

    def restart(self, name: str) -> Child:
        child = self.children[name]
        if child.alive():
            self.kill(name, signal.SIGTERM)
        return self.start(Child(child.name, child.argv, child.ready_url))

    def stop_all(self, grace_s: float = 5.0) -> None:
        for child in self.children.values():
            if child.alive():
                try:
                    os.killpg(child.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.proc.wait(timeout=5)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()
