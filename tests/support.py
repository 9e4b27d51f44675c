"""Test helpers shared by every part's tests: free ports and an asyncio loop in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` executes there and waits for the result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _cancel_all(self):
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self):
        try:
            self.run(self._cancel_all(), timeout=5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class GatewayThread:
    """The gateway app on its real server (:class:`zistboom.gateway.server.GatewayServer`, asyncio
    loop) in a daemon thread of this process, on 127.0.0.1 (``port`` or an ephemeral one).
    ``start()`` returns once the server listens and the app's startup has run; ``stop()`` waits up
    to ``stop_timeout`` s for the graceful shutdown."""

    stop_timeout = 10.0

    def __init__(self, app, port: int | None = None):
        from zistboom.gateway.server import GatewayServer

        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = GatewayServer(app, "127.0.0.1", self.port, loop="asyncio")
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(self.stop_timeout)
