"""A fake OpenAI API (and Anthropic's, Gemini's, Vertex AI's and Bedrock's) for loopback use:
offline demos (`llm-proxy mock-upstream`), the tests and the benchmark. Deterministic output in
OpenAI's shapes (and each other API's own), as the
official SDK reads them:

* chat and legacy completions (streamed or not), embeddings, `GET /v1/models` (`chat`); a chat
  answer calls the offered tools, quotes a tool result, and streams with the quirks of
  OpenAI-compatible servers when asked (`chat_answer`)
* Anthropic's Messages API: `POST /v1/messages` (streamed or not) and
  `/v1/messages/count_tokens`, checked and failing as Anthropic does, in its error shape
  (`anthropic`); its answers: text, a tool_use, thinking (`anthropic_answer`)
* Google AI Studio's Gemini API: `models/{model}:generateContent`, `:streamGenerateContent`,
  `:countTokens`, `:embedContent`, `:batchEmbedContents`, the model list (`gemini`)
* Vertex AI: Google's models as Gemini's, Anthropic's through `rawPredict` /
  `:streamRawPredict`, a bearer token required, a token endpoint (`vertex`)
* Amazon Bedrock's Converse and ConverseStream (AWS event-stream frames), a SigV4
  `Authorization` required, not verified (`bedrock`)
* the Responses API: create (streamed as its named events), retrieve, delete, cancel, input
  items; a `previous_response_id` must name a response this instance stored (`responses`)
* images (generate; edit and variation as multipart), audio speech (bytes, streamed in chunks),
  transcriptions and translations (whose text reports the upload's size and SHA-256) (`media`)
* moderations, and a Cohere/Jina-style `POST /v1/rerank` (`scoring`)
* files (kept on disk in a temporary directory, bounded), batches, vector stores and their files
  (`objects`)

The app is wired in `app`; what an instance is and remembers in `state`; errors in OpenAI's shape
in `errors`; reading requests and writing answers in `wire` (multipart bodies in `forms`).

Each instance has a name (`MockOptions.name`, `--name`, default "mock"). Every id it makes
carries it (`resp_<name>`, `resp_<name>_2`, ...; likewise `file-`, `batch_`, `vs_`) and every
answer names it in `x-mock-instance`, so a test with two instances can tell which one owns an
object and which one answered. Unknown ids and paths get OpenAI's error shape.

Behaviour can be set per request through extra body fields (which also proves the proxy forwards
unknown fields):

* `mock_chunks`: number of content chunks in a stream (default: the server's `--chunks`)
* `mock_delay_ms`: delay between stream chunks (default: `--delay-ms`; speech: none)
* `mock_status`: answer with this HTTP status and an OpenAI-shaped error instead (also as a
  multipart form field)
* `mock_content`: the reply text for non-streaming calls
* `mock_bytes`: the size of a speech answer (default: `MockOptions.speech_bytes`)
* `mock_quirks`: chat stream quirks for this request, a list (added to `--quirks`)
* on `/v1/messages`: `mock_status` with `mock_error_type` and `mock_retry_after`, an Anthropic
  error; `mock_error_after`: an `event: error` after that many deltas; `mock_cache_read_tokens`,
  `mock_cache_write_tokens`: the usage's cache fields
"""

from llm_proxy.testing.mock.anthropic_answer import (
    Answer,
    ToolUse,
    answer_events,
    anthropic_stream_events,
    count_input_tokens,
    message,
    plan_answer,
)
from llm_proxy.testing.mock.app import create_mock_app, run_mock
from llm_proxy.testing.mock.chat import stream_events
from llm_proxy.testing.mock.chat_answer import (
    ChatAnswer,
    ToolCall,
    chat_message,
    chat_stream_events,
    plan_chat,
)
from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.forms import Upload
from llm_proxy.testing.mock.media import PNG, audio_bytes, audio_chunks
from llm_proxy.testing.mock.responses import response_stream_events
from llm_proxy.testing.mock.scoring import FLAG
from llm_proxy.testing.mock.state import (
    OPTIONS,
    QUIRKS,
    RECORDED,
    STATE,
    MockOptions,
    MockState,
    Recorded,
)
from llm_proxy.testing.mock.tools import pieces, schema_value

__all__ = [
    "FLAG",
    "OPTIONS",
    "PNG",
    "QUIRKS",
    "RECORDED",
    "STATE",
    "Answer",
    "ChatAnswer",
    "MockError",
    "MockOptions",
    "MockState",
    "Recorded",
    "ToolCall",
    "ToolUse",
    "Upload",
    "answer_events",
    "anthropic_stream_events",
    "audio_bytes",
    "audio_chunks",
    "chat_message",
    "chat_stream_events",
    "count_input_tokens",
    "create_mock_app",
    "message",
    "pieces",
    "plan_answer",
    "plan_chat",
    "response_stream_events",
    "run_mock",
    "schema_value",
    "stream_events",
]
