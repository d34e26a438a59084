"""The HTTP API over one Predictor (FastAPI; its OpenAPI schema is served at ``/docs``).

| route | what |
|:---|:---|
| ``POST /v1/predict`` | an image as the body: its answer (the Python API's ``to_json``); several |
|   | as multipart files: ``{"results": [...]}``, in their order |
| ``GET /v1/model`` | the bundle, task, backend, precision, how ``auto`` chose, vocabulary size, batching |
| ``GET /v1/vocabulary`` | the verbs with their roles, and the nouns |
| ``POST`` / ``DELETE /v1/vocabulary/verbs/{name}``, ``.../nouns/{id}`` | edits, with the admin token only |
| ``GET /health`` | the process answers |
| ``GET /ready`` | the bundle is loaded and warmed up |
| ``GET /metrics`` | Prometheus metrics (``serve/metrics.py``) |

Bad input is a 4xx carrying the ``MipdEdgeError``'s message, never a traceback: 413 above the
body limit, 415 for what is not an image the SDK reads, 400 for a broken one, 503 with
``Retry-After`` when the queue is full. The server fetches no URL it is given: images arrive in
the request, so it cannot be turned against the network it sits in.
"""


import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, AsyncIterator, Literal, Optional

import cv2
import numpy as np

from ..config import ServeConfig
from ..deploy.bundle import bundle_digest
from ..deploy.image import decode_image
from ..errors import InvalidImageError, MipdEdgeError, VocabularyError, require
from .batching import BatchQueue, BatchSettings, QueueFull
from .metrics import ServerMetrics

log = logging.getLogger(__name__)

# what an image body may start with: the formats the SDK decodes (deploy/image.py)
MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"), (b"II*\x00", "tiff"),
         (b"MM\x00*", "tiff"))
MAX_FILES = 64  # images in one multipart request


class BodyTooLarge(MipdEdgeError):
    """The request body is larger than the server takes."""


class UnsupportedImage(MipdEdgeError):
    """The body is not an image in a format the SDK reads."""


class MalformedRequest(MipdEdgeError):
    """The request's body does not follow its own content type."""


class NotAllowed(MipdEdgeError):
    """A state-changing request without the admin token."""


class UnknownEntry(VocabularyError):
    """A vocabulary edit names a verb or noun the vocabulary does not hold."""


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


STATUS = ((BodyTooLarge, 413), (UnsupportedImage, 415), (QueueFull, 503), (NotAllowed, 401), (UnknownEntry, 404),
          (InvalidImageError, 400), (VocabularyError, 400), (MipdEdgeError, 400))


def status_of(exc: Exception) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


def image_format(data: bytes) -> str:
    """The format of an image body by its first bytes; ``UnsupportedImage`` for anything else."""
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise UnsupportedImage("the body is not an image mipd-edge reads (JPEG, PNG, BMP, WebP or TIFF)"
                           + ("" if data else ": it is empty"))


def batch_runner(predictor):
    """What the batching queue runs: (bytes, name) items decoded in its own thread (no hop of
    their own off the event loop), then one ``predict`` over the readable ones; an unreadable
    one fails its own request only."""
    def run(items: list[tuple[bytes, str]]) -> list[Any]:
        decoded: list[Any] = []
        for data, name in items:
            try:
                decoded.append(decode_image(data, name))
            except InvalidImageError as exc:
                decoded.append(exc)
        answers = iter(predictor.predict([d for d in decoded if not isinstance(d, Exception)]))
        return [d if isinstance(d, Exception) else next(answers) for d in decoded]
    return run


def create_app(predictor, cfg: ServeConfig = ServeConfig(), admin_token: Optional[str] = None):
    """The FastAPI app serving ``predictor`` (which it does not close). ``admin_token``, where
    given, is what vocabulary edits must send as ``Authorization: Bearer TOKEN``; without one,
    every edit is refused."""
    fastapi = require("fastapi", "serve", "mipd-edge serve")
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    batching = BatchSettings(cfg.max_batch, cfg.max_delay_ms, cfg.max_queue, cfg.workers)
    model = {"bundle": str(predictor.bundle), "task": predictor.task, "backend": predictor.backend,
             "precision": predictor.precision}
    state: dict[str, Any] = {"ready": False}
    queue_holder: dict[str, BatchQueue] = {}
    metrics = ServerMetrics(model, lambda: queue_holder["queue"].depth if "queue" in queue_holder else 0)
    max_bytes = int(cfg.max_body_mb * 2**20)

    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        queue_holder["queue"] = queue = BatchQueue(batch_runner(predictor), batching, metrics.batch)
        size = predictor.preprocess.size
        blank = cv2.imencode(".png", np.full((size, size, 3), 114, np.uint8))[1].tobytes()
        await asyncio.wrap_future(queue.submit((blank, "the warm-up image")))
        state["ready"] = True
        log.info("serving %s (%s %s) on http://%s:%d", predictor.bundle, predictor.backend, predictor.precision,
                 cfg.host, cfg.port)
        try:
            yield
        finally:
            state["ready"] = False
            await asyncio.to_thread(queue.close)

    app = fastapi.FastAPI(title="mipd-edge", version="1", lifespan=lifespan,
                          description="Open-vocabulary grounded situation recognition over HTTP.")

    def error(exc: Exception) -> Response:
        code = status_of(exc)
        metrics.errors.labels(type(exc).__name__).inc()
        headers = {"Retry-After": "1"} if code == 503 else None
        message = str(exc) if code != 500 else "internal error (see the server's log)"
        if code == 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"error": {"type": type(exc).__name__, "message": message}}, code, headers=headers)

    def measure(app):
        """Counts and times every request by route and status (plain ASGI: no extra copy of the
        body, and a client's disconnect still reaches the route)."""
        async def measured(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started, status = time.perf_counter(), [500]

            async def sending(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)
            try:
                await app(scope, receive, sending)
            finally:
                path = getattr(scope.get("route"), "path", "unmatched")
                metrics.requests.labels(path, str(status[0])).inc()
                metrics.latency.labels(path).observe(time.perf_counter() - started)
        return measured

    app.add_middleware(measure)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(f"the body is {int(declared):,} bytes; this server takes at most {max_bytes:,} "
                               f"(--max-body-mb)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(f"the body is larger than {max_bytes:,} bytes (--max-body-mb)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def images_of(request: Request, body: bytes) -> tuple[list[tuple[bytes, str]], bool]:
        """(image bytes, name) of the request, and whether it was multipart."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data":
            return [(body, "the request body")], False

        async def replay() -> AsyncIterator[bytes]:
            yield body
        try:
            form = await MultiPartParser(Headers(raw=request.headers.raw), replay(), max_files=MAX_FILES).parse()
        except Exception as exc:  # the parser's own exception types, or a missing boundary
            raise MalformedRequest(f"the multipart body cannot be read: {exc or type(exc).__name__}") from exc
        files = [(await value.read(), f"file {value.filename or key!r}") for key, value in form.multi_items()
                 if hasattr(value, "read")]
        if not files:
            raise UnsupportedImage("the multipart request holds no file")
        return files, True

    async def answers(request: Request, images: list[tuple[bytes, str]]) -> list[Any]:
        """Each image's answer through the batching queue; cancelled where the client goes away."""
        queue = queue_holder["queue"]
        queue.arrived(len(images))  # before they are queued: a batch never waits for images already in it
        futures = []
        try:
            for image in images:
                futures.append(queue.submit(image))
        except QueueFull:
            for future in futures:
                future.cancel()
            raise
        waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=0.25)
            if done:
                return waiting.result()
            if await request.is_disconnected():
                for future in futures:
                    future.cancel()
                waiting.cancel()
                raise ClientGone()

    @app.post("/v1/predict", summary="Recognise the situation in one image (the body) or several (multipart)")
    async def predict(request: Request):
        queue = queue_holder["queue"]
        queue.expect(1)
        expected = 1
        try:
            body = await read_body(request)
            files, multipart = await images_of(request, body)
            queue.expect(len(files) - 1)
            expected = len(files)
            for data, _ in files:
                image_format(data)  # 415 before it queues; decoding happens in the batch's thread
        except Exception as exc:
            queue.arrived(expected)
            return error(exc)
        try:
            results = await answers(request, files)
        except ClientGone:
            return Response(status_code=499)
        except Exception as exc:
            return error(exc)
        payload = [r.to_json() for r in results]
        return Response(json.dumps({"results": payload} if multipart else payload[0]).encode(),
                        media_type="application/json")

    @app.get("/v1/model", summary="What is served: bundle, task, backend, precision, vocabulary, batching")
    async def describe():
        vocabulary = predictor.vocabulary
        return {**model, "bundle_sha256": bundle_digest(predictor.bundle),
                "selection": predictor.selection.describe(), "verbs": len(vocabulary.verbs),
                "nouns": len(vocabulary.nouns), "batching": asdict(batching)}

    @app.get("/v1/vocabulary", summary="The verbs with their roles, and the nouns")
    async def vocabulary():
        v = predictor.vocabulary
        return {"verbs": {name: {"roles": list(v.frame(name).roles), "definition": v.frame(name).definition}
                          for name in v.verbs},
                "nouns": {noun_id: list(noun.glosses) for noun_id, noun in v.nouns.items()}}

    def authorize(request: Request) -> None:
        if admin_token is None:
            raise NotAllowed("vocabulary edits are off on this server (a single mipd-edge serve process started "
                             "with --admin-token takes them)")
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {admin_token}".encode()):
            raise NotAllowed("vocabulary edits need the admin token (Authorization: Bearer TOKEN)")

    async def edit(request: Request, change) -> Any:
        try:
            authorize(request)
            body = await read_body(request)
            try:
                fields = json.loads(body) if body else {}
            except ValueError as exc:
                raise VocabularyError(f"the body is not JSON: {exc}") from exc
            if not isinstance(fields, dict):
                raise VocabularyError("the body is a JSON object")
            return await asyncio.to_thread(change, fields)
        except Exception as exc:
            return error(exc)

    @app.post("/v1/vocabulary/verbs/{name}", summary="Add (or with replace, redefine) a verb; admin token")
    async def add_verb(name: str, request: Request):
        def change(f: dict) -> dict:
            frame = predictor.vocabulary.add_verb(name, str(f.get("definition", "")), f.get("roles") or [],
                                                  abstract=str(f.get("abstract", "")), replace=bool(f.get("replace")))
            return {"verb": name, "roles": list(frame.roles)}
        return await edit(request, change)

    @app.post("/v1/vocabulary/nouns/{noun_id}", summary="Add (or with replace, redefine) a noun; admin token")
    async def add_noun(noun_id: str, request: Request):
        def change(f: dict) -> dict:
            noun = predictor.vocabulary.add_noun(noun_id, f.get("glosses") or noun_id, str(f.get("definition", "")),
                                                 replace=bool(f.get("replace")))
            return {"noun": noun_id, "glosses": list(noun.glosses)}
        return await edit(request, change)

    @app.delete("/v1/vocabulary/{kind}/{name}", summary="Remove a verb (kind: verbs) or a noun (nouns); admin token")
    async def remove(kind: Literal["verbs", "nouns"], name: str, request: Request):
        def change(_: dict) -> dict:
            vocabulary = predictor.vocabulary
            if name not in (vocabulary.frames if kind == "verbs" else vocabulary.nouns):
                raise UnknownEntry(f"no {kind[:-1]} {name!r} in the vocabulary")
            (vocabulary.remove_verb if kind == "verbs" else vocabulary.remove_noun)(name)
            return {"removed": name}
        return await edit(request, change)

    @app.get("/health", summary="The process answers")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="The bundle is loaded and warmed up")
    async def ready():
        if state["ready"]:
            return {"ready": True}
        return JSONResponse({"ready": False}, 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus_metrics():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
