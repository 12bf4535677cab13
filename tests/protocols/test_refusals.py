"""What counts as a context window exceeded or a refusal on content policy
(`llm_proxy.protocols.refusals`): each service's real-shaped answers (`tests.helpers.refusals`),
their near misses (other 400s, the same words at another status, ordinary answers, answers cut
short or not JSON), and any bytes at all, which must never raise."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_proxy.protocols.refusals import (
    CONTENT_POLICY_PHRASES,
    CONTEXT_WINDOW_PHRASES,
    PROTOCOLS,
    REFUSAL_HINTS,
    classify_answer,
    classify_error,
)
from tests.helpers.refusals import CASES, Case, error, refused

ERRORS = [c for c in CASES if c.status >= 400]
ANSWERS = [c for c in CASES if c.status < 400]
CLASSIFIED_ERRORS = [c for c in ERRORS if c.reason is not None]


def classify(case: Case, body: bytes | None = None, status: int | None = None) -> str | None:
    body = case.body if body is None else body
    status = case.status if status is None else status
    if status < 400:
        return classify_answer(case.protocol, body)
    return classify_error(case.protocol, status, body)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_real_answers(case: Case) -> None:
    assert classify(case) == case.reason


@pytest.mark.parametrize("case", [c for c in ANSWERS if c.reason], ids=lambda c: c.name)
def test_every_refusal_carries_a_hint(case: Case) -> None:
    """The relay looks for a refusal only in answers that carry one of its protocol's hints
    (literal bytes, cheaper than the classifier's regex): every refusal must carry one."""
    assert any(hint in case.body for hint in REFUSAL_HINTS[case.protocol])


def test_every_protocol_has_both_reasons_and_near_misses() -> None:
    for protocol in PROTOCOLS:
        mine = [c for c in CASES if c.protocol == protocol]
        assert {c.reason for c in mine if c.status >= 400} >= {"context_window", None}
        assert {c.reason for c in mine if c.status < 400} == {"content_policy", None}
    # Gemini's content-policy blocks are answers (200), never errors.
    assert {c.protocol for c in ERRORS if c.reason == "content_policy"} == PROTOCOLS - {"gemini"}


@pytest.mark.parametrize(
    ("phrase", "reason"),
    [(p, "context_window") for p in CONTEXT_WINDOW_PHRASES]
    + [(p, "content_policy") for p in CONTENT_POLICY_PHRASES],
)
def test_every_phrase_is_seen_in_a_real_error(phrase: str, reason: str) -> None:
    """Each phrase is there for a service's real error: one of the cases says it (and would
    not classify without it, or a phrase nothing needs would go unnoticed)."""
    assert phrase == phrase.lower()  # matched against the message in lower case
    pattern = re.compile(phrase, re.IGNORECASE)
    assert any(c.reason == reason and pattern.search(c.body.decode()) for c in CLASSIFIED_ERRORS), (
        phrase
    )


@pytest.mark.parametrize("status", [401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 529])
@pytest.mark.parametrize("case", CLASSIFIED_ERRORS, ids=lambda c: c.name)
def test_other_statuses_never_classify(case: Case, status: int) -> None:
    """A 5xx is the server's failure whatever it says; a 429 a limit; 401, 403, 404 are the
    key's or the route's."""
    assert classify(case, status=status) is None


@pytest.mark.parametrize("case", CLASSIFIED_ERRORS, ids=lambda c: c.name)
def test_413_and_422_carry_a_context_window_only(case: Case) -> None:
    for status in (413, 422):
        expected = case.reason if case.reason == "context_window" else None
        assert classify(case, status=status) == expected


@pytest.mark.parametrize("case", CLASSIFIED_ERRORS, ids=lambda c: c.name)
def test_an_error_body_at_a_2xx_is_no_error(case: Case) -> None:
    assert classify_error(case.protocol, 200, case.body) is None
    assert classify_answer(case.protocol, case.body) is None


@pytest.mark.parametrize("case", ANSWERS, ids=lambda c: c.name)
def test_an_answer_at_an_error_status_is_no_refusal(case: Case) -> None:
    assert classify_error(case.protocol, 400, case.body) is None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cut_short_is_none(case: Case) -> None:
    """A body cut anywhere is no longer JSON: never classified (nor an exception)."""
    body = case.body
    for cut in {0, 1, len(body) // 3, len(body) // 2, len(body) - 1}:
        assert classify(case, body=body[:cut]) is None


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b"{}",
        b"42",
        b'"prompt is too long: 5 tokens > 4 maximum"',
        b"prompt is too long: 208310 tokens > 200000 maximum",  # not JSON
        b'{"error": "prompt is too long\xff\xfe"}',  # not UTF-8
        b'{"error": {"message": 12, "code": ["context_length_exceeded"]}}',
        b'{"error": {"message": null, "type": {"a": 1}, "innererror": [1]}}',
        b"<html><body>413 Request Entity Too Large: content_filter</body></html>",
        b"[" * 5000 + b'"context"' + b"]" * 5000,  # deeper than the parser goes
    ],
)
def test_not_an_error_of_the_kind(protocol: str, body: bytes) -> None:
    for status in (400, 413, 422):
        assert classify_error(protocol, status, body) is None, status
    assert classify_answer(protocol, body) is None


def test_a_list_holds_googles_error() -> None:
    """Google's OpenAI-compatible endpoint answers its error inside a JSON array."""
    body = b'[{"error": {"code": 400, "message": "content management policy", "status": "X"}}]'
    assert classify_error("openai", 400, body) == "content_policy"


def test_an_error_about_one_parameter_is_about_that_parameter() -> None:
    """A message quoting a request's value (one named `param`) is not about the prompt; an
    error about the prompt names it, or nothing."""
    cases = [("stop", None), ("messages[0].content", None), ("messages", "context_window")]
    cases += [("input", "context_window"), ("prompt", "context_window"), (None, "context_window")]
    for param, expected in cases:
        body = orjson.dumps({"error": {"message": "prompt is too long", "param": param}})
        assert classify_error("openai", 400, body) == expected, param


def test_the_usual_ones() -> None:
    """`error` and `refused` give each protocol's usual answer (the fakes answer these)."""
    for protocol in PROTOCOLS:
        for reason in ("context_window", "content_policy", None):
            if protocol == "gemini" and reason == "content_policy":
                with pytest.raises(KeyError):
                    error(protocol, reason)
                continue
            status, body = error(protocol, reason)
            assert classify_error(protocol, status, body) == reason
        assert classify_answer(protocol, refused(protocol)) == "content_policy"


def test_an_unknown_protocol_is_the_callers_mistake() -> None:
    with pytest.raises(ValueError, match="azure"):
        classify_error("azure", 400, b"{}")
    with pytest.raises(ValueError, match="vertex"):
        classify_answer("vertex", b"{}")


# Answers, one rule at a time.


def chat(*choices: dict[str, Any]) -> bytes:
    return orjson.dumps({"object": "chat.completion", "choices": list(choices)})


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        ([{"finish_reason": "content_filter", "message": {"role": "assistant"}}], True),
        ([{"finish_reason": "content_filter"}], True),  # no message at all
        ([{"finish_reason": "content_filter", "message": {"content": "  "}}], True),
        ([{"finish_reason": "content_filter", "message": {"content": []}}], True),
        ([{"finish_reason": "content_filter", "message": {"content": "cut"}}], False),
        ([{"finish_reason": "content_filter", "message": {"content": [{"type": "text"}]}}], False),
        ([{"finish_reason": "content_filter", "text": "legacy completion"}], False),
        ([{"finish_reason": "content_filter", "text": ""}], True),
        ([{"finish_reason": "content_filter", "message": {"function_call": {"name": "f"}}}], False),
        ([{"finish_reason": "stop", "message": {"content": None, "refusal": "No."}}], True),
        ([{"finish_reason": "stop", "message": {"content": "Yes", "refusal": "No."}}], False),
        ([{"finish_reason": "stop", "message": {"content": None, "refusal": ""}}], False),
        ([{"finish_reason": "stop", "message": {"content": None, "refusal": None}}], False),
        ([{"finish_reason": "length", "message": {"content": None}}], False),
        # Every choice, or the answer is one (n > 1: the others are usable).
        (
            [
                {"finish_reason": "content_filter", "message": {"content": None}},
                {"finish_reason": "stop", "message": {"content": "fine"}},
            ],
            False,
        ),
        (
            [
                {"finish_reason": "content_filter", "message": {"content": None}},
                {"finish_reason": "stop", "message": {"content": None, "refusal": "No."}},
            ],
            True,
        ),
        ([], False),
        (["content_filter"], False),
    ],
)
def test_openai_refusals(choices: list[Any], expected: bool) -> None:
    assert (classify_answer("openai", chat(*choices)) == "content_policy") is expected


def test_openai_refusal_found_whatever_the_spacing() -> None:
    choice = {"index": 0, "message": {"content": None, "refusal": "No."}, "finish_reason": "stop"}
    for option in (0, orjson.OPT_INDENT_2):
        body = orjson.dumps({"choices": [choice]}, option=option)
        assert classify_answer("openai", body) == "content_policy"
    spaced = b'{"choices": [{"finish_reason" :  "content_filter", "message": {}}]}'
    assert classify_answer("openai", spaced) == "content_policy"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"promptFeedback": {"blockReason": "OTHER"}}, True),
        ({"promptFeedback": {"blockReason": "BLOCKLIST"}, "candidates": []}, True),
        ({"promptFeedback": {"blockReason": "BLOCK_REASON_UNSPECIFIED"}}, False),
        ({"promptFeedback": {"blockReason": ""}}, False),
        ({"promptFeedback": {"safetyRatings": []}}, False),
        ({"candidates": [{"finishReason": "BLOCKLIST"}]}, True),
        ({"candidates": [{"finishReason": "IMAGE_SAFETY", "content": {"parts": []}}]}, True),
        ({"candidates": [{"finishReason": "SAFETY", "content": {"role": "model"}}]}, True),
        (
            {"candidates": [{"finishReason": "SAFETY", "content": {"parts": [{"text": "a"}]}}]},
            False,
        ),
        (
            {
                "candidates": [
                    {"finishReason": "SAFETY", "content": {"parts": [{"functionCall": {}}]}}
                ]
            },
            False,
        ),
        ({"candidates": [{"finishReason": "STOP"}]}, False),
        ({"candidates": [{"finishReason": "OTHER"}]}, False),
        ({"candidates": [{"finishReason": "LANGUAGE"}]}, False),
        ({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]}, False),
        ({"candidates": [{"finishReason": "SAFETY"}, {"finishReason": "STOP"}]}, False),
        ({"candidates": [{"finishReason": "SAFETY"}, {"finishReason": "RECITATION"}]}, True),
        # A block reason beside a candidate is the candidate's answer.
        (
            {
                "promptFeedback": {"blockReason": "SAFETY"},
                "candidates": [{"finishReason": "STOP", "content": {"parts": [{"text": "hi"}]}}],
            },
            False,
        ),
        ({"candidates": {"finishReason": "SAFETY"}}, False),
    ],
)
def test_gemini_refusals(answer: dict[str, Any], expected: bool) -> None:
    assert (classify_answer("gemini", orjson.dumps(answer)) == "content_policy") is expected


@pytest.mark.parametrize(
    ("protocol", "answer", "expected"),
    [
        ("anthropic", {"type": "message", "stop_reason": "refusal", "content": []}, True),
        ("anthropic", {"type": "message", "stop_reason": "end_turn", "content": []}, False),
        ("anthropic", {"type": "message", "stop_reason": "max_tokens", "content": []}, False),
        (
            "anthropic",
            {"stop_reason": None, "content": [{"text": '"stop_reason":"refusal"'}]},
            False,
        ),
        ("bedrock", {"stopReason": "guardrail_intervened"}, True),
        ("bedrock", {"stopReason": "content_filtered"}, True),
        ("bedrock", {"stopReason": "end_turn"}, False),
        ("bedrock", {"stopReason": "malformed_model_output"}, False),
        (
            "bedrock",
            {"output": {"message": {"content": [{"text": "guardrail_intervened"}]}}},
            False,
        ),
    ],
)
def test_anthropic_and_bedrock_refusals(protocol: str, answer: Any, expected: bool) -> None:
    assert (classify_answer(protocol, orjson.dumps(answer)) == "content_policy") is expected


def test_answers_are_read_by_their_protocol() -> None:
    """A refusal in one protocol's shape is nothing in another's."""
    for case in ANSWERS:
        for protocol in PROTOCOLS - {case.protocol}:
            assert classify_answer(protocol, case.body) is None, (case.name, protocol)


# Any bytes at all.

WORDS = [
    "error", "message", "code", "type", "param", "innererror", "inner_error", "metadata", "raw",
    "Message", "choices", "finish_reason", "content", "refusal", "text", "tool_calls",
    "stop_reason", "candidates", "finishReason", "promptFeedback", "blockReason", "parts",
    "thought", "stopReason", "context_length_exceeded", "content_filter", "request_too_large",
    "ResponsibleAIPolicyViolation", "exceed_context_size_error", "moderation_blocked",
    "content_policy_violation", "SAFETY", "RECITATION", "guardrail_intervened", "messages",
    "prompt is too long", "maximum context length is 8", "content management policy",
    "Input is too long for requested model", "blocked by our content filters",
]  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.sampled_from(WORDS),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(WORDS), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PROTOCOLS)), st.integers(100, 599), st.binary(max_size=2048))
def test_any_bytes_never_raise(protocol: str, status: int, body: bytes) -> None:
    assert classify_error(protocol, status, body) in (None, "context_window", "content_policy")
    assert classify_answer(protocol, body) in (None, "content_policy")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PROTOCOLS)), st.sampled_from([400, 413, 422, 200]), JSON)
def test_any_json_never_raises(protocol: str, status: int, data: Any) -> None:
    """JSON of the services' own keys and words in any arrangement reaches every branch."""
    body = json.dumps(data).encode()  # (any integer: orjson's stop at 64 bits)
    reason = classify_error(protocol, status, body)
    assert reason in (None, "context_window", "content_policy")
    if status != 400:
        assert reason != "content_policy"
    assert classify_answer(protocol, body) in (None, "content_policy")
