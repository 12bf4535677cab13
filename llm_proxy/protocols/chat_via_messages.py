"""OpenAI chat-completions clients served by an Anthropic (Messages API) upstream: the request
and the answer. The stream is `chat_stream.ChatStream`.

Request (`messages_request`), what each OpenAI field becomes:

* `system` and `developer` messages, wherever they stand: the top-level `system`, as text
  blocks in their order (Anthropic has no system turn inside the conversation).
* user content: text parts; `image_url` parts (a base64 data URL of a JPEG, PNG, GIF or WebP
  image: a `base64` source; an http(s) URL: a `url` source); a `file` part carrying a base64
  PDF (`file_data`): a `document` block. A `cache_control` object on a text or image part is
  kept (Anthropic's prompt caching, which some OpenAI clients already send).
* assistant messages: their text first, then one `tool_use` block per tool call, its
  `arguments` parsed (a JSON object; an empty string is `{}`).
* `tool` messages: `tool_result` blocks in a user turn. Anthropic requires the turns to
  alternate, so consecutive messages of one role become one turn (tool results, then the
  following user message's content, which joins the same turn after them). Anthropic refuses
  text of only whitespace: such text parts are dropped, and a message left without content;
  a last assistant message (a prefill to Anthropic) loses its trailing whitespace, which
  Anthropic refuses there too. Tool call ids keep only the characters
  Anthropic accepts (`[A-Za-z0-9_-]`, the others become `_`), the same way in the call and
  in its result.
* `tools` (functions only): `name`, `description`, `input_schema` (the `parameters`; an empty
  object schema when absent; `strict` dropped). `tool_choice`: `auto`, `none`, `required` ->
  `any`, a named function -> `tool`; dropped when no tools are sent. `parallel_tool_calls:
  false` -> `disable_parallel_tool_use: true` on the tool choice.
* `stop` (a string or a list) -> `stop_sequences`. Anthropic refuses a sequence made only of
  whitespace (`"\\n"`): a 400, as it cannot be honoured.
* `max_completion_tokens`, else `max_tokens`, else `default_max_tokens` (Anthropic requires
  one), lowered to `max_tokens_cap` when one is given.
* `temperature` (OpenAI's range is 0-2, Anthropic's 0-1: above 1 becomes 1), `top_p`.
* `user` (or `safety_identifier`) -> `metadata.user_id`; `stream` -> `stream`.
* `reasoning_effort` -> `thinking: {type: enabled, budget_tokens}`: `minimal` 1024 (Anthropic's
  minimum), `low` 2048, `medium` 8192, `high` 24576 (`none`: no thinking). OpenAI counts
  reasoning inside `max_completion_tokens`, Anthropic requires `max_tokens` above the budget:
  when it is not, `max_tokens` becomes budget + the requested (or default) `max_tokens`, so the
  answer keeps the room asked for; when the cap leaves no room, the budget shrinks to half of
  `max_tokens` (never below 1024; a cap of 1024 or less is a 400). Anthropic refuses
  `temperature` and `top_p` (below 0.95) with thinking: both are dropped, as reasoning models
  decide their own sampling. Thinking with a forced tool (`tool_choice` `required` or a named
  function, or a json `response_format`) is refused by Anthropic: a 400 here, saying why.
  A request whose last assistant turn called tools (a tool loop's next step) goes without
  thinking: Anthropic then requires that turn to start with its signed thinking block, which
  an OpenAI client cannot send back (`reasoning_content` carries no signature), and refuses
  the request without it ("To avoid this requirement, disable thinking").
* `response_format`: `text`, nothing. `json_schema` and `json_object`: a tool whose
  `input_schema` is the schema (`{"type": "object"}` for `json_object`), named after the
  schema (`json_answer` when unnamed), forced by `tool_choice`, with parallel tool use
  disabled; its input becomes the answer's text content (finish_reason `stop`). With the
  client's own tools and `tool_choice` `auto` (or none given), all are offered and one call
  is required (`any`): the model answers in JSON or calls a tool, as OpenAI's would. Any
  other `tool_choice`, or a client tool of the same name, is a 400 (they conflict). The
  schema's root must be an object (a tool's input is).
* Refused with a 400 (`TranslationError`): `n` > 1, `logprobs`, `top_logprobs`, audio output
  (`audio`, `modalities` with `audio`), `web_search_options`, the deprecated
  `functions`/`function_call` (use `tools`), non-function tools, `input_audio` parts and file
  parts other than a base64 PDF, images that are neither a data URL nor an http(s) URL.
* Dropped: `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias` (token ids of another
  tokenizer), `store` and `metadata` (OpenAI's stored completions), `service_tier` (OpenAI's
  tiers, not Anthropic's), `prediction` (a latency hint, the answer is the same without it),
  `prompt_cache_key` (Anthropic caches by `cache_control`), `verbosity`, `stream_options`
  (read for `include_usage`), and any field this module does not know (as a lenient
  gateway: a field OpenAI adds later does not break the client).

Answer (`chat_answer`): text blocks joined -> `message.content`; `tool_use` ->
`tool_calls`; `thinking` -> `reasoning_content` (`redacted_thinking` is dropped: it is
encrypted); other blocks (server tools) are dropped. The id is `chatcmpl-` and the message
id without its `msg_` prefix; the model is the upstream answer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from llm_proxy.protocols.chat_conversation import conversation
from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.usage import TokenUsage, from_anthropic

THINKING_BUDGETS: Final = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
MIN_THINKING_BUDGET: Final = 1024
JSON_TOOL_NAME: Final = "json_answer"
_JSON_TOOL_DESCRIPTION: Final = (
    "Give your final answer by calling this tool: its input is the answer, a JSON object"
    " that follows the schema."
)
_STOP_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


@dataclass(slots=True)
class MessagesCall:
    """What translating the answer needs to know of the request."""

    model: str  # as the client named it (the answer names the upstream's)
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a usage chunk at the end
    json_tool: str | None = None  # the tool standing for a json response_format


# The request.


def messages_request(
    data: dict[str, Any],
    *,
    model: str,
    default_max_tokens: int = 4096,
    max_tokens_cap: int | None = None,
) -> tuple[dict[str, Any], MessagesCall]:
    """An OpenAI chat-completions request body as an Anthropic Messages request body for the
    upstream model `model`, and what its answer's translation needs. Raises `TranslationError`
    for what Anthropic cannot honour (see the module's docstring)."""
    _refuse_unsupported(data)
    system, messages = conversation(data.get("messages"))
    body: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        body["system"] = system
    stream = data.get("stream") is True
    if stream:
        body["stream"] = True
    stop = data.get("stop")
    if stop is not None and (stop := _stop_sequences(stop)):
        body["stop_sequences"] = stop
    user = data.get("user") or data.get("safety_identifier")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    response_format = data.get("response_format")
    json_tool = None if response_format is None else _json_tool(response_format)
    tools, tool_choice = _tooling(data, json_tool)
    if tools:
        body["tools"] = tools
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    body.update(
        _length_and_thinking(data, messages, tool_choice, default_max_tokens, max_tokens_cap)
    )
    options = data.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    call = MessagesCall(  # (positional: made per request, and cheaper so)
        str(data.get("model") or model),
        stream,
        include_usage,
        json_tool["name"] if json_tool is not None else None,
    )
    return body, call


def _length_and_thinking(
    data: dict[str, Any],
    messages: list[dict[str, Any]],
    tool_choice: dict[str, Any] | None,
    default_max_tokens: int,
    max_tokens_cap: int | None,
) -> dict[str, Any]:
    """`max_tokens`, and either `thinking` or the sampling fields (the module's docstring)."""
    max_tokens = _max_tokens(data, default_max_tokens, max_tokens_cap)
    effort = data.get("reasoning_effort")
    budget = None if effort is None else _thinking_budget(effort)
    if budget is not None and _continues_tool_use(messages):
        # Anthropic wants the signed thinking block that came before the tool calls, which an
        # OpenAI client cannot send back: this step of the tool loop goes without thinking.
        budget = None
    if budget is None:
        return {"max_tokens": max_tokens, **_sampling(data)}
    if tool_choice is not None and tool_choice["type"] in ("any", "tool"):
        raise TranslationError(
            "reasoning_effort",
            "reasoning_effort cannot be combined with a forced tool call (tool_choice required"
            " or a named function, or a json response_format): Anthropic's extended thinking"
            " allows tool_choice auto or none only.",
        )
    max_tokens, budget = _thinking_tokens(budget, max_tokens, max_tokens_cap)
    return {"max_tokens": max_tokens, "thinking": {"type": "enabled", "budget_tokens": budget}}


# The fields `_refuse_unsupported` looks at: a request with none of them (most) is not read.
_REFUSABLE: Final = frozenset(
    {"n", "logprobs", "top_logprobs", "modalities", "audio", "web_search_options"}
    | {"functions", "function_call"}
)


def _refuse_unsupported(data: dict[str, Any]) -> None:
    if data.keys().isdisjoint(_REFUSABLE):
        return
    n = data.get("n")
    if n is not None and n != 1:
        raise TranslationError("n", "n > 1 is not supported: Anthropic returns one choice.")
    if data.get("logprobs"):
        raise TranslationError("logprobs", "logprobs are not supported by Anthropic models.")
    if data.get("top_logprobs"):
        raise TranslationError("top_logprobs", "logprobs are not supported by Anthropic models.")
    modalities = data.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        raise TranslationError("modalities", "Audio output is not supported by Anthropic models.")
    if data.get("audio") is not None:
        raise TranslationError("audio", "Audio output is not supported by Anthropic models.")
    if data.get("web_search_options") is not None:
        raise TranslationError(
            "web_search_options", "web_search_options is not supported for Anthropic models."
        )
    for name in ("functions", "function_call"):
        if data.get(name) is not None:
            raise TranslationError(name, f"{name} is deprecated and not supported: use tools.")


def _sampling(data: dict[str, Any]) -> dict[str, Any]:
    sampling: dict[str, Any] = {}
    temperature = data.get("temperature")
    if temperature is not None:
        # OpenAI's range is 0-2, Anthropic's 0-1: the top of one is the top of the other.
        is_number = isinstance(temperature, int | float) and not isinstance(temperature, bool)
        sampling["temperature"] = min(temperature, 1.0) if is_number else temperature
    if data.get("top_p") is not None:
        sampling["top_p"] = data["top_p"]
    return sampling


def _max_tokens(data: dict[str, Any], default: int, cap: int | None) -> int:
    value: Any = default
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name wins
        given = data.get(name)
        if given is None:
            continue
        if not isinstance(given, int) or isinstance(given, bool) or given < 1:
            raise TranslationError(name, f"{name} must be a positive integer.")
        value = given
    return min(value, cap) if cap is not None else int(value)


def _thinking_budget(effort: Any) -> int | None:
    """The thinking budget of a reasoning effort; None: no thinking."""
    if effort is None or effort == "none":
        return None
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        raise TranslationError(
            "reasoning_effort", "reasoning_effort must be none, minimal, low, medium or high."
        )
    return budget


def _continues_tool_use(turns: list[dict[str, Any]]) -> bool:
    """The last assistant turn called tools (the request carries their results)."""
    for turn in reversed(turns):
        if turn["role"] == "assistant":
            return any(block["type"] == "tool_use" for block in turn["content"])
    return False


def _thinking_tokens(budget: int, max_tokens: int, cap: int | None) -> tuple[int, int]:
    """`max_tokens` and the thinking budget, within the cap (the module's docstring)."""
    if max_tokens <= budget:
        max_tokens = budget + max_tokens
        if cap is not None:
            max_tokens = min(max_tokens, cap)
    if max_tokens <= budget:
        budget = max(MIN_THINKING_BUDGET, max_tokens // 2)
    if max_tokens <= budget:
        raise TranslationError(
            "reasoning_effort",
            f"reasoning_effort needs max_tokens above {MIN_THINKING_BUDGET}, the least thinking"
            f" budget Anthropic accepts; this route allows at most {max_tokens}.",
        )
    return max_tokens, budget


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise TranslationError("stop", "stop must be a string or a list of strings.")
    for sequence in sequences:
        if not sequence.strip():
            raise TranslationError(
                "stop",
                f"The stop sequence {sequence!r} is only whitespace, which Anthropic models"
                " cannot stop at.",
            )
    return list(sequences)


# Tools, tool choice and the json response_format.


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    """The tool standing for a json `response_format`, or None (text, or absent)."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {
            "name": JSON_TOOL_NAME,
            "description": _JSON_TOOL_DESCRIPTION,
            "input_schema": {"type": "object"},
        }
    if kind != "json_schema":
        raise TranslationError(
            "response_format", "response_format.type must be text, json_object or json_schema."
        )
    assert isinstance(response_format, dict)
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(schema, dict):
        raise TranslationError(
            "response_format.json_schema.schema", "response_format.json_schema needs a schema."
        )
    if schema.get("type") != "object":
        raise TranslationError(
            "response_format.json_schema.schema",
            'The schema\'s root must be {"type": "object"}: the answer is a tool\'s input,'
            " an object, for an Anthropic model.",
        )
    name = spec.get("name")
    description = spec.get("description")
    return {
        "name": name if isinstance(name, str) and name else JSON_TOOL_NAME,
        "description": description if isinstance(description, str) else _JSON_TOOL_DESCRIPTION,
        "input_schema": schema,
    }


def _tooling(
    data: dict[str, Any], json_tool: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The `tools` and `tool_choice` of the Anthropic request (the module's docstring)."""
    if json_tool is None and data.get("tools") is None:
        return [], None  # (`tool_choice` without tools is ignored, as below)
    tools = _tools(data.get("tools"))
    names = {tool["name"] for tool in tools}
    choice = _tool_choice(data.get("tool_choice"), names) if tools else None
    if json_tool is not None:
        if json_tool["name"] in names:
            raise TranslationError(
                "response_format",
                f"A tool is named {json_tool['name']!r}, like the response_format's schema:"
                " rename one of them.",
            )
        choice = json_tool_choice(json_tool["name"], bool(tools), choice)
        if choice is None:
            raise TranslationError(
                "tool_choice",
                "A json response_format is honoured with a forced tool call: it cannot be"
                " combined with tool_choice none, required or a named function.",
            )
        tools.append(json_tool)
    elif tools and data.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return tools, choice


def json_tool_choice(
    json_tool: str, offered: bool, choice: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The `tool_choice` that has the model answer through the JSON mode's tool `json_tool`:
    that tool, or any tool when the client's tools are `offered` too (the JSON answer or one
    of them), one call only. None when the client's own `choice` (other than auto) forbids
    forcing a call."""
    if choice is not None and choice["type"] != "auto":
        return None
    forced: dict[str, Any] = {"type": "any"} if offered else {"type": "tool", "name": json_tool}
    # One call: either the JSON answer or one of the client's tools, never both.
    forced["disable_parallel_tool_use"] = True
    return forced


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise TranslationError("tools", "tools must be a list.")
    converted = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise TranslationError(
                f"tools[{index}].type", "Only function tools are supported for Anthropic models."
            )
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise TranslationError(f"tools[{index}].function.name", "A function needs a name.")
        parameters = function.get("parameters")
        anthropic_tool: dict[str, Any] = {
            "name": name,
            "input_schema": parameters
            if isinstance(parameters, dict)
            else {"type": "object", "properties": {}},
        }
        if isinstance(function.get("description"), str):
            anthropic_tool["description"] = function["description"]
        converted.append(anthropic_tool)
    return converted


def _tool_choice(choice: Any, names: set[str]) -> dict[str, Any] | None:
    if choice is None:
        return None
    simple = {"auto": "auto", "none": "none", "required": "any"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not name:
        raise TranslationError(
            "tool_choice",
            'tool_choice must be auto, none, required or {"type": "function", "function":'
            ' {"name": ...}}.',
        )
    if name not in names:
        raise TranslationError("tool_choice", f"tool_choice names {name!r}, which is not a tool.")
    return {"type": "tool", "name": name}


# The answer.


def chat_answer(
    message: dict[str, Any],
    call: MessagesCall,
    *,
    created: int,
    usage: TokenUsage | None = None,
) -> dict[str, Any]:
    """An Anthropic Message as an OpenAI `chat.completion` object. `usage`: the message's,
    when the caller has read it already (a translation in two steps reads it once)."""
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    content = message.get("content")
    for block in content if isinstance(content, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
        elif (
            kind == "tool_use"
            and call.json_tool is not None
            and block.get("name") == call.json_tool
        ):
            texts.append(orjson.dumps(block.get("input") or {}).decode())
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    answer: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if thinking:
        answer["reasoning_content"] = "".join(thinking)
    if tool_calls:
        answer["tool_calls"] = tool_calls
    finish = finish_reason(message.get("stop_reason"), bool(tool_calls), call)
    return {
        "id": chat_id(message.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model") or call.model,
        "choices": [{"index": 0, "message": answer, "logprobs": None, "finish_reason": finish}],
        "usage": openai_usage(usage or from_anthropic(message.get("usage")) or TokenUsage(0, 0)),
    }


def chat_id(message_id: Any) -> str:
    """The chat completion's id for an Anthropic message id (`msg_01X` -> `chatcmpl-01X`)."""
    if not isinstance(message_id, str) or not message_id:
        return "chatcmpl-anthropic"
    return "chatcmpl-" + message_id.removeprefix("msg_")


def finish_reason(stop_reason: Any, called_tools: bool, call: MessagesCall) -> str:
    """OpenAI's finish_reason for Anthropic's stop_reason; `called_tools`: the answer has
    tool calls of the client's (not only the json response_format's tool)."""
    if stop_reason == "tool_use" and call.json_tool is not None and not called_tools:
        return "stop"
    if stop_reason is None:
        return "tool_calls" if called_tools else "stop"
    return _STOP_REASONS.get(stop_reason, "stop")


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    """OpenAI's `usage` object, `prompt_tokens_details` always there (as OpenAI's)."""
    converted = usage.openai()
    converted["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
    return converted
