"""``mipd-edge serve``: a bundle behind uvicorn.

SIGTERM and SIGINT stop it the way a container platform expects: it stops accepting
connections, answers the requests in flight (up to ``DRAIN_S`` seconds), drains the batching
queue, closes the Predictor and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Optional

from ..config import ServeConfig
from ..errors import MipdEdgeError, require
from ..files import regular_file

log = logging.getLogger(__name__)

DRAIN_S = 30  # seconds the requests in flight get to finish after SIGTERM
MAX_TOKEN_BYTES = 4096


def read_admin_token(source: Optional[str]) -> Optional[str]:
    """The admin token from ``env:VARIABLE`` or ``file:PATH`` (never the token itself on the
    command line, where every user of the machine can read it in the process list)."""
    if source is None:
        return None
    kind, _, where = source.partition(":")
    if kind == "env":
        token = os.environ.get(where, "")
        if not token:
            raise MipdEdgeError(f"--admin-token env:{where}: the variable is not set or empty")
    elif kind == "file":
        path = regular_file(where, "admin token file", MAX_TOKEN_BYTES, MipdEdgeError)
        token = Path(path).read_text(encoding="utf-8").strip()
        if not token:
            raise MipdEdgeError(f"--admin-token file:{where}: the file is empty")
    else:
        raise MipdEdgeError(f"--admin-token takes env:VARIABLE or file:PATH, got {source!r}")
    if len(token) < 16:
        raise MipdEdgeError("the admin token is shorter than 16 characters: use a long random one "
                            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def _drained(sig: int, _frame) -> None:
    log.info("stopped by %s after draining", signal.Signals(sig).name)


def serve(predictor, cfg: ServeConfig = ServeConfig(), admin_token: Optional[str] = None) -> None:
    """Serve ``predictor`` until SIGTERM or SIGINT, then close it. ``admin_token``
    (``read_admin_token(cfg.admin_token)``) unlocks vocabulary edits."""
    uvicorn = require("uvicorn", "serve", "mipd-edge serve")
    from .app import create_app

    app = create_app(predictor, cfg, admin_token)
    if threading.current_thread() is threading.main_thread():
        # uvicorn drains on SIGTERM / SIGINT, restores the handlers it found and raises the signal
        # again into them: with these, a drained server then exits 0 instead of dying by the signal
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _drained)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=DRAIN_S, lifespan="on")
    try:
        uvicorn.Server(config).run()
    finally:
        predictor.close()
