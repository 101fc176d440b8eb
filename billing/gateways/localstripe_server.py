"""Run localstripe (the fake Stripe server from PyPI) bound to loopback only.

localstripe's own entry point listens on every interface and pickles its
store to a fixed /tmp path after every write; this wrapper binds 127.0.0.1
and keeps the store in memory, so several copies can run side by side.
Development and tests only:  python -m billing.gateways.localstripe_server --port 8420
"""

import argparse
import logging

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
