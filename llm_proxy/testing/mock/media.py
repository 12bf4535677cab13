"""Images (generate; edit and variation as multipart; the PNG a `url` answer points at) and
audio: speech (`audio_bytes`, streamed in chunks or as SSE events), transcriptions and
translations (whose text reports the upload's size and SHA-256)."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from typing import Any, Final

import orjson
from aiohttp import web

from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.forms import read_form
from llm_proxy.testing.mock.state import OPTIONS
from llm_proxy.testing.mock.wire import CREATED, json_response, read_json, required, send

# -- Images ---------------------------------------------------------------------------------------


def _png() -> bytes:
    """A valid 1x1 RGBA PNG, built here rather than kept as an opaque blob."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x10\xa3\x7f\xff")  # filter byte, then one RGBA pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG: Final = _png()


def _images(
    request: web.Request, model: str, n: Any, response_format: str | None
) -> dict[str, Any]:
    """An images answer: `url` items (pointing at this mock's `/mock/image.png`) or
    `b64_json` ones, by `response_format`, defaulting as OpenAI does (DALL-E: url; GPT image
    models: b64_json, with usage)."""
    try:
        count = int(n or 1)
    except ValueError:
        count = 0
    if not 1 <= count <= 10:
        raise MockError(400, f"Invalid 'n': {n!r}; expected 1 to 10.", param="n")
    dalle = model.startswith("dall-e")
    fmt = response_format or ("url" if dalle else "b64_json")
    if fmt == "url":
        item: dict[str, Any] = {"url": str(request.url.with_path("/mock/image.png"))}
    elif fmt == "b64_json":
        item = {"b64_json": base64.b64encode(PNG).decode()}
    else:
        raise MockError(400, f"Invalid 'response_format': {fmt!r}.", param="response_format")
    answer: dict[str, Any] = {"created": CREATED, "data": [item] * count}
    if not dalle:
        answer["usage"] = {
            "input_tokens": 10,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": 10},
            "output_tokens": 100 * count,
            "total_tokens": 10 + 100 * count,
        }
    return answer


async def image_generate(request: web.Request) -> web.Response:
    data = await read_json(request)
    required(data, "prompt")
    model = data.get("model") or "dall-e-2"
    return json_response(_images(request, model, data.get("n"), data.get("response_format")))


async def image_edit(request: web.Request) -> web.Response:
    form = await read_form(request)
    form.upload("image")
    form.field("prompt")
    model = form.fields.get("model", "dall-e-2")
    return json_response(
        _images(request, model, form.fields.get("n"), form.fields.get("response_format"))
    )


async def image_variation(request: web.Request) -> web.Response:
    form = await read_form(request)
    form.upload("image")
    model = form.fields.get("model", "dall-e-2")
    return json_response(
        _images(request, model, form.fields.get("n"), form.fields.get("response_format"))
    )


async def image_file(request: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")


# -- Audio ----------------------------------------------------------------------------------------

_AUDIO_TYPES: Final = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_AUDIO_CHUNK: Final = 16_384
_AUDIO_PERIOD: Final = 251  # prime: no chunk boundary lines up with the pattern
_AUDIO_BLOCK: Final = bytes(i % _AUDIO_PERIOD for i in range(_AUDIO_PERIOD + _AUDIO_CHUNK))


def audio_chunks(size: int) -> Iterator[bytes]:
    """A speech answer of `size` bytes, in the chunks the mock writes it in: the byte cycle
    0, 1, ..., 250, 0, 1, ..."""
    for start in range(0, size, _AUDIO_CHUNK):
        offset = start % _AUDIO_PERIOD
        yield _AUDIO_BLOCK[offset : offset + min(_AUDIO_CHUNK, size - start)]


def audio_bytes(size: int) -> bytes:
    """The exact body of a speech answer of `size` bytes (tests compare against it)."""
    return b"".join(audio_chunks(size))


async def speech(request: web.Request) -> web.StreamResponse:
    """Audio bytes (`audio_bytes(size)`), streamed in 16 KiB chunks, `mock_delay_ms` apart;
    with `stream_format: sse`, the same bytes as `speech.audio.delta` events."""
    data = await read_json(request)
    for name in ("model", "input", "voice"):
        required(data, name)
    size = int(data.get("mock_bytes", request.app[OPTIONS].speech_bytes))
    delay = float(data.get("mock_delay_ms", 0)) / 1000
    fmt = data.get("response_format") or "mp3"
    if fmt not in _AUDIO_TYPES:
        raise MockError(400, f"Invalid 'response_format': {fmt!r}.", param="response_format")
    if data.get("stream_format") == "sse":
        usage = {"input_tokens": 5, "output_tokens": size // 1000, "total_tokens": 5 + size // 1000}
        events: list[dict[str, Any]] = [
            {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
            for chunk in audio_chunks(size)
        ]
        events.append({"type": "speech.audio.done", "usage": usage})
        pieces = [b"data: " + orjson.dumps(event) + b"\n\n" for event in events]
        return await send(request, "text/event-stream", pieces, delay)
    return await send(request, _AUDIO_TYPES[fmt], audio_chunks(size), delay)


async def _audio_text(request: web.Request, task: str) -> web.Response:
    """A transcription or translation whose text names the upload's filename, size and SHA-256,
    so a test can prove the bytes arrived unchanged; in every `response_format`."""
    form = await read_form(request)
    upload = form.upload("file")
    form.field("model")
    text = f"mock {task} of {upload.filename}: {upload.size} bytes, sha256 {upload.sha256}"
    seconds = round(upload.size / 32_000, 3)  # as if 16 kHz 16-bit mono
    fmt = form.fields.get("response_format", "json")
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if fmt == "srt":
        body = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n"
        return web.Response(text=body, content_type="text/plain")
    if fmt == "vtt":
        body = f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n"
        return web.Response(text=body, content_type="text/vtt")
    if fmt == "verbose_json":
        segment = {
            "id": 0,
            "seek": 0,
            "start": 0.0,
            "end": seconds,
            "text": text,
            "tokens": [1, 2, 3],
            "temperature": 0.0,
            "avg_logprob": -0.1,
            "compression_ratio": 1.0,
            "no_speech_prob": 0.0,
        }
        task_name = "transcribe" if task == "transcription" else "translate"
        verbose = {"task": task_name, "language": "english", "duration": seconds, "text": text}
        return json_response({**verbose, "segments": [segment]})
    if fmt != "json":
        raise MockError(400, f"Invalid 'response_format': {fmt!r}.", param="response_format")
    if task == "translation":
        return json_response({"text": text})
    return json_response({"text": text, "usage": {"type": "duration", "seconds": seconds}})


async def transcriptions(request: web.Request) -> web.Response:
    return await _audio_text(request, "transcription")


async def translations(request: web.Request) -> web.Response:
    return await _audio_text(request, "translation")
