"""A fake Vertex AI on loopback, `FakeVertex`: Gemini and Claude (Anthropic's publisher
models) under one project and location.

Routes, under `/v1/` and `/v1beta1/`, `projects/{project}/locations/{location}/`:
`publishers/google/models/{model}:generateContent` and `:streamGenerateContent?alt=sse` (the
fake Gemini API's checks, answers and knobs, `tests.helpers.gemini_upstream`, plus Vertex's:
every content needs its role; usage with trafficType), and
`publishers/anthropic/models/{model}:rawPredict` / `:streamRawPredict` (an Anthropic Messages
answer or SSE stream, whichever `stream` in the body asks; the body must carry an
`anthropic_version` of `anthropic_versions`, by default "vertex-2023-10-16", and no `model`:
the model is in the path), and `publishers/anthropic/models/count-tokens:rawPredict`
(Anthropic's count_tokens: here the body names the model; `input_tokens` counts words).

Every request needs `Authorization: Bearer <token>` that `token_valid(token)` accepts (the
fake OAuth server's `valid`, `tests.helpers.google_oauth`): none or a refused one (expired,
unknown) is a 401 UNAUTHENTICATED in Google's shape. The project and location in the path
must be the fake's (403 PERMISSION_DENIED, 404 NOT_FOUND otherwise). A loopback fake cannot
check which host a client connected to, so the Host header is recorded (`Received.host`), and
`host_for(location)` says which one a client should have meant.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from tests.helpers import anthropic_upstream
from tests.helpers.gemini_upstream import BadRequest, GoogleFake, Received, google_error

ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
COUNT_TOKENS: Final = "count-tokens"  # Anthropic's count_tokens: a model name in the path
PROJECT: Final = "fake-project"
LOCATION: Final = "us-central1"
_PATH: Final = re.compile(
    r"/(?:v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)"
)
_METHODS: Final = {
    "google": ("generateContent", "streamGenerateContent"),
    "anthropic": ("rawPredict", "streamRawPredict"),
}


def host_for(location: str) -> str:
    """The endpoint a client uses for a location: regional, or the global one."""
    if location == "global":
        return "aiplatform.googleapis.com"
    return f"{location}-aiplatform.googleapis.com"


class FakeVertex(GoogleFake):
    """Vertex AI's generateContent and Anthropic rawPredict (see the module docstring). The
    knobs are the fake Gemini API's (`fail_next`, `block_next`, `break_next`, `hold`); on the
    Anthropic routes `fail_next` and `hold` apply, and `break_next` ends a stream with
    Anthropic's `event: error` (overloaded_error) after its first events."""

    vertex = True

    def __init__(
        self,
        *,
        token_valid: Callable[[str], bool],
        project: str = PROJECT,
        location: str = LOCATION,
        chunks: int = 3,
        require_thought_signatures: bool = False,
        anthropic_versions: tuple[str, ...] = (ANTHROPIC_VERSION,),
    ) -> None:
        super().__init__(chunks=chunks, require_thought_signatures=require_thought_signatures)
        self._token_valid = token_valid
        self.anthropic_versions = anthropic_versions
        self.project = project
        self.location = location

    def __repr__(self) -> str:
        return f"FakeVertex(url={self.url!r}, project={self.project!r}, location={self.location!r})"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.+}", self._handle)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return google_error(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            )
        if not self._token_valid(token):
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            )
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = await self.record(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        match = _PATH.fullmatch(received.path)
        if match is None:
            return google_error(404, f"The requested URL {received.path} was not found.")
        project, location, publisher, model, method = match.group(
            "project", "location", "publisher", "model", "method"
        )
        resource = f"projects/{project}/locations/{location}/publishers/{publisher}/models/{model}"
        if project != self.project:
            return google_error(
                403,
                f"Permission 'aiplatform.endpoints.predict' denied on resource "
                f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
            )
        if location != self.location or method not in _METHODS.get(publisher, ()):
            return google_error(404, f"Publisher Model `{resource}` not found.")
        if publisher == "anthropic":
            return await self._anthropic(request, received, model)
        try:
            return await self.generate(
                request, received, model, stream=method == "streamGenerateContent"
            )
        except BadRequest as exc:
            return exc.response()

    async def _anthropic(
        self, request: web.Request, received: Received, model: str
    ) -> web.StreamResponse:
        """Anthropic's Messages API behind Vertex: Anthropic's checks and shapes, the model
        from the path."""
        body = received.json
        if not isinstance(body, dict):
            return anthropic_upstream.error(400, "invalid_request_error", "Invalid JSON body")
        if model == COUNT_TOKENS:
            return await self._count_tokens(body)
        if "model" in body:
            return anthropic_upstream.error(
                400, "invalid_request_error", "model: Extra inputs are not permitted"
            )
        version = body.get("anthropic_version")
        if version not in self.anthropic_versions:
            message = (
                "anthropic_version: Field required"
                if version is None
                else f"anthropic_version: Input should be '{self.anthropic_versions[0]}'"
            )
            return anthropic_upstream.error(400, "invalid_request_error", message)
        if not isinstance(body.get("max_tokens"), int):
            return anthropic_upstream.error(
                400, "invalid_request_error", "max_tokens: Field required"
            )
        messages = body.get("messages")
        if not messages or not isinstance(messages, list):
            return anthropic_upstream.error(
                400, "invalid_request_error", "messages: at least one message is required"
            )
        failure = await self.scripted_failure()
        if failure is not None:
            return failure
        text = f"You said: {_last_text(messages)[:80]}"
        if not body.get("stream"):
            return web.json_response(anthropic_upstream.message(model, text))
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
        events = anthropic_upstream.text_stream(model, pieces)
        if self.knobs.breaks:
            self.knobs.breaks -= 1
            overloaded = {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
            }
            events = [*events[:4], anthropic_upstream.event("error", overloaded)]
        return await anthropic_upstream.send_stream(request, events)

    async def _count_tokens(self, body: dict[str, Any]) -> web.StreamResponse:
        """`count-tokens:rawPredict`: Anthropic's count_tokens, whose body (unlike the
        Messages calls) names the model."""
        if not isinstance(body.get("model"), str):
            return anthropic_upstream.error(400, "invalid_request_error", "model: Field required")
        messages = body.get("messages")
        if not messages or not isinstance(messages, list):
            return anthropic_upstream.error(
                400, "invalid_request_error", "messages: at least one message is required"
            )
        failure = await self.scripted_failure()
        if failure is not None:
            return failure
        texts = [_text(body.get("system")), *(_last_text([m]) for m in messages)]
        return web.json_response({"input_tokens": sum(len(t.split()) for t in texts)})


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            block["text"] for block in content if isinstance(block, dict) and "text" in block
        )
    return ""


def _last_text(messages: list[Any]) -> str:
    return _text(messages[-1].get("content")) if isinstance(messages[-1], dict) else ""
