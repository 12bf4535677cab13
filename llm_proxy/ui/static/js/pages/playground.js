// Playground: a chat through the proxy's own /v1/chat/completions with a chosen master key,
// streamed as the SDK would see it, with the provider that served it, the proxy's overhead
// and the request id (a link to the request log). The master key stays in this page only.

import { append, clear, field, fmtMs, fmtNumber, h, notice } from "../dom.js";

async function models(key) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const response = await fetch("/v1/models", { headers, credentials: "omit", cache: "no-store" });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${response.status}`);
  return body.data.map((m) => m.id).sort();
}

// Server-sent events from a fetch body: calls onData with each `data:` payload.
async function readEvents(response, onData, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) onData(data);
    }
  }
}

export async function render(root) {
  const key = h("input", { type: "password", name: "master-key", autocomplete: "off", placeholder: "sk-…" });
  const model = h("select", { name: "model", required: true }, h("option", { value: "" }, "Load the models first"));
  const load = h("button", { type: "button", class: "secondary" }, "Load models");
  const system = h("input", { name: "system", placeholder: "You are a helpful assistant." });
  const message = h("textarea", { name: "message", rows: "3", required: true });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", class: "secondary", disabled: true }, "Stop");
  const reset = h("button", { type: "button", class: "secondary" }, "New chat");
  const status = h("div", { "aria-live": "assertive" });
  const transcript = h("div", { class: "transcript", "aria-live": "polite", "aria-label": "Conversation" });
  const facts = h("dl", { class: "facts", "aria-label": "Last response" });
  let messages = [];
  let controller = null;

  async function loadModels() {
    clear(status);
    try {
      const ids = await models(key.value.trim());
      append(clear(model), ids.map((id) => h("option", { value: id }, id)));
      if (!ids.length) model.append(h("option", { value: "" }, "No models"));
    } catch (error) {
      status.append(notice("error", `Could not list models: ${error.message}`));
    }
  }
  load.addEventListener("click", loadModels);
  key.addEventListener("change", loadModels); // a new key may see other models
  reset.addEventListener("click", () => {
    messages = [];
    clear(transcript);
    clear(facts);
  });
  stop.addEventListener("click", () => controller && controller.abort());

  function fact(name, value) {
    return h("div", {}, h("dt", {}, name), h("dd", { dataset: { fact: name } }, value));
  }

  async function chat(event) {
    event.preventDefault();
    clear(status);
    const text = message.value.trim();
    if (!text || !model.value) {
      status.append(notice("error", model.value ? "Write a message first." : "Choose a model (Load models)."));
      return;
    }
    messages.push({ role: "user", content: text });
    transcript.append(h("div", { class: "msg user" }, h("span", { class: "who" }, "You"), h("p", {}, text)));
    const reply = h("p", { class: "reply" });
    const bubble = h("div", { class: "msg assistant", "aria-busy": "true" }, h("span", { class: "who" }, model.value), reply);
    transcript.append(bubble);
    message.value = "";
    send.disabled = true;
    stop.disabled = false;
    controller = new AbortController();
    const started = performance.now();
    let firstToken = null;
    let usage = null;
    const headers = { "Content-Type": "application/json" };
    if (key.value.trim()) headers.Authorization = `Bearer ${key.value.trim()}`;
    const all = system.value.trim() ? [{ role: "system", content: system.value.trim() }, ...messages] : messages;
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers,
        credentials: "omit",
        signal: controller.signal,
        body: JSON.stringify({ model: model.value, messages: all, stream: true, stream_options: { include_usage: true } }),
      });
      const requestId = response.headers.get("x-request-id");
      append(clear(facts), [
        fact("Status", String(response.status)),
        fact("Provider", response.headers.get("x-llm-proxy-provider") || "–"),
        fact("Proxy overhead", response.headers.get("x-llm-proxy-overhead-ms") ? fmtMs(Number(response.headers.get("x-llm-proxy-overhead-ms"))) : "–"),
        fact("Request id", requestId ? h("a", { href: `#/logs/request/${encodeURIComponent(requestId)}` }, requestId) : "–"),
      ]);
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new Error((body && body.error && body.error.message) || `HTTP ${response.status}`);
      }
      await readEvents(
        response,
        (data) => {
          if (data === "[DONE]") return;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message || "The stream ended with an error.");
          if (chunk.usage) usage = chunk.usage;
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) {
            if (firstToken === null) firstToken = performance.now() - started;
            reply.append(delta.content);
          }
        },
        controller.signal,
      );
      messages.push({ role: "assistant", content: reply.textContent });
      append(facts, [
        fact("Time to first token", firstToken === null ? "–" : fmtMs(firstToken)),
        fact("Total time", fmtMs(performance.now() - started)),
        fact("Tokens", usage ? `${fmtNumber(usage.prompt_tokens)} in · ${fmtNumber(usage.completion_tokens)} out` : "–"),
      ]);
    } catch (error) {
      messages.pop();
      status.append(notice("error", error.name === "AbortError" ? "Stopped." : error.message));
    } finally {
      bubble.removeAttribute("aria-busy");
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  }

  const form = h(
    "form",
    { class: "card playground", "aria-label": "Chat", onsubmit: chat },
    h(
      "div",
      { class: "form-grid" },
      field("Master key", key, "The key the request is sent with (empty when the proxy has no keys). Kept in this page only."),
      h("div", { class: "field-with-button" }, field("Model", model), load),
      field("System prompt", system),
    ),
    field("Message", message),
    h("div", { class: "actions" }, reset, stop, send),
    status,
  );
  message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  root.append(form, h("section", { "aria-label": "Reply" }, transcript, facts));
  return () => controller && controller.abort();
}
