"""Gemini-native clients (Google's `google-genai` SDK, the generateContent API) served by an
Anthropic (Messages API) upstream: the request and countTokens' request (`contents` and
`systemInstruction` read by `gemini_client_contents`). The answer, errors, the model list and
countTokens' answer are `gemini_client_answer`'s (re-exported here); the stream is
`gemini_client_stream.GeminiFromMessages`.

Google's JSON parser takes both spellings of a field (`inlineData` and `inline_data`), and the
SDK sends both (`inlineData.mime_type`, `thinkingConfig.thinking_budget`): every field is read
under either name. A model named `models/X` is `X`.

Request (`messages_from_gemini`), what each Gemini field becomes:

* `systemInstruction` (a Content, or a string) -> `system` text blocks.
* `contents`: role `user` (or none, or `function`/`tool`, which older clients use for function
  responses) -> `user`, `model` -> `assistant`. Parts: `text` (text of only whitespace dropped,
  as Anthropic refuses it); `inlineData` (base64, either alphabet) of a JPEG, PNG, GIF or WebP
  image -> an `image` block, of a PDF -> a `document`, of `text/plain` -> a text `document`
  (any other type is a 400); `fileData` with an http(s) `fileUri` of an image or a PDF -> a
  `url` source (a `gs://` or Files API URI is a 400: the upstream cannot fetch it);
  `functionCall` -> `tool_use` (its `id`, else `call_<content>_<part>`); `functionResponse` ->
  `tool_result` in the user turn, paired by `id`, else with the earliest unanswered call of its
  name (the SDK's automatic function calling sends no id). The result's content is the text of
  `response.output` or `response.result` when that is the response's only key and a string,
  else the JSON of `response`; a response whose only key is `error` is an error result; image
  `parts` of a response follow its text. Thought parts (`thought: true`): a run of them up to
  one carrying a `thoughtSignature` of ours (see `gemini_client_answer`) is that thinking
  block, the run spanning consecutive model contents (the SDK's chat records a streamed
  answer as one content per chunk); thoughts without one are dropped (Anthropic needs the
  signature). Consecutive
  turns of one role are one turn (tool results first in it, as Anthropic requires). A
  conversation that starts with the model gets a user turn of "." before it, Anthropic
  requires a user turn first; a last model turn (a prefill) loses its trailing whitespace.
  Tool ids keep `[A-Za-z0-9_-]`.
* `generationConfig`: `maxOutputTokens` -> `max_tokens` (else `default_max_tokens`);
  `temperature` (Gemini's 0-2 range, Anthropic's 0-1: above 1 becomes 1), `topP`, `topK`,
  `stopSequences` (a sequence of only whitespace is a 400). `thinkingConfig`: a positive
  `thinkingBudget` -> `thinking.budget_tokens` (at least 1024, Anthropic's minimum), -1
  (dynamic) -> 8192, 0 -> no thinking; `thinkingLevel` minimal/low/medium/high ->
  1024/2048/8192/24576; no thinkingConfig: no thinking. Gemini counts thoughts within
  `maxOutputTokens` as Anthropic does within `max_tokens`, which must exceed the budget: when
  it does not, `max_tokens` becomes budget + `max_tokens`. With thinking, temperature, topP and
  topK are dropped (Anthropic refuses them). Thinking is off when a function call is forced
  (mode ANY, or JSON mode: Anthropic refuses the pair) and when the last model turn called
  functions without a signed thought before them (Anthropic then requires that thinking
  block). `includeThoughts` decides whether the answer shows the thoughts. Dropped:
  `presencePenalty`, `frequencyPenalty`, `seed`, `mediaResolution`, `imageConfig`. Refused:
  `candidateCount` > 1, `responseLogprobs`, `logprobs`, `responseModalities` other than TEXT,
  `speechConfig`, a `responseMimeType` other than text/plain and application/json.
* JSON mode (`responseMimeType` application/json): a tool (`json_answer`) whose input schema
  is `responseJsonSchema`, else `responseSchema` as JSON Schema, else any object, forced by
  `tool_choice` with parallel calls off; its input is the answer's text. With the client's
  functions and mode AUTO (or none), all are offered and one call is required (`any`): the
  model answers in JSON or calls a function. A schema whose root is not an object, another
  mode, or a function named `json_answer` is a 400 (an Anthropic tool's input is an object).
* `tools`: `functionDeclarations` -> tools; `parametersJsonSchema` as it is, `parameters` (the
  OpenAPI subset Gemini takes) as JSON Schema: types lowercased, `nullable` -> a `null` type
  (and `null` in its `enum`), `propertyOrdering` and `example` dropped. Any other tool (Google
  Search, code execution, URL context...) is a 400. `toolConfig.functionCallingConfig.mode`:
  AUTO (and VALIDATED) -> `auto`, NONE -> `none`, ANY -> `any`, or `tool` when
  `allowedFunctionNames` names exactly one function (several: `any` over all the tools, the
  upstream cannot restrict it to them).
* `cachedContent` is a 400: its contents live at Google, the upstream cannot read them.
  Dropped: `safetySettings`, `labels`, `serviceTier`, and fields unknown here.
"""

from __future__ import annotations

from typing import Any, Final

from llm_proxy.protocols.chat_via_messages import (
    MIN_THINKING_BUDGET,
    THINKING_BUDGETS,
    json_tool_choice,
)
from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.gemini_client_answer import (
    FINISH_REASONS,
    GENERATION_METHODS,
    GOOGLE_STATUSES,
    MODELS_PAGE_SIZE,
    GeminiClientCall,
    anthropic_to_gemini_error,
    count_tokens_answer,
    error_object,
    finish_reason,
    function_call_part,
    gemini_answer,
    gemini_error,
    gemini_model,
    gemini_models,
    google_status,
    model_name,
    openai_to_gemini_error,
    response_id,
    thought_part,
    usage_metadata,
    wrap_signature,
)
from llm_proxy.protocols.gemini_client_contents import (
    FIRST_USER_TEXT,
    IMAGE_TYPES,
    as_list,
    as_object,
    camel_case,
    camel_fields,
    conversation,
    field,
    snake_spellings,
    system_blocks,
    unsigned_tool_use,
    unwrap_signature,
    without_thinking,
)

__all__ = [
    "DYNAMIC_THINKING_BUDGET",
    "FINISH_REASONS",
    "FIRST_USER_TEXT",
    "GENERATION_METHODS",
    "GOOGLE_STATUSES",
    "IMAGE_TYPES",
    "JSON_TOOL_NAME",
    "MODELS_PAGE_SIZE",
    "GeminiClientCall",
    "anthropic_to_gemini_error",
    "count_tokens_answer",
    "count_tokens_request",
    "error_object",
    "field",
    "finish_reason",
    "function_call_part",
    "gemini_answer",
    "gemini_error",
    "gemini_model",
    "gemini_models",
    "google_status",
    "json_schema",
    "messages_from_gemini",
    "model_name",
    "openai_to_gemini_error",
    "response_id",
    "thought_part",
    "unwrap_signature",
    "usage_metadata",
    "wrap_signature",
]

JSON_TOOL_NAME: Final = "json_answer"
_JSON_TOOL_DESCRIPTION: Final = (
    "Give your final answer by calling this tool: its input is the answer, a JSON object"
    " that follows the schema."
)
DYNAMIC_THINKING_BUDGET: Final = 8192  # thinkingBudget -1: the model decides, "medium" here
_FUNCTION_MODES: Final = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "any", "NONE": "none"}
_SCHEMA_DROPPED: Final = frozenset({"propertyOrdering", "example"})
_SCHEMA_INTEGERS: Final = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"}
)
# The generationConfig fields `_refuse_unsupported` reads, and the sampling parameters: their
# absence is one set operation (most configs have few fields).
_REFUSABLE: Final = frozenset(
    {
        "candidateCount",
        "responseLogprobs",
        "logprobs",
        "speechConfig",
        "responseModalities",
        "responseMimeType",
    }
)
_SAMPLING: Final = frozenset({"temperature", "topP", "topK"})
# The snake_case spellings of the fields read (`camel_fields`).
_BODY_SPELLINGS: Final = snake_spellings(
    "cachedContent", "generationConfig", "systemInstruction", "toolConfig"
)
_CONFIG_SPELLINGS: Final = snake_spellings(
    *_REFUSABLE,
    *_SAMPLING,
    "maxOutputTokens",
    "stopSequences",
    "thinkingConfig",
    "responseJsonSchema",
    "responseSchema",
)
_THINKING_SPELLINGS: Final = snake_spellings("thinkingBudget", "thinkingLevel", "includeThoughts")


# The request.


def messages_from_gemini(
    body: dict[str, Any], *, model: str, stream: bool, default_max_tokens: int = 4096
) -> tuple[dict[str, Any], GeminiClientCall]:
    """A Gemini generateContent request body as an Anthropic Messages request body for the
    model `model`, and what its answer's translation needs. Raises `TranslationError` for what
    Anthropic cannot honour (see the module's docstring)."""
    body = camel_fields(body, _BODY_SPELLINGS)
    if body.get("cachedContent") is not None:
        raise TranslationError(
            "cachedContent",
            "cachedContent is not supported: cached contents are stored at Google, where this"
            " model's provider cannot read them. Send the contents in the request.",
        )
    config = camel_fields(
        as_object(body.get("generationConfig"), "generationConfig"), _CONFIG_SPELLINGS
    )
    if not config.keys().isdisjoint(_REFUSABLE):  # (most configs have none of them)
        _refuse_unsupported(config)
    instruction = body.get("systemInstruction")
    system = system_blocks(instruction) if instruction is not None else []
    messages = conversation(body.get("contents"))
    declared = body.get("tools")
    tools = _tools(declared) if declared is not None else []
    tool_config = body.get("toolConfig")
    tool_choice = _tool_choice(tool_config, tools) if tool_config is not None else None
    json_tool = None
    if config.get("responseMimeType") == "application/json":
        json_tool = _json_tool(config)
        tool_choice = _json_choice(json_tool, tools, tool_choice)
        tools.append(json_tool)
    thinking_config = config.get("thinkingConfig")
    thinking = None
    shown = False  # includeThoughts
    if thinking_config is not None:
        thoughts = camel_fields(as_object(thinking_config, "thinkingConfig"), _THINKING_SPELLINGS)
        thinking = _thinking(thoughts)
        shown = thoughts.get("includeThoughts") is True
    if thinking is not None and (
        (tool_choice is not None and tool_choice["type"] in ("any", "tool"))
        or unsigned_tool_use(messages)
    ):
        thinking = None
    if thinking is None:
        messages = without_thinking(messages)
    name = model_name(model)
    anthropic: dict[str, Any] = {"model": name, "messages": messages}
    if system:
        anthropic["system"] = system
    if tools:
        anthropic["tools"] = tools
        if tool_choice is not None:
            anthropic["tool_choice"] = tool_choice
    _length_and_sampling(anthropic, config, thinking, default_max_tokens)
    stop = config.get("stopSequences")
    if stop is not None and _stop_sequences(stop):
        anthropic["stop_sequences"] = stop
    anthropic["stream"] = stream
    call = GeminiClientCall(  # (positional: made per request, and cheaper so)
        name,
        stream,
        thinking is not None and shown,
        JSON_TOOL_NAME if json_tool is not None else None,
    )
    return anthropic, call


def _refuse_unsupported(config: dict[str, Any]) -> None:
    count = config.get("candidateCount")
    if count is not None and count != 1:
        raise TranslationError(
            "generationConfig.candidateCount",
            "candidateCount above 1 is not supported: this model returns one candidate.",
        )
    for name in ("responseLogprobs", "logprobs"):
        if config.get(name):
            raise TranslationError(
                f"generationConfig.{name}", "Log probabilities are not supported by this model."
            )
    if config.get("speechConfig") is not None:
        raise TranslationError(
            "generationConfig.speechConfig", "Audio output is not supported by this model."
        )
    modalities = as_list(config.get("responseModalities"), "generationConfig.responseModalities")
    if any(str(modality).upper() != "TEXT" for modality in modalities):
        raise TranslationError(
            "generationConfig.responseModalities", "This model answers with text only."
        )
    mime = config.get("responseMimeType")
    if mime is not None and mime not in ("text/plain", "application/json"):
        raise TranslationError(
            "generationConfig.responseMimeType",
            f"responseMimeType {mime!r} is not supported: this model answers in text/plain or"
            " application/json.",
        )


def _thinking(config: dict[str, Any]) -> int | None:
    """The thinking budget of a thinkingConfig (its fields under camelCase names); None: no
    thinking."""
    budget = config.get("thinkingBudget")
    level = config.get("thinkingLevel")
    if budget is not None:
        if type(budget) is not int or budget < -1:  # (bool is not an integer here)
            raise TranslationError(
                "generationConfig.thinkingConfig.thinkingBudget",
                "thinkingBudget must be -1 (dynamic), 0 (off) or a positive integer.",
            )
        if budget == 0:
            return None
        return DYNAMIC_THINKING_BUDGET if budget == -1 else max(budget, MIN_THINKING_BUDGET)
    if level is None or level == "THINKING_LEVEL_UNSPECIFIED":
        # includeThoughts alone asks for the model's default thinking, and to see it.
        shown = config.get("includeThoughts") is True
        return DYNAMIC_THINKING_BUDGET if shown or level is not None else None
    known = THINKING_BUDGETS.get(str(level).lower())
    if known is None:
        raise TranslationError(
            "generationConfig.thinkingConfig.thinkingLevel",
            "thinkingLevel must be MINIMAL, LOW, MEDIUM or HIGH.",
        )
    return int(known)


def _length_and_sampling(
    anthropic: dict[str, Any], config: dict[str, Any], budget: int | None, default: int
) -> None:
    """`max_tokens` and thinking, else the sampling parameters, put in `anthropic`."""
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is None:
        max_tokens = default
    elif type(max_tokens) is not int or max_tokens < 1:  # (bool is not an integer here)
        raise TranslationError(
            "generationConfig.maxOutputTokens", "maxOutputTokens must be a positive integer."
        )
    if budget is not None:
        if max_tokens <= budget:
            max_tokens += budget
        anthropic["max_tokens"] = max_tokens
        anthropic["thinking"] = {"type": "enabled", "budget_tokens": budget}
        return
    anthropic["max_tokens"] = max_tokens
    if config.keys().isdisjoint(_SAMPLING):  # (most requests set none of them)
        return
    temperature = config.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        anthropic["temperature"] = min(temperature, 1.0)
    top_p = config.get("topP")
    if top_p is not None:
        anthropic["top_p"] = top_p
    top_k = config.get("topK")
    if isinstance(top_k, int | float) and not isinstance(top_k, bool):
        anthropic["top_k"] = int(top_k)  # Gemini's topK is a float in the API's schema


def _stop_sequences(stop: Any) -> list[str]:
    sequences = as_list(stop, "generationConfig.stopSequences")
    for sequence in sequences:
        if not isinstance(sequence, str) or not sequence.strip():
            raise TranslationError(
                "generationConfig.stopSequences",
                f"The stop sequence {sequence!r} is not text with other characters than"
                " whitespace, which this model cannot stop at.",
            )
    return sequences


# Tools.


def _tools(tools: Any) -> list[dict[str, Any]]:
    converted = []
    for index, tool in enumerate(as_list(tools, "tools")):
        tool = as_object(tool, f"tools[{index}]")
        for name, value in tool.items():
            camel = camel_case(name)
            if camel != "functionDeclarations" and value is not None:
                raise TranslationError(
                    f"tools[{index}].{camel}",
                    f"The {camel} tool is not supported: this model takes function"
                    " declarations only.",
                )
        declarations = field(tool, "functionDeclarations")
        for number, declaration in enumerate(
            as_list(declarations, f"tools[{index}].functionDeclarations")
        ):
            param = f"tools[{index}].functionDeclarations[{number}]"
            converted.append(_tool(as_object(declaration, param), param))
    return converted


def _tool(declaration: dict[str, Any], param: str) -> dict[str, Any]:
    name = declaration.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{param}.name", "A function declaration needs a name.")
    schema = field(declaration, "parametersJsonSchema")
    if schema is None:
        parameters = field(declaration, "parameters")
        schema = (
            json_schema(as_object(parameters, f"{param}.parameters"))
            if parameters is not None
            else {"type": "object", "properties": {}}
        )
    tool: dict[str, Any] = {"name": name, "input_schema": schema}
    if isinstance(declaration.get("description"), str):
        tool["description"] = declaration["description"]
    return tool


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Gemini's OpenAPI-subset Schema as JSON Schema (the module's docstring)."""
    out: dict[str, Any] = {}
    nullable = False
    for key, value in schema.items():
        name = camel_case(key)
        if name in _SCHEMA_DROPPED:
            continue
        if name == "nullable":
            nullable = value is True
        elif name == "type":
            if isinstance(value, str) and value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif name == "properties" and isinstance(value, dict):
            out["properties"] = {
                prop: json_schema(sub) if isinstance(sub, dict) else sub
                for prop, sub in value.items()
            }
        elif name == "items" and isinstance(value, dict):
            out["items"] = json_schema(value)
        elif name == "anyOf" and isinstance(value, list):
            out["anyOf"] = [json_schema(sub) if isinstance(sub, dict) else sub for sub in value]
        elif name in _SCHEMA_INTEGERS and isinstance(value, str) and value.isdigit():
            out[name] = int(value)  # int64 fields are strings in Google's JSON
        else:
            out[name] = value
    if nullable:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _json_tool(config: dict[str, Any]) -> dict[str, Any]:
    """The tool standing for JSON mode (the module's docstring)."""
    schema = config.get("responseJsonSchema")
    param = "generationConfig.responseJsonSchema"
    if schema is None and config.get("responseSchema") is not None:
        param = "generationConfig.responseSchema"
        schema = json_schema(as_object(config.get("responseSchema"), param))
    if schema is None:
        schema = {"type": "object"}
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise TranslationError(
            param,
            'The schema\'s root must be {"type": "object"}: this model answers in JSON through'
            " a tool's input, which is an object.",
        )
    return {"name": JSON_TOOL_NAME, "description": _JSON_TOOL_DESCRIPTION, "input_schema": schema}


def _json_choice(
    json_tool: dict[str, Any], tools: list[dict[str, Any]], choice: dict[str, Any] | None
) -> dict[str, Any]:
    if any(tool["name"] == json_tool["name"] for tool in tools):
        raise TranslationError(
            "tools",
            f"A function is named {json_tool['name']!r}, the name JSON mode's tool takes here:"
            " rename it.",
        )
    forced = json_tool_choice(json_tool["name"], bool(tools), choice)
    if forced is None:
        raise TranslationError(
            "toolConfig.functionCallingConfig.mode",
            "JSON mode is honoured with a forced tool call: it cannot be combined with"
            " function calling mode ANY or NONE.",
        )
    return forced


def _tool_choice(tool_config: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    calling = as_object(
        field(as_object(tool_config, "toolConfig"), "functionCallingConfig"),
        "toolConfig.functionCallingConfig",
    )
    mode = field(calling, "mode")
    if mode is None or mode == "MODE_UNSPECIFIED":
        return None
    choice = _FUNCTION_MODES.get(str(mode).upper())
    if choice is None:
        raise TranslationError(
            "toolConfig.functionCallingConfig.mode", "mode must be AUTO, ANY, NONE or VALIDATED."
        )
    allowed = as_list(
        field(calling, "allowedFunctionNames"),
        "toolConfig.functionCallingConfig.allowedFunctionNames",
    )
    names = {tool["name"] for tool in tools}
    for name in allowed:
        if name not in names:
            raise TranslationError(
                "toolConfig.functionCallingConfig.allowedFunctionNames",
                f"allowedFunctionNames names {name!r}, which no function declaration is.",
            )
    if choice == "any" and len(allowed) == 1:
        return {"type": "tool", "name": allowed[0]}
    return {"type": choice}


# countTokens.

_COUNTED: Final = ("model", "messages", "system", "tools", "tool_choice", "thinking")


def count_tokens_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A countTokens body (`contents`, or a whole `generateContentRequest`) as an Anthropic
    /v1/messages/count_tokens body."""
    request = field(body, "generateContentRequest")
    if request is None:
        request = {"contents": field(body, "contents")}
    request = as_object(request, "generateContentRequest")
    messages, _ = messages_from_gemini(request, model=model, stream=False)
    return {key: messages[key] for key in _COUNTED if key in messages}
