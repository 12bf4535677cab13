"""OpenAI embeddings requests as Gemini `embedContent`/`batchEmbedContents`, and the answers
back (`llm_proxy.protocols.gemini_embeddings`)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.gemini_embeddings import embeddings_answer, embeddings_request


def test_one_text() -> None:
    data = {"model": "text-embedding-3-small", "input": "Hello", "dimensions": 256, "user": "u"}
    assert embeddings_request(data, model="gemini-embedding-001") == (
        ":embedContent",
        {"content": {"parts": [{"text": "Hello"}]}, "outputDimensionality": 256},
    )


def test_a_list_of_texts_is_a_batch_naming_the_model_in_each_request() -> None:
    method, body = embeddings_request({"input": ["a", "b"]}, model="gemini-embedding-001")
    assert method == ":batchEmbedContents"
    assert body == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    _, prefixed = embeddings_request({"input": ["a"]}, model="models/text-embedding-004")
    assert prefixed["requests"][0]["model"] == "models/text-embedding-004"


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"input": [101, 2023]}, "input"),
        ({"input": [[101, 2023]]}, "input"),
        ({"input": []}, "input"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_refusals(data: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as raised:
        embeddings_request(data, model="g")
    assert raised.value.param == param


def test_answers_as_floats_and_as_base64() -> None:
    single = {"embedding": {"values": [0.25, -0.5, 1.0]}}
    assert embeddings_answer(single, model="text-embedding-3-small", texts=1) == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 1.0]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    batch = {
        "embeddings": [{"values": [0.25, 0.5]}, {"values": [-1.0, 2.0]}],
        "usageMetadata": {"promptTokenCount": 6},
    }
    answer = embeddings_answer(batch, model="m", texts=2, encoding_format="base64")
    vectors = [
        list(struct.unpack("<2f", base64.b64decode(item["embedding"]))) for item in answer["data"]
    ]
    assert vectors == [[0.25, 0.5], [-1.0, 2.0]]
    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert answer["usage"] == {"prompt_tokens": 6, "total_tokens": 6}


def test_an_answer_with_the_wrong_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not hold 2 embeddings"):
        embeddings_answer({"embeddings": [{"values": [1.0]}]}, model="m", texts=2)
    with pytest.raises(ValueError, match="does not hold 1 embeddings"):
        embeddings_answer({"error": "?"}, model="m", texts=1)
