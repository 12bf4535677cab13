"""Vertex AI: its publishers' models and a token endpoint, so that a Vertex provider (or
google-genai with `vertexai=True`) runs against the mock without a Google Cloud account.

* `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}`
  (and under `/v1beta1`, google-genai's): Gemini's `generateContent`, `streamGenerateContent`
  and `countTokens`, answered by `gemini.answer`
* `.../publishers/anthropic/models/{model}:rawPredict` and `:streamRawPredict`: Anthropic's
  Messages API with the model in the URL, `anthropic_version` required in the body and `model`
  refused there (400, in Anthropic's shape); then checked, answered and streamed as
  `POST /v1/messages` is (`anthropic`, `anthropic_answer`). `:streamRawPredict` always streams.
* `POST /mock/oauth2/token`: Google's token endpoint, unverifying: the service account's
  JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion`) or
  the refresh-token grant answers `{"access_token": "mock-token-<n>", "expires_in": 3600,
  "token_type": "Bearer"}`.

The model routes take any `Authorization: Bearer <token>`; without one, Google's 401
UNAUTHENTICATED. A service account whose `token_uri` is the mock's token endpoint gets its
tokens there (`mock_service_account`), e.g. for `llm-proxy mock-upstream` on port 18001:

    python -c "import json; from llm_proxy.testing.mock.vertex import mock_service_account;
    print(json.dumps(mock_service_account('http://127.0.0.1:18001/mock/oauth2/token')))" \\
        > mock-service-account.json

(a new RSA key each time; `cryptography` is needed, as it is for Google's own libraries)."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from llm_proxy.testing.mock.anthropic import _check, _forced, invalid
from llm_proxy.testing.mock.anthropic_answer import answer_events, message, plan_answer
from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.gemini import COUNT, GENERATE, STREAM, google_error, split_call
from llm_proxy.testing.mock.gemini import answer as gemini_answer
from llm_proxy.testing.mock.gemini import read_body as read_recorded
from llm_proxy.testing.mock.state import OPTIONS, STATE
from llm_proxy.testing.mock.wire import send, stream_chunks, stream_delay

JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH: Final = "/mock/oauth2/token"  # noqa: S105 (a path)
TOKEN_SECONDS: Final = 3600
RAW_PREDICT: Final = "rawPredict"
STREAM_RAW_PREDICT: Final = "streamRawPredict"
_GOOGLE_METHODS: Final = frozenset((GENERATE, STREAM, COUNT))
_UNAUTHENTICATED: Final = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)


def check_bearer(request: web.Request) -> None:
    """Vertex's credential: any non-empty `Authorization: Bearer` token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise google_error(401, _UNAUTHENTICATED)


async def call(request: web.Request) -> web.StreamResponse:
    """`POST .../publishers/{publisher}/models/{model}:{method}`."""
    body = await read_recorded(request)
    check_bearer(request)
    model, method = split_call(request.match_info["call"])
    publisher = request.match_info["publisher"]
    if publisher == "google" and method in _GOOGLE_METHODS:
        return await gemini_answer(request, body, model, method)
    if publisher == "anthropic" and method in (RAW_PREDICT, STREAM_RAW_PREDICT):
        return await _raw_predict(request, body, model, method == STREAM_RAW_PREDICT)
    raise google_error(404, f"Publisher model {publisher}/{model}:{method} not found.")


async def _raw_predict(
    request: web.Request, body: bytes, model: str, stream: bool
) -> web.StreamResponse:
    """A Messages request with the model in the URL (see the module's docstring)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise invalid("There was an issue with the JSON body of your request.")
    if not isinstance(data.get("anthropic_version"), str):
        raise invalid("anthropic_version: Field required")
    if "model" in data:
        raise invalid("model: Extra inputs are not permitted")
    data["model"] = model
    _check(data, needs_max_tokens=True)
    _forced(request, data)
    options, state = request.app[OPTIONS], request.app[STATE]
    answer = plan_answer(data, state.new_id("msg_"), stream_chunks(request, data), options.tool)
    if not (stream or data.get("stream")):
        return web.Response(body=orjson.dumps(message(answer)), content_type="application/json")
    error_after = data.get("mock_error_after", options.error_after)
    error_type = data.get("mock_error_type") or options.fail_type or "overloaded_error"
    events = answer_events(
        answer, None if error_after is None else int(error_after), error_type=error_type
    )
    return await send(request, "text/event-stream", events, stream_delay(request, data))


def _oauth_error(error: str, description: str) -> MockError:
    return MockError(400, description, body={"error": error, "error_description": description})


async def token(request: web.Request) -> web.Response:
    """`POST /mock/oauth2/token` (see the module's docstring)."""
    body = await read_recorded(request)
    form = {name: values[0] for name, values in parse_qs(body.decode(errors="replace")).items()}
    grant = form.get("grant_type", "")
    if grant == JWT_BEARER:
        if form.get("assertion", "").count(".") != 2:
            raise _oauth_error("invalid_grant", "Invalid JWT: the assertion is not a JWT.")
    elif grant == "refresh_token":
        if not form.get("refresh_token"):
            raise _oauth_error("invalid_request", "Missing required parameter: refresh_token")
    else:
        raise _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant[:60]}")
    issued = request.app[STATE].tally("oauth2-token")
    token = {"access_token": f"mock-token-{issued}", "expires_in": TOKEN_SECONDS}
    return web.json_response({**token, "token_type": "Bearer"})


def mock_service_account(token_uri: str, project_id: str = "mock-project") -> dict[str, str]:
    """A service-account key file's JSON, as the Cloud console downloads it, with a new RSA
    key and `token_uri` (the mock's `TOKEN_PATH`, e.g. `http://127.0.0.1:18001/mock/oauth2/token`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "0" * 40,
        "private_key": pem,
        "client_email": f"mock@{project_id}.iam.gserviceaccount.com",
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


_MODELS: Final = "/projects/{project}/locations/{location}/publishers/{publisher}/models/{call}"
ROUTES: Final[tuple[tuple[str, str, Any], ...]] = (
    ("POST", "/v1" + _MODELS, call),
    ("POST", "/v1beta1" + _MODELS, call),
    ("POST", TOKEN_PATH, token),
)
