"""The protocol plane: translation between the APIs clients speak and the APIs upstreams speak
(OpenAI chat completions, Anthropic Messages, Google's Gemini generateContent, Amazon Bedrock's
Converse). Anthropic's Messages API is the pivot: every other protocol has a pair of
translators to and from it, and the request path chains two where neither side speaks it.
Pure code: request mapping, answer mapping and stream state machines over bytes, no I/O,
importing none of the other planes. The request path (`llm_proxy.proxy`) calls it for a client
whose protocol differs from its upstream's.

* `sse`: an incremental Server-Sent Events reader and writer.
* `errors`: each protocol's error shapes, and an error of one in the shape of the other.
* `refusals`: whether an upstream's error, or its answer, says the prompt is too long for the
  model or refuses on content policy (what the fallback chains of those names are taken on).
* `usage`: token usage with both protocols' meanings (cached tokens in or out of the input).
* `messages_via_chat`: Anthropic Messages clients served by an OpenAI-compatible upstream: the
  request; `messages_answer` the answer, `messages_stream` the stream, `tool_names` the tool
  names OpenAI rejects, shortened and restored.
* `messages_request`: the readers of an Anthropic Messages request that the translators from
  it share (content blocks, text, custom tools, refusals worded with the upstream's name).
* `chat_via_messages`: OpenAI chat-completions clients served by an Anthropic upstream: the
  request and the answer; `chat_conversation` the messages and content parts, `chat_stream`
  the stream.
* `gemini`: Anthropic Messages requests as Gemini `generateContent` requests; `gemini_response`
  Gemini's answers, usage and errors as Messages', `gemini_stream` its stream, `gemini_schema`
  tool schemas in Gemini's OpenAPI subset, `gemini_embeddings` OpenAI embeddings from
  `embedContent`.
* `gemini_client`: Gemini clients (the google-genai SDK): their requests as Messages requests,
  `gemini_client_contents` their contents as turns; `gemini_client_answer` Messages answers
  and errors as Gemini's, the model list; `gemini_client_stream` the stream.
* `converse`: Anthropic Messages requests as Bedrock Converse requests; `converse_response`
  the answers, usage and errors back; `converse_stream` ConverseStream's events, `eventstream`
  AWS's binary event-stream framing.
* `stream`: the interface of a stream translator, as the relay drives it, and the skeletons the
  translators to (`MessagesOut`) and from (`MessagesIn`) an Anthropic Messages stream share.
"""
