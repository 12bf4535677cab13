"""Whether an upstream failed for a reason another model may not share: the prompt is too long
for the model (`context_window`), or the upstream refused it on content policy
(`content_policy`). The fallback chains of those names are taken on these, and nothing else.

`classify_error` reads an error answer (status >= 400), `classify_answer` a successful answer
read whole (not a stream) that is in fact a refusal. Both are total: any status and any bytes
(not JSON, cut short, another protocol's shape) give a reason or None, never an exception (a
protocol not in PROTOCOLS is the caller's mistake: ValueError). They are cheap where it
matters: the status first, then a substring test on the raw bytes, and only a body that passes
both is parsed; a message is searched for a phrase's literal part before its regular
expression (a few microseconds for a service's error, 0.25 ms for 64 KiB of text).

`protocol` is the upstream's wire protocol: "openai" (Azure and every OpenAI-compatible server),
"anthropic" (Vertex's Claude too), "gemini" (Google AI Studio and Vertex's Gemini), "bedrock"
(Converse).

Errors. A 5xx never classifies: a server's failure is not the request's (retries and the
general fallback chain handle it). A context window is a 400, a 413 (a request too large to be
read at all: Anthropic's 32 MB) or a 422 (TGI's validation errors); a content policy is a 400.
Then the structured fields, by protocol:

- openai: `error.code` `context_length_exceeded` (llama.cpp: `error.type`
  `exceed_context_size_error`) is a context window; `error.code` `content_policy_violation`,
  `content_filter` (Azure) or `moderation_blocked`, or Azure's `innererror.code`
  `ResponsibleAIPolicyViolation`, a content policy.
- anthropic: `error.type` `request_too_large` (its 413) is a context window.
- gemini, bedrock: none (Google's `status` is INVALID_ARGUMENT for any bad request, Bedrock's
  exception a ValidationException, and in a header).

Else the error's message (`error.message`, `error` when a string, a top-level `message` or
`Message`, OpenRouter's `error.metadata.raw`) against `CONTEXT_WINDOW_PHRASES` and
`CONTENT_POLICY_PHRASES`: "maximum context length is N" (OpenAI, Azure, vLLM), "prompt is too
long" (Anthropic, Claude on Bedrock and Vertex), "The input token count (N) exceeds the maximum
number of tokens allowed (M)" (Gemini), "Input is too long for requested model" (Bedrock),
"... content management policy" (Azure), "Output blocked by content filtering policy"
(Anthropic), "blocked by our content filters" (Bedrock)... Every service's phrases apply to
every protocol: an upstream may relay another's error (OpenRouter, a gateway, the
OpenAI-compatible endpoints of Gemini and Bedrock). Each is specific enough not to occur in
other errors, and is looked for in the message only: a body may echo the request back (and
not at all when an OpenAI-shaped error names a `param` other than the prompt's: the message
is about that parameter, and may quote its value).

Answers (2xx) are refusals on content policy:

- openai: every choice has nothing in it (no content, tool call or text) and either
  `finish_reason` `content_filter` (Azure's filters, OpenAI's) or a `message.refusal` (the
  model's own, with structured outputs).
- anthropic: `stop_reason` `refusal` (Claude's streaming classifiers: the text before it is
  kept, but the turn was refused).
- gemini: no candidate and a `promptFeedback.blockReason`; or every candidate has a
  `finishReason` of `BLOCKED_FINISH` and no part but thoughts.
- bedrock: `stopReason` `guardrail_intervened` or `content_filtered` (the content is then the
  guardrail's or the filter's own words).

An answer a filter cut short that still carries the model's content (an Azure choice whose end
was filtered, a Gemini candidate with text) is an answer, relayed as it is. Gemini's RECITATION
counts like SAFETY: it is Google's filter of verbatim training data, the counterpart of Azure's
protected material filter (whose choices end with `content_filter`) and of Anthropic's "Output
blocked by content filtering policy"; another model may well answer. A stop at the context
window during generation (Anthropic's and Bedrock's `model_context_window_exceeded`) ends an
answer that is still one: not classified.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import orjson

Reason = Literal["context_window", "content_policy"]
PROTOCOLS: Final = frozenset({"openai", "anthropic", "gemini", "bedrock"})

# The statuses that can carry each reason (the status is checked before anything else).
_CONTEXT_STATUSES: Final = frozenset({400, 413, 422})
_POLICY_STATUS: Final = 400

# The messages of a context window exceeded, as each service words it (regular expressions in
# lower case, matched ignoring case).
CONTEXT_WINDOW_PHRASES: Final = (
    r"maximum context length is \d",  # OpenAI, Azure, vLLM, DeepSeek, OpenRouter
    r"\d maximum context length",  # Mistral: "too large for model with N maximum context length"
    r"longer than the model's context length",  # SGLang
    r"exceeds the context window",  # OpenAI: "Your input exceeds the context window of ..."
    r"reduce the length of the messages",  # OpenAI, Groq, Cerebras
    r"input tokens exceed the configured limit",  # OpenAI
    r"maximum prompt length is \d",  # xAI
    r"exceeds the available context size",  # llama.cpp
    r"current length is \d+ while limit is \d",  # Cerebras
    r"prompt is too long",  # Anthropic: "prompt is too long: N tokens > M maximum"
    r"exceed context limit",  # Anthropic: "input length and `max_tokens` exceed context limit"
    r"input token count\b.{0,40}exceeds the maximum number of tokens allowed",  # Gemini
    r"input token count is \d+ but (?:the )?model only supports up to",  # Vertex
    r"request payload size exceeds the limit",  # Gemini, Vertex: bytes, like Anthropic's 413
    r"input is too long for requested model",  # Bedrock
    r"too many input tokens",  # Bedrock: "Too many input tokens. Max input tokens: N, ..."
    r"prompt tokens \(\d+\) exceed model maximum",  # Bedrock's OpenAI-compatible endpoint
    r"`inputs` tokens \+ `max_new_tokens` must be",  # TGI (Together, SageMaker)
    r"`inputs` must have less than \d+ tokens",  # TGI
)
# The messages of a refusal on content policy.
CONTENT_POLICY_PHRASES: Final = (
    r"content management policy",  # Azure: "... the prompt triggering Azure OpenAI's content ..."
    r"content filtering policy",  # Anthropic: "Output blocked by content filtering policy"
    r"as a result of (?:our|the) safety system",  # OpenAI: "Your request was rejected as ..."
    r"violating our usage polic",  # OpenAI (reasoning models): code invalid_prompt
    r"blocked by our content filters",  # Bedrock (Nova, Titan), OpenAI (images)
)


def _rules(phrases: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Each phrase with its longest literal part: the regular expression runs only on a
    message that contains it (one alternation of them all, ignoring case, took 13 ms on a
    64 KiB message; this, a few microseconds on a service's sentence)."""
    literals = (max(re.split(r"\\.|[.^$*+?{}\[\]|()]", phrase), key=len) for phrase in phrases)
    return tuple(zip(literals, map(re.compile, phrases), strict=True))


# (The phrases are in lower case, and so is the message they are matched against.)
_CONTEXT_WINDOW: Final = _rules(CONTEXT_WINDOW_PHRASES)
_CONTENT_POLICY: Final = _rules(CONTENT_POLICY_PHRASES)
# A message is read in its first characters: the services' are a sentence or two (a longer one
# echoes the request).
_MESSAGE_CHARS: Final = 4096
# Every body a rule can match contains one of these (in lower case): no other is parsed.
_ERROR_MARKERS: Final = (
    b"cont",  # context_length_exceeded, content_filter..., most phrases
    b"token",
    b"too",  # request_too_large, "prompt is too long"
    b"length",
    b"payload",
    b"polic",  # ResponsibleAIPolicyViolation, "content management policy"...
    b"safety",
    b"moderation",
)
_OPENAI_CONTEXT_CODES: Final = frozenset({"context_length_exceeded", "exceed_context_size_error"})
_OPENAI_POLICY_CODES: Final = frozenset(
    {"content_policy_violation", "content_filter", "moderation_blocked"}
)
_AZURE_POLICY_INNER: Final = "ResponsibleAIPolicyViolation"
# An OpenAI-shaped error names the parameter at fault in `param`: a context window or a content
# filter is the whole prompt's (or no parameter's).
_WHOLE_PROMPT: Final = frozenset({"messages", "input", "prompt"})

# Gemini's finish reasons that say a filter withheld the candidate (FinishReason, Gemini API and
# Vertex AI).
BLOCKED_FINISH: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
_BEDROCK_REFUSALS: Final = frozenset({"guardrail_intervened", "content_filtered"})
# What a refusal's body contains, exactly (JSON keys and these values are case-sensitive).
_OPENAI_REFUSAL: Final = re.compile(rb'"finish_reason"\s*:\s*"content_filter"|"refusal"\s*:\s*"')
_ANTHROPIC_REFUSAL: Final = re.compile(rb'"stop_reason"\s*:\s*"refusal"')
_GEMINI_REFUSAL: Final = re.compile(
    rb'"blockReason"|"finishReason"\s*:\s*"(?:'
    + b"|".join(reason.encode() for reason in sorted(BLOCKED_FINISH))
    + rb')"'
)
_BEDROCK_REFUSAL: Final = re.compile(
    rb'"stopReason"\s*:\s*"(?:guardrail_intervened|content_filtered)"'
)


def classify_error(protocol: str, status: int, body: bytes) -> Reason | None:
    """An upstream's error answer (status >= 400, body as received, possibly not JSON,
    possibly truncated to 64 KiB): "context_window", "content_policy" or None (any other
    failure). Never raises, except ValueError for a protocol not in PROTOCOLS."""
    _check(protocol)
    if status not in _CONTEXT_STATUSES:
        return None
    lowered = body.lower()
    if not any(marker in lowered for marker in _ERROR_MARKERS):
        return None
    data = _json(body)
    if isinstance(data, list) and data:  # Google's JSON arrays (its OpenAI-compatible API)
        data = data[0]
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        reason = _structured(protocol, error, data)
        if reason is not None:
            return reason if reason == "context_window" or status == _POLICY_STATUS else None
        param = error.get("param")
        if isinstance(param, str) and param not in _WHOLE_PROMPT:
            return None  # about one parameter (whose value the message may quote)
    for message in _messages(data, error):
        text = message[:_MESSAGE_CHARS].lower()
        if _says(_CONTEXT_WINDOW, text):
            return "context_window"
        if status == _POLICY_STATUS and _says(_CONTENT_POLICY, text):
            return "content_policy"
    return None


def _says(rules: tuple[tuple[str, re.Pattern[str]], ...], text: str) -> bool:
    return any(literal in text and pattern.search(text) for literal, pattern in rules)


def classify_answer(protocol: str, body: bytes) -> Reason | None:
    """A successful (2xx) answer read whole (not a stream): "content_policy" if it is in fact
    a refusal (see the module docstring), else None. Never raises, except ValueError for a
    protocol not in PROTOCOLS."""
    if protocol == "openai":  # (the common case first: one comparison, no call)
        refused = _OPENAI_REFUSAL.search(body) is not None and _openai_refused(_json(body))
    elif protocol == "anthropic":
        refused = _ANTHROPIC_REFUSAL.search(body) is not None and _anthropic_refused(_json(body))
    elif protocol == "gemini":
        refused = _GEMINI_REFUSAL.search(body) is not None and _gemini_refused(_json(body))
    else:
        _check(protocol)
        refused = _BEDROCK_REFUSAL.search(body) is not None and _bedrock_refused(_json(body))
    return "content_policy" if refused else None


# The cheap first look of `classify_answer`, by protocol: literal bytes one of which every
# refusal carries (found by a memchr-fast search, a few instructions a byte, where a regex
# costs tens): an answer with none of them is not one (the common case: no parse).
# (OpenAI's refusal string, compact or with ": ", as every server writes JSON.)
REFUSAL_HINTS: Final[dict[str, tuple[bytes, ...]]] = {
    "openai": (b"content_filter", b'"refusal": "', b'"refusal":"'),
    "anthropic": (b'"refusal"',),
    "gemini": (b"blockReason", *(f'"{reason}"'.encode() for reason in sorted(BLOCKED_FINISH))),
    "bedrock": (b"guardrail_intervened", b"content_filtered"),
}


def _check(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (one of {sorted(PROTOCOLS)})")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # not JSON, cut short, not UTF-8, nested too deep
        return None


def _structured(protocol: str, error: dict[str, Any], data: dict[str, Any]) -> Reason | None:
    """The reason an error's structured fields (codes and types) name, if any."""
    if protocol == "openai":
        codes = {
            code
            for code in (error.get("code"), error.get("type"), data.get("code"))
            if isinstance(code, str)
        }
        if not _OPENAI_CONTEXT_CODES.isdisjoint(codes):
            return "context_window"
        inner = error.get("innererror", error.get("inner_error"))
        if not _OPENAI_POLICY_CODES.isdisjoint(codes) or (
            isinstance(inner, dict) and inner.get("code") == _AZURE_POLICY_INNER
        ):
            return "content_policy"
    elif protocol == "anthropic" and error.get("type") == "request_too_large":
        return "context_window"
    return None


def _messages(data: dict[str, Any], error: Any) -> list[str]:
    """What an error body says, in each shape: `error.message` (OpenAI, Anthropic, Google),
    OpenRouter's `error.metadata.raw` (the provider's own body), `error` as a string (TGI,
    Ollama, xAI), a top-level `message` (vLLM, Mistral, Bedrock) or `Message` (AWS)."""
    found = []
    if isinstance(error, dict):
        found.append(error.get("message"))
        metadata = error.get("metadata")
        if isinstance(metadata, dict):
            found.append(metadata.get("raw"))
    else:
        found.append(error)
    found += (data.get("message"), data.get("Message"))
    return [text for text in found if isinstance(text, str)]


def _filled(value: Any) -> bool:
    """Content that is there: a non-blank string, or a non-empty list (of parts or calls)."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, list) and bool(value)


def _openai_refused(data: Any) -> bool:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict) or _filled(choice.get("text")):  # (legacy completions)
            return False
        message = choice.get("message")
        if not isinstance(message, dict):
            message = {}
        if any(_filled(message.get(key)) for key in ("content", "tool_calls")) or isinstance(
            message.get("function_call"), dict
        ):
            return False
        if choice.get("finish_reason") != "content_filter" and not _filled(message.get("refusal")):
            return False
    return True


def _anthropic_refused(data: Any) -> bool:
    return isinstance(data, dict) and data.get("stop_reason") == "refusal"


def _gemini_refused(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    candidates = data.get("candidates")
    if not candidates:  # none, or an empty list: the prompt was blocked, or nothing happened
        feedback = data.get("promptFeedback")
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        return isinstance(reason, str) and reason not in ("", "BLOCK_REASON_UNSPECIFIED")
    if not isinstance(candidates, list):
        return False
    for candidate in candidates:
        if not isinstance(candidate, dict) or candidate.get("finishReason") not in BLOCKED_FINISH:
            return False
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        if isinstance(parts, list) and any(
            not (isinstance(part, dict) and part.get("thought") is True) for part in parts
        ):
            return False
    return True


def _bedrock_refused(data: Any) -> bool:
    return isinstance(data, dict) and data.get("stopReason") in _BEDROCK_REFUSALS
