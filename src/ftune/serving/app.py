"""The FastAPI application: OpenAI's endpoints over the served models, errors in OpenAI's shape."""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the routes' annotations here

from ftune.errors import FtuneError
from ftune.serving.errors import ApiError, unknown_model, wrong_kind

_END = object()


def build_app(served, *, api_key: str | None = None, max_tokens_cap: int = 2048, max_body_bytes: int = 2_000_000,
              max_waiting: int = 64, allow_updates: bool = False):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from sse_starlette.sse import EventSourceResponse
    from starlette.concurrency import run_in_threadpool

    from ftune.serving import completions
    from ftune.serving.requests import field, sampling_of, texts_of

    app = FastAPI(title="ftune serve", docs_url=None, redoc_url=None)
    started = int(time.time())
    in_flight = {"count": 0}
    counting = threading.Lock()

    @app.exception_handler(ApiError)
    async def api_error(_, error: ApiError):
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(Exception)
    async def unexpected(_, error: Exception):  # never a traceback to the client
        body = ApiError(500, f"internal error: {type(error).__name__}: {error}", type="server_error").body()
        return JSONResponse(body, status_code=500)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        try:
            if api_key and request.url.path.startswith("/v1/"):
                given = request.headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                    raise ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                                   type="invalid_request_error", code="invalid_api_key")
            if int(request.headers.get("content-length") or 0) > max_body_bytes:
                raise ApiError(413, f"request body over {max_body_bytes:,} bytes", code="body_too_large")
        except ApiError as error:
            return JSONResponse(error.body(), status_code=error.status)
        return await call_next(request)

    def admit() -> None:
        """Count a request in until ``release()``: a streamed one until its last event."""
        with counting:
            if in_flight["count"] >= max_waiting:
                raise ApiError(429, f"the server is busy ({max_waiting} requests in flight); retry shortly",
                               type="rate_limit_error", code="queue_full")
            in_flight["count"] += 1

    def release() -> None:
        with counting:
            in_flight["count"] -= 1

    async def counted(work, *args):
        """``work(*args)`` in a worker thread, counted in flight while it runs."""
        admit()
        try:
            return await run_in_threadpool(work, *args)
        finally:
            release()

    async def body_of(request: Request) -> dict[str, Any]:
        """The JSON object sent, read up to ``max_body_bytes`` whatever Content-Length claims."""
        import json

        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise ApiError(413, f"request body over {max_body_bytes:,} bytes", code="body_too_large")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def model_of(body: dict[str, Any], kind: str, endpoint: str):
        name = field(body, "model", str, required=True)
        if name not in served.models:
            raise unknown_model(name, served.names())
        model = served.models[name]
        if model.kind != kind:
            raise wrong_kind(name, model.kind, endpoint)
        return model

    @app.get("/", include_in_schema=False)
    async def chat_page():
        from importlib.resources import files

        from fastapi.responses import HTMLResponse

        return HTMLResponse(files("ftune.serving").joinpath("chat_page.html").read_text())

    @app.get("/health")
    async def health():
        models = list(served.models.values())
        return {"status": "ok", "models": served.names(), "in_flight": in_flight["count"],
                "largest_batch": {m.name: m.largest_batch() for m in models},
                "cancelled_rows": sum({id(m.backend): m.backend.cancelled_rows() for m in models
                                       if m.kind == "chat"}.values())}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_entry(m) for m in list(served.models.values())]}

    def model_entry(m) -> dict[str, Any]:
        return {"id": m.name, "object": "model", "created": started, "owned_by": "ftune", "parent": m.parent,
                "kind": m.kind}

    def updates_allowed() -> None:
        if not allow_updates:
            raise ApiError(403, "loading and unloading models needs a server started with --allow-adapter-updates",
                           type="permission_error", code="updates_not_allowed")

    @app.post("/v1/models")
    async def load_model(request: Request):
        updates_allowed()
        body = await body_of(request)
        source = field(body, "source", str, required=True)
        try:
            added = await run_in_threadpool(served.add, source, field(body, "name", str), lambda *_: None)
        except (OSError, ValueError, FtuneError) as error:
            raise ApiError(400, f"source {source!r}: {error}", param="source") from None
        return model_entry(added)

    @app.delete("/v1/models/{name}")
    async def unload_model(name: str):
        updates_allowed()
        if name not in served.models:
            raise unknown_model(name, served.names())
        await run_in_threadpool(served.remove, name)
        return {"id": name, "object": "model", "deleted": True}

    async def generate(request: Request, chat: bool):
        body = await body_of(request)
        endpoint = "/v1/chat/completions" if chat else "/v1/completions"
        model = model_of(body, "chat", endpoint)
        sampling = sampling_of(body, max_tokens_cap)
        if chat:
            prompt_ids = completions.chat_prompt_ids(model, field(body, "messages", list, required=True))
        else:
            prompt_ids = completions.text_prompt_ids(model, field(body, "prompt", str, required=True))
        if len(prompt_ids) + 1 > model.backend.context:
            raise ApiError(400, f"This model's context is {model.backend.context} tokens; the prompt has "
                           f"{len(prompt_ids)}", param="messages" if chat else "prompt", code="context_length_exceeded")
        if field(body, "stream", bool, False):
            if not chat:
                raise ApiError(400, "stream: streamed text completions are not served; use /v1/chat/completions",
                               param="stream")
            usage = bool((field(body, "stream_options", dict, {}) or {}).get("include_usage"))
            events = completions.chat_chunks(model.name, completions.stream_reply(model, prompt_ids, sampling), usage)
            admit()
            return EventSourceResponse(_in_threads(events, run_in_threadpool, release), sep="\n", ping=15)
        reply = await counted(completions.whole_reply, model, prompt_ids, sampling)
        return (completions.chat_response if chat else completions.text_response)(model.name, reply)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await generate(request, chat=True)

    @app.post("/v1/completions")
    async def text_completions(request: Request):
        return await generate(request, chat=False)

    @app.post("/v1/classify")
    async def classify(request: Request):
        body = await body_of(request)
        model = model_of(body, "classifier", "/v1/classify")
        rows = await counted(model.scorer, texts_of(body))
        return {"object": "list", "model": model.name, "data": [{"index": i, **row} for i, row in enumerate(rows)]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = await body_of(request)
        model = model_of(body, "embeddings", "/v1/embeddings")
        rows = await counted(model.scorer, texts_of(body))
        tokens = int(sum(count for _, count in rows))
        return {"object": "list", "model": model.name,
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, (v, _) in enumerate(rows)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app


async def _in_threads(events, run_in_threadpool, release):
    """A blocking generator stepped in worker threads; closed when the client goes away (which
    cancels the request's row), then ``release`` counts the request out."""
    iterator = iter(events)
    try:
        while True:
            item = await run_in_threadpool(next, iterator, _END)
            if item is _END:
                return
            yield item
    finally:
        try:
            iterator.close()
        except ValueError:  # still running its last step in a worker thread; it ends on its own
            pass
        release()
