"""OpenAI answers kept by the response cache (`llm_proxy.proxy.cache`), served in the other
form the client may ask for: a whole chat completion (or legacy completion) as the stream of
chunks the API would have sent, and a recorded stream folded back into the whole answer.

A stream is kept without its usage chunk and without the `"usage":null` OpenAI adds to every
chunk when `stream_options.include_usage` is set (`normalize_stream`); the usage is kept beside
it and put back, as the stream's last chunk before `[DONE]`, for a request that asks for it
(`with_usage_chunk`). The id, `created`, model and system fingerprint of the kept answer are
kept: a replay is the same answer.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

DONE: Final = b"data: [DONE]\n\n"
CHAT: Final = "/chat/completions"
COMPLETIONS: Final = "/completions"
# The endpoints whose answers can be served as either form.
CONVERTIBLE: Final = frozenset({CHAT, COMPLETIONS})
_EXTRA_FIELDS: Final = ("system_fingerprint", "service_tier")


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _events(stream: bytes) -> list[dict[str, Any]]:
    """The JSON `data:` events of an SSE stream (comments, `[DONE]` and other lines left)."""
    found = []
    for line in stream.splitlines():
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            continue
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def normalize_stream(stream: bytes) -> tuple[bytes, bytes | None] | None:
    """An OpenAI stream as the cache keeps it: its events without the usage chunk and the
    added `"usage":null`s, and the usage object (raw JSON) the usage chunk carried. None
    when the stream is not one to keep: no `[DONE]` at its end, or an error event in it."""
    events = stream.replace(b"\r\n", b"\n").split(b"\n\n")
    kept: list[bytes] = []
    usage: bytes | None = None
    done = False
    for event in events:
        if not event.strip():
            continue
        text = event.strip()
        if text in (b"data: [DONE]", b"data:[DONE]"):
            done = True
            continue
        if done:
            return None  # something after [DONE]
        head = text[:64]
        if head.startswith((b"event: error", b"event:error")) or b'{"error"' in head:
            return None
        if b'"usage":{' in text and b'"choices":[]' in text:
            data = _events(text)
            if data and isinstance(data[0].get("usage"), dict):
                usage = orjson.dumps(data[0]["usage"])
            continue
        kept.append(text.replace(b',"usage":null', b""))
    if not done or not kept:
        return None
    return b"\n\n".join(kept) + b"\n\n" + DONE, usage


def with_usage_chunk(stream: bytes, usage: bytes, object_name: str) -> bytes:
    """A kept stream (`normalize_stream`) with its usage chunk put back before `[DONE]`,
    named after its first event (id, created, model)."""
    first = next(iter(_events(stream[:65536])), {})
    chunk: dict[str, Any] = {
        "id": first.get("id", ""),
        "object": object_name,
        "created": first.get("created", 0),
        "model": first.get("model", ""),
    }
    for name in _EXTRA_FIELDS:
        if name in first:
            chunk[name] = first[name]
    chunk["choices"] = []
    body = b"data: " + orjson.dumps(chunk)[:-1] + b',"usage":' + usage + b"}\n\n"
    return stream[: -len(DONE)] + body + DONE


def stream_object(endpoint: str) -> str:
    """The `object` of an endpoint's stream chunks."""
    return "chat.completion.chunk" if endpoint == CHAT else "text_completion"


def whole_to_stream(endpoint: str, body: bytes) -> tuple[bytes, bytes | None] | None:
    """A whole chat completion or completion as its stream (kept form: no usage chunk), and
    its usage object; None when the body is not such an answer."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
        return None
    base: dict[str, Any] = {
        "id": answer.get("id", ""),
        "object": stream_object(endpoint),
        "created": answer.get("created", 0),
        "model": answer.get("model", ""),
    }
    for name in _EXTRA_FIELDS:
        if name in answer:
            base[name] = answer[name]
    out: list[bytes] = []
    for i, choice in enumerate(answer["choices"]):
        if not isinstance(choice, dict):
            return None
        index = choice.get("index", i)
        finish = choice.get("finish_reason")
        if endpoint == CHAT:
            first = {"index": index, "delta": _delta(choice.get("message"))}
            if "logprobs" in choice:
                first["logprobs"] = choice["logprobs"]
            first["finish_reason"] = None
            last: dict[str, Any] = {"index": index, "delta": {}, "finish_reason": finish}
        else:
            first = {
                "text": choice.get("text", ""),
                "index": index,
                "logprobs": choice.get("logprobs"),
                "finish_reason": None,
            }
            last = {"text": "", "index": index, "logprobs": None, "finish_reason": finish}
        out.append(_event({**base, "choices": [first]}))
        out.append(_event({**base, "choices": [last]}))
    usage = answer.get("usage")
    return b"".join(out) + DONE, orjson.dumps(usage) if isinstance(usage, dict) else None


def _delta(message: Any) -> dict[str, Any]:
    """A chat message as the one delta that says all of it."""
    if not isinstance(message, dict):
        return {"role": "assistant", "content": ""}
    delta: dict[str, Any] = {"role": message.get("role") or "assistant"}
    delta["content"] = message.get("content")
    for name in ("refusal", "reasoning_content", "function_call", "audio"):
        if message.get(name) is not None:
            delta[name] = message[name]
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        delta["tool_calls"] = [
            {"index": i, **call} if isinstance(call, dict) else call for i, call in enumerate(calls)
        ]
    return delta


def stream_to_whole(endpoint: str, stream: bytes, usage: bytes | None) -> bytes | None:
    """A kept stream folded into the whole answer the same request without `stream` gets;
    None when it has no chunk."""
    events = _events(stream)
    if not events:
        return None
    first = events[0]
    answer: dict[str, Any] = {
        "id": first.get("id", ""),
        "object": "chat.completion" if endpoint == CHAT else "text_completion",
        "created": first.get("created", 0),
        "model": first.get("model", ""),
    }
    choices: dict[int, dict[str, Any]] = {}
    for event in events:
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            folded = choices.setdefault(index, {"index": index, "parts": [], "calls": {}})
            if endpoint == CHAT:
                _fold_delta(folded, choice.get("delta"))
            elif isinstance(choice.get("text"), str):
                folded["parts"].append(choice["text"])
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                _fold_logprobs(folded, logprobs)
            if choice.get("finish_reason") is not None:
                folded["finish_reason"] = choice["finish_reason"]
    answer["choices"] = [_choice(endpoint, choices[i]) for i in sorted(choices)]
    if usage is not None:
        answer["usage"] = orjson.loads(usage)
    for name in _EXTRA_FIELDS:
        if name in first:
            answer[name] = first[name]
    return orjson.dumps(answer)


def _fold_delta(folded: dict[str, Any], delta: Any) -> None:
    if not isinstance(delta, dict):
        return
    if delta.get("role"):
        folded["role"] = delta["role"]
    if isinstance(delta.get("content"), str):
        folded["parts"].append(delta["content"])
    for name in ("refusal", "reasoning_content"):
        if isinstance(delta.get(name), str):
            folded.setdefault(name, []).append(delta[name])
    for call in delta.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        into = folded["calls"].setdefault(call.get("index", 0), {"arguments": []})
        for name in ("id", "type"):
            if call.get(name) is not None:
                into[name] = call[name]
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                into["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                into["arguments"].append(function["arguments"])


def _fold_logprobs(folded: dict[str, Any], logprobs: dict[str, Any]) -> None:
    into = folded.setdefault("logprobs", {})
    for name, value in logprobs.items():
        if isinstance(value, list):
            into.setdefault(name, []).extend(value)
        else:
            into[name] = value


def _choice(endpoint: str, folded: dict[str, Any]) -> dict[str, Any]:
    text = "".join(folded["parts"])
    finish = folded.get("finish_reason")
    logprobs = folded.get("logprobs")
    if endpoint != CHAT:
        index = folded["index"]
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}
    calls = folded["calls"]
    message: dict[str, Any] = {"role": folded.get("role", "assistant")}
    message["content"] = text if text or not calls else None
    for name in ("refusal", "reasoning_content"):
        if name in folded:
            message[name] = "".join(folded[name])
    if calls:
        message["tool_calls"] = [
            {
                "id": call.get("id", ""),
                "type": call.get("type", "function"),
                "function": {"name": call.get("name", ""), "arguments": "".join(call["arguments"])},
            }
            for _, call in sorted(calls.items())
        ]
    return {
        "index": folded["index"],
        "message": message,
        "logprobs": logprobs,
        "finish_reason": finish,
    }
