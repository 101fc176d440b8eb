"""A tiny fake of the two Stripe features localstripe lacks, for tests ONLY:
Connect transfers, and idempotency keys (a repeated key returns the first
answer and creates nothing). It speaks just enough of the API for
billing/gateways/stripe.py: POST /v1/customers, /v1/payment_intents,
/v1/transfers."""

import http.server
import itertools
import json
import threading
import urllib.parse


class FakeStripe:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None, dict]] = []  # (path, key, params)
        self.objects: dict[str, list[dict]] = {}
        self._by_key: dict[tuple[str, str], dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                params = dict(urllib.parse.parse_qsl(body))
                answer = fake._handle(self.path, self.headers.get("Idempotency-Key"), params)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handle(self, path: str, key: str | None, params: dict) -> dict:
        kind = path.rstrip("/").rsplit("/", 1)[-1]
        prefix = {"customers": "cus", "payment_intents": "pi", "transfers": "tr"}[kind]
        with self._lock:
            self.requests.append((path, key, params))
            if key and (kind, key) in self._by_key:
                return self._by_key[(kind, key)]
            number = next(self._ids)
            obj = {"id": f"{prefix}_fake{number}", "object": kind[:-1], **params}
            if kind == "payment_intents":
                obj.update(
                    status="requires_payment_method",
                    client_secret=f"{obj['id']}_secret",
                    amount=int(params["amount"]),
                )
            if kind == "transfers":
                obj["amount"] = int(params["amount"])
            self.objects.setdefault(kind, []).append(obj)
            if key:
                self._by_key[(kind, key)] = obj
            return obj

    def stop(self) -> None:
        self.server.shutdown()
