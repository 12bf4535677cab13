"""A fake Amazon Bedrock Runtime (Converse API) on loopback, `FakeBedrock`.

Routes: `POST /model/{modelId}/converse` and `/model/{modelId}/converse-stream`, the model id
percent-decoded from the raw path (`anthropic.claude-3-5-sonnet-20240620-v1%3A0`; an ARN's
`/` arrives as `%2F`).

Every request must carry a valid SigV4 signature, verified independently of the proxy's
signer: botocore's `SigV4Auth` recomputes it from the request as received (method, raw path,
the headers named in SignedHeaders, the body, the request's own X-Amz-Date) for the fake's
access key, secret, region and the service `bedrock`. The credential scope, X-Amz-Date within
5 minutes and, when the fake has a session token, X-Amz-Security-Token are checked too. A
refusal is a 403 in AWS's shape (`x-amzn-ErrorType` header, `{"message": ...}` body), and
its reason is kept in `refusals`.

Bodies are checked as Bedrock checks them (400 ValidationException): messages non-empty,
starting with user and alternating, content blocks with exactly one known member, toolUse and
toolResult only with a toolConfig, each toolResult answering a toolUse of the turn before (and
every toolUse answered), inferenceConfig's known keys, the id and name patterns.

Answers: "You said: <last user text>" (stopReason end_turn); a toolUse of the chosen or first
tool, its input built from the schema's required properties, when a toolConfig is given and the
last turn is user text (stopReason tool_use); a reasoningContent block first when
additionalModelRequestFields has `thinking`; usage with cacheWriteInputTokens the first time a
prefix ending at a cachePoint is seen and cacheReadInputTokens afterwards (inputTokens counts
the rest, as Bedrock does). converse-stream answers `application/vnd.amazon.eventstream`
frames encoded here (prelude, headers, JSON payload with Bedrock's `p` padding, CRC32s) in
Bedrock's order: messageStart, contentBlockStart (toolUse only), contentBlockDelta...,
contentBlockStop, messageStop, metadata. A token is a whitespace-separated word.

Every request is recorded (`requests`: raw path, decoded model id, operation, headers, JSON,
Host header); `wait_for_requests(n)` waits on a condition. Knobs, each consumed by the next
requests: `fail_next(n, error)` (any Bedrock Runtime error at its real status: ThrottlingException
and ModelNotReadyException 429, ServiceUnavailableException 503...), `throttle_next(n)`,
`refuse_next(n, stop)` (an answer that is a guardrail's or a content filter's refusal),
`stream_exception_next(n, kind)` (an exception frame after the first delta),
`corrupt_next(n)` (a frame whose CRC does not match, after the first delta) and `hold()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Self
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.compat import HTTPHeaders  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from tests.helpers import serve
from tests.helpers.gemini_upstream import example, split, words
from tests.helpers.refusals import BEDROCK_REFUSALS

ACCESS_KEY: Final = "AKIAFAKEBEDROCK00001"
SECRET_KEY: Final = "fake/Bedrock+Secret/Key0000000000000000"
REGION: Final = "us-east-1"
SERVICE: Final = "bedrock"
# Bedrock Runtime's errors and their statuses (botocore's service model for bedrock-runtime).
ERRORS: Final = {
    "AccessDeniedException": 403,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
}
MESSAGES: Final = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelNotReadyException": "Model is not ready to serve inference requests. The AWS SDK "
    "will automatically retry the operation up to 5 times.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "InternalServerException": "The server encountered an internal error while processing "
    "the request.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request "
    "again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
}
STREAM_EXCEPTIONS: Final = (
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
)
SKEW_SECS: Final = 300
_BLOCKS: Final = {
    "text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent",
    "cachePoint", "reasoningContent", "citationsContent", "searchResult",
}  # fmt: skip
_INFERENCE: Final = {"maxTokens", "temperature", "topP", "stopSequences"}
_ID: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_AUTH: Final = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_CORAL: Final = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


@dataclass
class Received:
    method: str
    path: str  # raw, as sent (percent-encoded)
    model_id: str  # decoded
    operation: str  # "converse" or "converse-stream"
    headers: dict[str, str]
    json: Any  # None: not JSON
    raw: bytes
    host: str


class AwsError(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status or ERRORS.get(kind, 403)

    def response(self) -> web.Response:
        return aws_error(self.kind, self.message, self.status)


def aws_error(kind: str, message: str, status: int | None = None) -> web.Response:
    """AWS's restJson error: the type in `x-amzn-ErrorType`, `{"message"}` in the body."""
    return web.json_response(
        {"message": message},
        status=status or ERRORS[kind],
        headers={"x-amzn-ErrorType": kind + _CORAL, "x-amzn-RequestId": "fake-request-id"},
    )


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One `application/vnd.amazon.eventstream` message: prelude (total length, headers length,
    prelude CRC32), string headers (type 7), payload, message CRC32."""
    encoded = b"".join(
        struct.pack(">B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value))
        + value.encode()
        for name, value in headers.items()
    )  # fmt: skip
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def corrupted(message: bytes) -> bytes:
    """`message` with its last payload byte flipped after the CRC was computed."""
    return message[:-5] + bytes([message[-5] ^ 0xFF]) + message[-4:]


def event(name: str, data: dict[str, Any]) -> bytes:
    """An event frame; its payload padded with a `p` field as Bedrock pads them."""
    padding = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[: 8 + len(name)]
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps({**data, "p": padding}))


def exception_frame(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    body: dict[str, Any] = {"message": message}
    if kind == "modelStreamErrorException":
        body |= {"originalStatusCode": 500, "originalMessage": "model failure"}
    return frame(headers, orjson.dumps(body))


class _PinnedSigV4(SigV4Auth):  # type: ignore[misc]
    """botocore's signer, signing exactly the headers the client listed in SignedHeaders (its
    own choice would be every header it got)."""

    def __init__(self, credentials: Credentials, region: str, signed: list[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed:
            headers[name] = request.headers.get(name, "")
        return headers


def _check(condition: bool, kind: str, message: str) -> None:
    if not condition:
        raise AwsError(kind, message)


def _validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def check_body(body: Any) -> dict[str, Any]:
    """A Converse request as Bedrock checks it; raises AwsError (ValidationException)."""
    if not isinstance(body, dict):
        raise _validation("Malformed input request, please reformat your input and try again.")
    messages = body.get("messages")
    if messages is None:
        raise _validation(
            "1 validation error detected: Value at 'messages' failed to satisfy constraint: "
            "Member must not be null"
        )
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _validation("Malformed input request, please reformat your input and try again.")
    if not messages or messages[0].get("role") != "user":
        raise _validation(
            "A conversation must start with a user message. Try again with a conversation "
            "that starts with a user message."
        )
    inference = body.get("inferenceConfig", {})
    if not isinstance(inference, dict):
        raise _validation("Malformed input request, please reformat your input and try again.")
    for key in inference:
        if key not in _INFERENCE:
            raise _validation(
                f"Malformed input request: extraneous key [{key}] is not permitted in "
                "inferenceConfig, please reformat your input and try again."
            )
    tools = body.get("toolConfig")
    if tools is not None:
        _tool_config(tools)
    for i, block in enumerate(body.get("system", [])):
        _block(block, f"system.{i}", ("text", "guardContent", "cachePoint"))
    previous_uses: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _validation(
                f"1 validation error detected: Value '{role}' at 'messages.{i + 1}.member.role' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                "[user, assistant]"
            )
        if i and role == messages[i - 1]["role"]:
            raise _validation(
                "A conversation must alternate between user and assistant roles. Make sure "
                "the conversation alternates between user and assistant roles and try again."
            )
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise _validation(
                f"The content field in the Message object at messages.{i} is empty. Add a "
                "ContentBlock object to the content field and try again."
            )
        for j, block in enumerate(content):
            _block(block, f"messages.{i}.content.{j}", _BLOCKS)
        uses = [b["toolUse"] for b in content if "toolUse" in b]
        results = [b["toolResult"] for b in content if "toolResult" in b]
        if (uses or results) and tools is None:
            raise _validation(
                "The toolConfig field must be defined when using toolUse and toolResult "
                "content blocks."
            )
        if (uses and role != "assistant") or (results and role != "user"):
            raise _validation(
                f"messages.{i}.content: toolUse blocks belong to assistant turns and "
                "toolResult blocks to user turns."
            )
        for use in uses:
            _check(
                bool(_ID.fullmatch(str(use.get("toolUseId", ""))))
                and isinstance(use.get("name"), str)
                and "input" in use,
                "ValidationException",
                f"messages.{i}.content: a toolUse needs a toolUseId matching "
                "[a-zA-Z0-9_-]+, a name and an input.",
            )
        answered = [r.get("toolUseId") for r in results]
        if role == "user" and previous_uses:
            missing = [u for u in previous_uses if u not in answered]
            if missing:
                raise _validation(
                    f"Expected toolResult blocks at messages.{i}.content for the following "
                    f"Ids: {', '.join(missing)}"
                )
        extra = [r for r in answered if r not in previous_uses]
        if extra:
            raise _validation(
                f"The toolResult block at messages.{i}.content has toolUseId {extra[0]}, which "
                "matches no toolUse block of the previous turn."
                if previous_uses
                else f"The number of toolResult blocks at messages.{i}.content exceeds the "
                "number of toolUse blocks of previous turn."
            )
        previous_uses = [str(u.get("toolUseId")) for u in uses]
    if messages[-1]["role"] == "assistant" and previous_uses:
        raise _validation(
            "The last message is an assistant turn with toolUse blocks: their toolResult "
            "blocks are missing."
        )
    return body


def _block(block: Any, at: str, allowed: tuple[str, ...] | set[str]) -> None:
    if not isinstance(block, dict) or len(block) != 1:
        raise _validation(
            f"1 validation error detected: Value at '{at}' failed to satisfy constraint: "
            "Member must have exactly one member set"
        )
    (name,) = block
    if name not in allowed:
        raise _validation(f"1 validation error detected: Unknown member '{name}' at '{at}'")
    if name == "text" and not (isinstance(block["text"], str) and block["text"].strip()):
        raise _validation(
            f"The text field in the ContentBlock object at {at} is blank. Add text to the "
            "text field, and try again."
        )


def _tool_config(config: Any) -> None:
    tools = config.get("tools") if isinstance(config, dict) else None
    if not tools:
        raise _validation(
            "1 validation error detected: Value at 'toolConfig.tools' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    for i, tool in enumerate(tools):
        _block(tool, f"toolConfig.tools.{i}", ("toolSpec", "cachePoint", "systemTool"))
        spec = tool.get("toolSpec")
        if spec is None:
            continue
        _check(
            bool(_ID.fullmatch(str(spec.get("name", "")))),
            "ValidationException",
            f"1 validation error detected: Value at 'toolConfig.tools.{i}.member.toolSpec.name' "
            "failed to satisfy constraint: Member must satisfy regular expression pattern: "
            "[a-zA-Z0-9_-]+",
        )
        schema = spec.get("inputSchema")
        _check(
            isinstance(schema, dict) and list(schema) == ["json"],
            "ValidationException",
            f"toolConfig.tools.{i}.toolSpec.inputSchema: exactly one member, json.",
        )
    choice = config.get("toolChoice")
    if choice is not None:
        _block(choice, "toolConfig.toolChoice", ("auto", "any", "tool"))


@dataclass
class Answer:
    reasoning: str = ""
    text: str = ""
    tool: dict[str, Any] | None = None  # {"toolUseId", "name", "input"}
    stop: str = "end_turn"


def _texts(content: list[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in content if isinstance(b.get("text"), str)]


def plan(body: dict[str, Any], uses: int) -> Answer:
    last = body["messages"][-1]
    said = " ".join(_texts(last["content"])) if last["role"] == "user" else ""
    answer = Answer()
    if isinstance(body.get("additionalModelRequestFields", {}).get("thinking"), dict):
        answer.reasoning = f"Thinking about: {said[:60]}".strip()
    config = body.get("toolConfig")
    if config is not None and said:
        specs = [t["toolSpec"] for t in config["tools"] if "toolSpec" in t]
        choice = config.get("toolChoice", {})
        chosen = choice.get("tool", {}).get("name")
        spec = next((s for s in specs if s["name"] == chosen), specs[0] if specs else None)
        if spec is not None:
            answer.tool = {
                "toolUseId": f"tooluse_fake{uses + 1:04d}",
                "name": spec["name"],
                "input": example(spec["inputSchema"]["json"]),
            }
            answer.stop = "tool_use"
            return answer
    if said:
        answer.text = f"You said: {said[:80]}"
    elif last["role"] == "assistant":  # a prefilled answer, continued
        answer.text = "(continued)"
    else:
        results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
        content = results[0].get("content", []) if results else []
        shown = (
            orjson.dumps(content[0].get("json")).decode()
            if content and "json" in content[0]
            else " ".join(_texts(content))
        )
        answer.text = f"Result received: {shown[:80]}"
    limit = body.get("inferenceConfig", {}).get("maxTokens")
    if isinstance(limit, int) and words(answer.text) > limit:
        answer.text = " ".join(answer.text.split()[:limit])
        answer.stop = "max_tokens"
    return answer


def _tokens(blocks: list[dict[str, Any]]) -> int:
    return sum(words(b["text"]) if "text" in b else 0 if "cachePoint" in b else 8 for b in blocks)


@dataclass
class Knobs:
    failures: deque[tuple[str, str]] = field(default_factory=deque)  # (error type, message)
    refusals: deque[str] = field(default_factory=deque)  # stop reasons
    stream_exceptions: deque[str] = field(default_factory=deque)
    corruptions: int = 0
    gate: asyncio.Event | None = None


class FakeBedrock:
    """Bedrock Runtime's Converse API (see the module docstring). `session_token`: when set,
    requests must carry it; `models`: the model ids (or ARNs) it serves, None for any;
    `clock`: the fake's time for the X-Amz-Date check; `chunks`: text
    deltas per stream."""

    def __init__(
        self,
        *,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        region: str = REGION,
        session_token: str | None = None,
        models: frozenset[str] | None = None,
        chunks: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = Credentials(access_key, secret_key, session_token)
        self.models = models
        self.region = region
        self.chunks = chunks
        self.clock = clock
        self.requests: list[Received] = []
        self.refusals: list[str] = []  # why signatures were refused (no secret in them)
        self.knobs = Knobs()
        self.url = ""
        self._uses = 0
        self._cached: set[bytes] = set()
        self._arrived = asyncio.Condition()
        self._stack = AsyncExitStack()

    def __repr__(self) -> str:  # never the secret nor the token
        return f"FakeBedrock(url={self.url!r}, region={self.region!r})"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/model/{tail:.+}", self._handle)
        self.url = await self._stack.enter_async_context(serve(app))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.knobs.gate is not None:
            self.knobs.gate.set()
        await self._stack.aclose()

    # Knobs.

    def fail_next(self, n: int = 1, error: str = "ThrottlingException", message: str = "") -> None:
        """The next `n` requests are refused with `error` (a key of ERRORS, at its status)."""
        assert error in ERRORS, error
        self.knobs.failures.extend([(error, message or MESSAGES.get(error, error))] * n)

    def throttle_next(self, n: int = 1) -> None:
        self.fail_next(n, "ThrottlingException")

    def refuse_next(self, n: int = 1, stop: str = "guardrail_intervened") -> None:
        """The next `n` answers are refusals: what a guardrail or a content filter says instead
        of the model (BEDROCK_REFUSALS[stop]), and `stop` ("guardrail_intervened" or
        "content_filtered") as stopReason."""
        assert stop in BEDROCK_REFUSALS, stop
        self.knobs.refusals.extend([stop] * n)

    def stream_exception_next(self, n: int = 1, kind: str = "throttlingException") -> None:
        """The next `n` streams send one delta, then an exception frame of `kind` (one of
        STREAM_EXCEPTIONS), then end."""
        assert kind in STREAM_EXCEPTIONS, kind
        self.knobs.stream_exceptions.extend([kind] * n)

    def corrupt_next(self, n: int = 1) -> None:
        """The next `n` streams send one delta, then a frame whose message CRC does not match,
        then end."""
        self.knobs.corruptions += n

    def hold(self) -> asyncio.Event:
        """Requests wait before their first byte until the returned event is set."""
        self.knobs.gate = asyncio.Event()
        return self.knobs.gate

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Received]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests

    # Requests.

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        path = request.raw_path.partition("?")[0]
        match = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream)", path)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        received = Received(
            request.method,
            path,
            unquote(match.group(1)) if match else "",
            match.group(2) if match else "",
            dict(request.headers),
            data,
            raw,
            request.headers.get("Host", ""),
        )
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        try:
            self._verify(request, raw)
            if match is None:
                raise AwsError("UnknownOperationException", "Unknown operation", 404)
            if self.models is not None and received.model_id not in self.models:
                raise _validation("The provided model identifier is invalid.")
            body = check_body(data)
            if self.knobs.gate is not None:
                await self.knobs.gate.wait()
            if self.knobs.failures:
                raise AwsError(*self.knobs.failures.popleft())
        except AwsError as exc:
            return exc.response()
        answer = plan(body, self._uses)
        if answer.tool is not None:
            self._uses += 1
        if self.knobs.refusals:
            stop = self.knobs.refusals.popleft()
            answer = Answer(text=BEDROCK_REFUSALS[stop], stop=stop)
        if received.operation == "converse":
            return web.json_response(
                self._converse(body, answer), headers={"x-amzn-RequestId": "fake-request-id"}
            )
        return await self._stream(request, body, answer)

    def _verify(self, request: web.Request, body: bytes) -> None:
        """SigV4, as AWS verifies it; AwsError (403) on any mismatch."""
        try:
            self._verify_signature(request, body)
        except AwsError as exc:
            self.refusals.append(f"{exc.kind}: {exc.message}")
            raise

    def _verify_signature(self, request: web.Request, body: bytes) -> None:
        authorization = request.headers.get("Authorization", "")
        parsed = _AUTH.fullmatch(authorization.strip())
        _check(
            bool(authorization),
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
        if parsed is None:
            raise AwsError(
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
                "parameters.",
            )
        key_id, date, region, service, terminator = (parsed["credential"].split("/") + [""] * 5)[:5]
        _check(
            key_id == self._credentials.access_key,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
        amz_date = request.headers.get("X-Amz-Date", "")
        _check(
            bool(re.fullmatch(r"\d{8}T\d{6}Z", amz_date)),
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
        _check(
            date == amz_date[:8],
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
            f"HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
        _check(
            region == self.region,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{region}'.",
        )
        _check(
            service == SERVICE and terminator == "aws4_request",
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SERVICE}'.",
        )
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        now = self.clock()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        _check(
            signed_at >= now - SKEW_SECS,
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {stamp} - 5 min.",
        )
        _check(
            signed_at <= now + SKEW_SECS,
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {stamp} + 5 min.",
        )
        signed = parsed["signed"].split(";")
        _check(
            "host" in signed,
            "InvalidSignatureException",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
        token = self._credentials.token
        if token is not None:
            _check(
                hmac.compare_digest(request.headers.get("X-Amz-Security-Token", ""), token),
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        declared = request.headers.get("X-Amz-Content-SHA256")
        _check(
            declared is None or declared == hashlib.sha256(body).hexdigest(),
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
        headers = {name: ",".join(request.headers.getall(name, [])) for name in signed}
        if declared is not None:
            headers["X-Amz-Content-SHA256"] = declared
        aws = AWSRequest(
            method=request.method,
            url=f"http://{request.headers.get('Host', '')}{request.raw_path}",
            headers=headers,
            data=body,
        )
        aws.context["timestamp"] = amz_date
        signer = _PinnedSigV4(self._credentials, self.region, signed)
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        _check(
            hmac.compare_digest(expected, parsed["signature"]),
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
        )

    # Answers.

    def _usage(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        """inputTokens excludes what a cachePoint wrote or read (Bedrock's meaning)."""
        blocks = list(body.get("system", [])) + [b for m in body["messages"] for b in m["content"]]
        tools = sum(1 for t in body.get("toolConfig", {}).get("tools", []) if "toolSpec" in t)
        total = _tokens(blocks) + 8 * tools
        cut = max((i for i, b in enumerate(blocks) if "cachePoint" in b), default=-1)
        cache: dict[str, int] = {}
        cached = _tokens(blocks[: cut + 1]) if cut >= 0 else 0
        if cached:
            prefix = orjson.dumps(blocks[: cut + 1])
            if prefix in self._cached:
                cache["cacheReadInputTokens"] = cached
            else:
                self._cached.add(prefix)
                cache["cacheWriteInputTokens"] = cached
        output = words(answer.reasoning) + words(answer.text)
        if answer.tool is not None:
            output += words(orjson.dumps(answer.tool["input"]).decode()) + 1
        return {
            "inputTokens": total - cached,
            "outputTokens": output,
            "totalTokens": total + output,
            **cache,
        }

    def _converse(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if answer.reasoning:
            content.append(
                {
                    "reasoningContent": {
                        "reasoningText": {"text": answer.reasoning, "signature": "c2ln"}
                    }
                }
            )
        if answer.text:
            content.append({"text": answer.text})
        if answer.tool is not None:
            content.append({"toolUse": answer.tool})
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": answer.stop,
            "usage": self._usage(body, answer),
            "metrics": {"latencyMs": 100},
        }

    def _events(self, body: dict[str, Any], answer: Answer) -> list[bytes]:
        events = [event("messageStart", {"role": "assistant"})]
        index = 0
        if answer.reasoning:
            for piece in split(answer.reasoning, self.chunks):
                delta = {"reasoningContent": {"text": piece}}
                events.append(event("contentBlockDelta", {"delta": delta, "contentBlockIndex": 0}))
            signature = {"reasoningContent": {"signature": "c2ln"}}
            events.append(event("contentBlockDelta", {"delta": signature, "contentBlockIndex": 0}))
            events.append(event("contentBlockStop", {"contentBlockIndex": 0}))
            index = 1
        if answer.text:
            for piece in split(answer.text, self.chunks):
                events.append(
                    event(
                        "contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": index}
                    )
                )
            events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        if answer.tool is not None:
            start = {
                "toolUse": {"toolUseId": answer.tool["toolUseId"], "name": answer.tool["name"]}
            }
            events.append(event("contentBlockStart", {"start": start, "contentBlockIndex": index}))
            for piece in split(orjson.dumps(answer.tool["input"]).decode(), self.chunks):
                delta = {"toolUse": {"input": piece}}
                events.append(
                    event("contentBlockDelta", {"delta": delta, "contentBlockIndex": index})
                )
            events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        events.append(event("messageStop", {"stopReason": answer.stop}))
        metadata = {"usage": self._usage(body, answer), "metrics": {"latencyMs": 100}}
        events.append(event("metadata", metadata))
        return events

    async def _stream(
        self, request: web.Request, body: dict[str, Any], answer: Answer
    ) -> web.StreamResponse:
        events = self._events(body, answer)
        if self.knobs.stream_exceptions:
            kind = self.knobs.stream_exceptions.popleft()
            message = MESSAGES.get(kind[0].upper() + kind[1:], "The stream failed.")
            events = [*events[:2], exception_frame(kind, message)]
        elif self.knobs.corruptions:
            self.knobs.corruptions -= 1
            events = [*events[:2], corrupted(events[2])]
        out = web.StreamResponse(
            headers={
                "Content-Type": "application/vnd.amazon.eventstream",
                "x-amzn-RequestId": "fake-request-id",
            }
        )
        await out.prepare(request)
        for chunk in events:
            await out.write(chunk)
        await out.write_eof()
        return out
