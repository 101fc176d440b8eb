"""Fixtures of the accounts tests."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from standardwebhooks.webhooks import Webhook


class Receiver:
    """An organisation's web server: records each call and answers the next
    scripted status (then 200)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.received_at: list[float] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.received_at.append(time.time())  # the test's travelled time
                self.send_response(receiver.script.pop(0) if receiver.script else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/exchange"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, secret: str) -> list[dict]:
        """Every call's body, each verified with the endpoint's secret as the
        receiver did when it came (the signed timestamp is checked against its clock)."""
        events = []
        for (headers, body), at in zip(self.calls, self.received_at, strict=True):
            with time_machine.travel(at, tick=False):
                events.append(Webhook(secret).verify(body, headers))
        return events


@pytest.fixture
def receiver():
    """An organisation's web server on a free loopback port, for the test."""
    server = Receiver()
    yield server
    server.close()
