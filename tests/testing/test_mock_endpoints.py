"""The mock upstream answers the rest of the OpenAI API (Responses state, images, audio,
moderations, files, batches, vector stores, rerank) the way the official SDK reads it."""

from __future__ import annotations

import base64
import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from llm_proxy.testing.mock import (
    FLAG,
    PNG,
    STATE,
    MockOptions,
    audio_bytes,
    create_mock_app,
)
from tests.helpers import sdk, serve
from tests.testing.conftest import MockFactory

# -- Responses ------------------------------------------------------------------------------------


async def test_streamed_response_is_stored_and_retrievable(start_mock: MockFactory) -> None:
    mock = await start_mock("a")
    async with sdk(mock.url, "sk-test") as client:
        stream = await client.responses.create(
            model="gpt-4.1", input="count", stream=True, extra_body={"mock_chunks": 3}
        )
        events = [event async for event in stream]
        async with client.responses.stream(
            model="gpt-4.1", input="again", extra_body={"mock_chunks": 2}
        ) as helper:
            final = await helper.get_final_response()
        first = events[-1]
        assert first.type == "response.completed"
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert (first.response.id, final.id) == ("resp_a", "resp_a_2")
        assert final.output_text == "tok0 tok1 " and final.status == "completed"
        assert final.usage is not None and final.usage.total_tokens == 6

        again = await client.responses.retrieve("resp_a")
        assert again.output_text == "tok0 tok1 tok2 "
        assert again.model_dump() == first.response.model_dump()
        items = await client.responses.input_items.list("resp_a_2")
        assert [item.type for item in items.data] == ["message"]
        assert items.data[0].model_dump(exclude_none=True)["content"] == [
            {"type": "input_text", "text": "again"}
        ]


async def test_unknown_or_deleted_response_is_a_404(start_mock: MockFactory) -> None:
    mock = await start_mock()
    async with sdk(mock.url, "sk-test") as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.responses.retrieve("resp_nobody")
        assert missing.value.status_code == 404
        assert missing.value.body == {
            "message": "No response found with id 'resp_nobody'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        made = await client.responses.create(model="m", input="x")
        await client.responses.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.delete(made.id)
        kept = await client.responses.create(model="m", input="x")
        with pytest.raises(openai.BadRequestError):
            await client.responses.cancel(kept.id)  # only background responses can be


async def test_previous_response_id_only_on_the_instance_that_stored_it(
    start_mock: MockFactory,
) -> None:
    """Response affinity: a follow-up works on the instance that made the first response and
    fails, as OpenAI answers an unknown `previous_response_id`, on any other."""
    first_mock, second_mock = await start_mock("one"), await start_mock("two")
    async with (
        sdk(first_mock.url, "sk-test") as first,
        sdk(second_mock.url, "sk-test") as second,
    ):
        opening = await first.responses.create(model="m", input="hello")
        follow_up = await first.responses.create(
            model="m", input="and then?", previous_response_id=opening.id
        )
        assert follow_up.previous_response_id == opening.id
        assert follow_up.id.startswith("resp_one")
        with pytest.raises(openai.BadRequestError) as elsewhere:
            await second.responses.create(
                model="m", input="and then?", previous_response_id=opening.id
            )
        assert elsewhere.value.code == "previous_response_not_found"
        assert elsewhere.value.param == "previous_response_id"
        # Streamed follow-ups are refused before the stream starts.
        with pytest.raises(openai.BadRequestError):
            await second.responses.create(
                model="m", input="x", previous_response_id=opening.id, stream=True
            )
        # Nor can a response made with `store: false` be continued.
        unstored = await first.responses.create(model="m", input="x", store=False)
        with pytest.raises(openai.BadRequestError):
            await first.responses.create(model="m", input="x", previous_response_id=unstored.id)


async def test_remembers_a_bounded_number_of_responses(start_mock: MockFactory) -> None:
    mock = await start_mock(max_objects=2)
    async with sdk(mock.url, "sk-test") as client:
        ids = [(await client.responses.create(model="m", input="x")).id for _ in range(3)]
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(ids[0])
        for rid in ids[1:]:
            assert (await client.responses.retrieve(rid)).id == rid


# -- Instances, errors, recording -----------------------------------------------------------------


async def test_every_answer_names_its_instance(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock("blue")
    async with sdk(mock.url, "sk-test") as client:
        raw = await client.chat.completions.with_raw_response.create(model="m", messages=[])
        assert raw.headers["x-mock-instance"] == "blue"
        assert raw.parse().id == "chatcmpl-blue"
    for method, path in (("POST", "/v1/responses"), ("GET", "/v1/files/nope"), ("GET", "/x")):
        body = {"model": "m", "input": "x", "stream": True}
        async with http.request(method, mock.url + path, json=body) as resp:
            assert resp.headers["x-mock-instance"] == "blue", path
            await resp.read()


async def test_unknown_paths_and_methods_get_openais_error_shape(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock()
    for method, path, status in (("POST", "/v1/nothing", 404), ("PUT", "/v1/files", 405)):
        async with http.request(method, mock.url + path) as resp:
            assert resp.status == status
            error = (await resp.json())["error"]
        assert error["message"] == f"Invalid URL ({method} {path})"
        assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/images/generations", {"prompt": "x"}),
        ("/v1/moderations", {"input": "x"}),
        ("/v1/audio/speech", {"model": "tts-1", "input": "x", "voice": "alloy"}),
        ("/v1/batches", {"input_file_id": "f", "endpoint": "/v1/chat/completions"}),
        ("/v1/vector_stores", {"name": "x"}),
        ("/v1/rerank", {"model": "r", "query": "q", "documents": ["d"]}),
    ],
)
async def test_mock_status_forces_an_error_on_json_endpoints(
    start_mock: MockFactory, http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> None:
    mock = await start_mock()
    async with http.post(mock.url + path, json={**body, "mock_status": 429}) as resp:
        assert resp.status == 429
        assert (await resp.json())["error"]["code"] == "mock_429"


async def test_mock_status_as_a_form_field(start_mock: MockFactory) -> None:
    mock = await start_mock()
    async with sdk(mock.url, "sk-test") as client:
        with pytest.raises(openai.InternalServerError):
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", b"abc"), extra_body={"mock_status": 503}
            )


async def test_missing_parameters_are_400s(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock()
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="a.txt")
    async with http.post(mock.url + "/v1/files", data=form) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "purpose"
    async with http.post(mock.url + "/v1/files", json={"purpose": "batch"}) as resp:
        assert resp.status == 400  # a JSON body where a form is expected
    async with http.post(mock.url + "/v1/responses", json={"input": "x"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert (error["param"], error["code"]) == ("model", "missing_required_parameter")
    assert not mock.app[STATE].files.values()  # the refused upload left nothing behind


# -- Images ---------------------------------------------------------------------------------------


async def test_image_generation_b64_and_url(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock()
    async with sdk(mock.url, "sk-test") as client:
        b64 = await client.images.generate(model="gpt-image-1", prompt="a cat", n=2)
        assert b64.data is not None and len(b64.data) == 2
        assert b64.data[0].b64_json is not None
        assert base64.b64decode(b64.data[0].b64_json) == PNG
        assert b64.usage is not None and b64.usage.output_tokens == 200
        url = await client.images.generate(model="dall-e-3", prompt="a cat")
        assert url.data is not None and url.data[0].url is not None
        async with http.get(url.data[0].url) as resp:
            assert resp.content_type == "image/png"
            assert await resp.read() == PNG
        forced = await client.images.generate(
            model="dall-e-2", prompt="a cat", response_format="b64_json"
        )
        assert forced.data is not None and forced.data[0].b64_json is not None


async def test_image_edit_and_variation_are_multipart(start_mock: MockFactory) -> None:
    mock = await start_mock()
    async with sdk(mock.url, "sk-test") as client:
        edit = await client.images.edit(
            model="gpt-image-1",
            image=[("a.png", PNG, "image/png"), ("b.png", PNG * 2, "image/png")],
            mask=("mask.png", b"mask", "image/png"),
            prompt="add a hat",
        )
        assert edit.data is not None and edit.data[0].b64_json is not None
        form = mock.recorded[-1].form
        assert form["fields"]["prompt"] == "add a hat"
        assert [(f["field"], f["filename"], f["bytes"]) for f in form["files"]] == [
            ("image[]", "a.png", len(PNG)),
            ("image[]", "b.png", 2 * len(PNG)),
            ("mask", "mask.png", 4),
        ]
        assert mock.recorded[-1].body == b""
        assert mock.recorded[-1].size > 3 * len(PNG)
        with pytest.deprecated_call():  # by this SDK version; the endpoint still exists
            variation = await client.images.create_variation(
                image=("a.png", PNG, "image/png"), n=3, response_format="url"
            )
        assert variation.data is not None and len(variation.data) == 3
        assert all(d.url and d.url.endswith("/mock/image.png") for d in variation.data)


# -- Audio ----------------------------------------------------------------------------------------


async def test_speech_streams_deterministic_audio(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(speech_bytes=1000)
    async with sdk(mock.url, "sk-test") as client:
        default = await client.audio.speech.create(model="tts-1", voice="alloy", input="hi")
        assert default.content == audio_bytes(1000)
        assert default.response.headers["content-type"] == "audio/mpeg"
        async with client.audio.speech.with_streaming_response.create(
            model="tts-1",
            voice="alloy",
            input="hi",
            response_format="wav",
            extra_body={"mock_bytes": 100_000},
        ) as streamed:
            assert streamed.headers["content-type"] == "audio/wav"
            body = b"".join([chunk async for chunk in streamed.iter_bytes()])
        assert body == audio_bytes(100_000)
    # Sent chunked, in several writes: what a relay must pass on byte for byte.
    body_json = {"model": "tts-1", "voice": "alloy", "input": "hi", "mock_bytes": 100_000}
    async with http.post(mock.url + "/v1/audio/speech", json=body_json) as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in resp.headers
        assert await resp.read() == audio_bytes(100_000)
    sse = {**body_json, "mock_bytes": 40_000, "stream_format": "sse"}
    async with http.post(mock.url + "/v1/audio/speech", json=sse) as resp:
        assert resp.content_type == "text/event-stream"
        lines = [line for line in (await resp.text()).split("\n") if line]
    parsed = [orjson.loads(line.removeprefix("data: ")) for line in lines]
    assert [p["type"] for p in parsed] == ["speech.audio.delta"] * 3 + ["speech.audio.done"]
    audio = b"".join(base64.b64decode(p["audio"]) for p in parsed[:-1])
    assert audio == audio_bytes(40_000)


async def test_transcription_reports_the_uploaded_bytes(start_mock: MockFactory) -> None:
    mock = await start_mock()
    upload = bytes(range(256)) * 4000  # 1 MB
    digest = hashlib.sha256(upload).hexdigest()
    async with sdk(mock.url, "sk-test") as client:
        done = await client.audio.transcriptions.create(
            model="whisper-1", file=("talk.mp3", upload, "audio/mpeg")
        )
        assert done.text == f"mock transcription of talk.mp3: {len(upload)} bytes, sha256 {digest}"
        text = await client.audio.transcriptions.create(
            model="whisper-1", file=("talk.mp3", upload), response_format="text"
        )
        assert isinstance(text, str) and text.strip() == done.text
        verbose = await client.audio.transcriptions.create(
            model="whisper-1", file=("talk.mp3", upload), response_format="verbose_json"
        )
        assert verbose.text == done.text and verbose.segments
        srt = await client.audio.transcriptions.create(
            model="whisper-1", file=("talk.mp3", upload), response_format="srt"
        )
        assert digest in srt
        with pytest.deprecated_call():  # by this SDK version; the endpoint still exists
            translated = await client.audio.translations.create(
                model="whisper-1", file=("talk.mp3", upload)
            )
        assert translated.text.startswith("mock translation of talk.mp3")
        assert digest in translated.text
    recorded = mock.recorded[-1]
    assert recorded.path == "/v1/audio/translations" and recorded.body == b""
    assert recorded.form["files"] == [
        {"field": "file", "filename": "talk.mp3", "bytes": len(upload), "sha256": digest}
    ]
    assert recorded.form["fields"]["model"] == "whisper-1"


# -- Moderations, rerank --------------------------------------------------------------------------


async def test_moderations(start_mock: MockFactory) -> None:
    mock = await start_mock("m1")
    async with sdk(mock.url, "sk-test") as client:
        one = await client.moderations.create(model="omni-moderation-latest", input="hello")
        assert one.id == "modr-m1" and one.model == "omni-moderation-latest"
        assert [r.flagged for r in one.results] == [False]
        two = await client.moderations.create(input=["fine", f"not {FLAG}"])
        assert [r.flagged for r in two.results] == [False, True]
        assert two.results[1].categories.violence is True
        assert two.results[1].category_scores.violence == 0.99


async def test_rerank(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    mock = await start_mock()
    body = {
        "model": "rerank-v1",
        "query": "red apple pie",
        "documents": ["blue sky", "apple pie recipe", {"text": "red apple pie"}],
        "top_n": 2,
        "return_documents": True,
    }
    async with http.post(mock.url + "/v1/rerank", json=body) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert [r["index"] for r in answer["results"]] == [2, 1]
    scores = [r["relevance_score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert answer["results"][0]["document"] == {"text": "red apple pie"}
    assert answer["model"] == "rerank-v1" and answer["usage"]["total_tokens"] > 0


# -- Files, batches, vector stores ----------------------------------------------------------------


async def test_file_upload_list_content_delete(start_mock: MockFactory) -> None:
    mock = await start_mock("f")
    data = b'{"custom_id": "1"}\n{"custom_id": "2"}\n' + bytes(range(256)) * 100
    async with sdk(mock.url, "sk-test") as client:
        made = await client.files.create(file=("in.jsonl", data), purpose="batch")
        other = await client.files.create(file=("b.txt", b"b"), purpose="assistants")
        assert (made.id, other.id) == ("file-f", "file-f_2")
        assert (made.bytes, made.filename, made.purpose) == (len(data), "in.jsonl", "batch")
        assert (await client.files.retrieve(made.id)).model_dump() == made.model_dump()
        listed = await client.files.list()
        assert [f.id for f in listed.data] == ["file-f_2", "file-f"]
        assert [f.id for f in (await client.files.list(purpose="batch")).data] == ["file-f"]
        content = await client.files.content(made.id)
        assert content.content == data
        deleted = await client.files.delete(made.id)
        assert deleted.deleted and deleted.id == made.id
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            await client.files.content(made.id)


async def test_stored_files_are_bounded_on_disk_and_removed_at_stop() -> None:
    app = create_mock_app(MockOptions(max_file_bytes=250))
    async with serve(app) as url, sdk(url, "sk-test") as client:
        first = await client.files.create(file=("a", b"a" * 100), purpose="batch")
        path = app[STATE].files.get(first.id).path
        assert path.read_bytes() == b"a" * 100
        for _ in range(2):
            await client.files.create(file=("b", b"b" * 100), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(first.id)  # the oldest went to make room
        assert not path.exists()
        assert app[STATE].file_bytes == 200
    assert not path.parent.exists()


async def test_batches(start_mock: MockFactory) -> None:
    mock = await start_mock("b")
    requests = b'{"custom_id": "1"}\n{"custom_id": "2"}\n{"custom_id": "3"}'
    async with sdk(mock.url, "sk-test") as client:
        file = await client.files.create(file=("in.jsonl", requests), purpose="batch")
        batch = await client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.id == "batch_b" and batch.status == "validating"
        assert batch.request_counts is not None and batch.request_counts.total == 3
        assert (await client.batches.retrieve(batch.id)).model_dump() == batch.model_dump()
        assert [b.id for b in (await client.batches.list()).data] == [batch.id]
        cancelling = await client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling"
        assert (await client.batches.retrieve(batch.id)).status == "cancelled"
        with pytest.raises(openai.NotFoundError):
            await client.batches.retrieve("batch_nope")
        with pytest.raises(openai.NotFoundError):
            await client.batches.create(
                input_file_id="file-elsewhere",
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )


async def test_vector_stores_and_their_files(start_mock: MockFactory) -> None:
    mock = await start_mock("v")
    async with sdk(mock.url, "sk-test") as client:
        one = await client.files.create(file=("a.txt", b"x" * 10), purpose="assistants")
        two = await client.files.create(file=("b.txt", b"y" * 5), purpose="assistants")
        store = await client.vector_stores.create(name="docs", file_ids=[one.id])
        assert store.id == "vs_v" and store.name == "docs" and store.status == "completed"
        assert (store.file_counts.total, store.usage_bytes) == (1, 10)
        added = await client.vector_stores.files.create(vector_store_id=store.id, file_id=two.id)
        assert (added.id, added.vector_store_id, added.status) == (two.id, store.id, "completed")
        files = await client.vector_stores.files.list(vector_store_id=store.id)
        assert [f.id for f in files.data] == [two.id, one.id]
        got = await client.vector_stores.files.retrieve(file_id=one.id, vector_store_id=store.id)
        assert got.usage_bytes == 10
        renamed = await client.vector_stores.update(store.id, name="renamed")
        assert (renamed.name, renamed.file_counts.total, renamed.usage_bytes) == ("renamed", 2, 15)
        removed = await client.vector_stores.files.delete(file_id=one.id, vector_store_id=store.id)
        assert removed.deleted
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.files.retrieve(file_id=one.id, vector_store_id=store.id)
        assert [s.id for s in (await client.vector_stores.list()).data] == [store.id]
        assert (await client.vector_stores.retrieve(store.id)).file_counts.total == 1
        assert (await client.vector_stores.delete(store.id)).deleted
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.retrieve(store.id)
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.create(name="x", file_ids=["file-unknown"])


# -- Large uploads --------------------------------------------------------------------------------


async def test_a_50_mb_upload_is_streamed_to_disk_not_held_in_memory(
    start_mock: MockFactory, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The mock reads multipart uploads in chunks: its memory stays flat while 50 MB pass (the
    client streams the file from disk too, so what tracemalloc sees is both sides' buffers)."""
    mock = await start_mock()
    source = tmp_path / "big.bin"
    block = hashlib.sha256(b"seed").digest() * 32_768  # 1 MiB
    with source.open("wb") as out:
        for _ in range(50):
            out.write(block)
    digest = hashlib.sha256(block * 50).hexdigest()
    size = 50 * len(block)
    del block
    tracemalloc.start()
    try:
        with source.open("rb") as f:
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", f, filename="big.bin")
            async with http.post(mock.url + "/v1/files", data=form) as resp:
                assert resp.status == 200, await resp.text()
                made = await resp.json()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB while uploading {size >> 20} MiB"
    assert made["bytes"] == size
    assert mock.recorded[-1].form["files"][0]["sha256"] == digest
    # The bytes on disk, and the bytes downloaded, are the bytes uploaded.
    download = hashlib.sha256()
    async with http.get(mock.url + f"/v1/files/{made['id']}/content") as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(1 << 20):
            download.update(chunk)
    assert download.hexdigest() == digest


def test_instance_names_are_checked_early() -> None:
    with pytest.raises(ValueError, match="mock name"):
        MockOptions(name="a_b")
