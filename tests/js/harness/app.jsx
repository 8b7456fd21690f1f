// A small React app around the AI SDK's own `useChat`, for the browser tests
// (tests/browser/test_ai_sdk_use_chat.py). esbuild bundles it once per SDK generation
// (build.mjs maps "ai" and "@ai-sdk/react" to that generation's packages); the test serves
// it from the live server's origin, so every API call is same-origin.
//
// Query parameters: session (the chat's id), key (a Bearer API key), transport ("stock":
// `DefaultChatTransport` with the plain fetch and only the request mapping a stock client
// needs; "copilot": the options of static/copilot/ai-sdk.js), resume ("1": load
// GET …/ui-messages first and mount `useChat({messages, resume: true})`).
//
// The state goes to the DOM (data-testid) and to `window.__chat` after every render:
// {status, error, messages, renders}; `window.__statuses` lists each status shown, in order,
// `window.__errors` each error message;
// `window.__requests` lists every request the transport made.
import { useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { copilotTransportOptions } from "../../../static/copilot/ai-sdk.js";

const params = new URLSearchParams(location.search);
const sessionId = params.get("session");
const headers = { Authorization: `Bearer ${params.get("key")}` };
const transportKind = params.get("transport") ?? "stock";
const resume = params.get("resume") === "1";
const streamUrl = `/api/chat/sessions/${sessionId}/stream`;

window.__requests = [];
window.__statuses = []; // every status the chat showed, in order (a repeat only when it changed back)
window.__errors = []; // every error message the chat showed
function recordingFetch(input, init = {}) {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  window.__requests.push({ method: (init.method ?? "GET").toUpperCase(), url: String(url) });
  return globalThis.fetch(input, init);
}

// What a stock client needs: the API takes {message, client_message_id} (not the SDK's
// {id, messages, trigger, messageId}), and resumes through GET on the same URL (not the
// SDK's default `${api}/${chatId}/stream`).
function stockOptions() {
  return {
    api: streamUrl,
    headers,
    fetch: recordingFetch,
    prepareSendMessagesRequest({ messages, headers: requestHeaders, body }) {
      const last = messages.findLast((m) => m.role === "user");
      const text = last.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
      return { headers: requestHeaders, body: { ...body, message: text, client_message_id: last.id } };
    },
    prepareReconnectToStreamRequest({ headers: requestHeaders }) {
      return { api: streamUrl, headers: requestHeaders };
    },
  };
}

function partView(part, index) {
  if (part.type === "text" || part.type === "reasoning") {
    return (
      <span key={index} data-testid={`part-${part.type}`} data-state={part.state ?? ""}>
        {part.text}
      </span>
    );
  }
  if (part.type.startsWith("tool-")) {
    return (
      <span key={index} data-testid="part-tool" data-tool={part.type.slice(5)} data-state={part.state}>
        {JSON.stringify(part.output ?? part.errorText ?? null)}
      </span>
    );
  }
  return <span key={index} data-testid={`part-${part.type}`}>{JSON.stringify(part.data ?? null)}</span>;
}

let renders = 0;

function Chat({ initialMessages }) {
  const transport = useMemo(
    () =>
      new DefaultChatTransport(
        transportKind === "copilot" ? copilotTransportOptions({ sessionId, headers, fetch: recordingFetch }) : stockOptions(),
      ),
    [],
  );
  const { messages, status, error, sendMessage, stop, resumeStream } = useChat({
    id: sessionId,
    messages: initialMessages,
    resume,
    transport,
  });
  const [input, setInput] = useState("");
  renders += 1;
  if (window.__statuses.at(-1) !== status) window.__statuses.push(status);
  if (error && window.__errors.at(-1) !== error.message) window.__errors.push(error.message);
  window.__chat = { status, error: error ? error.message : null, messages, renders };
  return (
    <main>
      <p data-testid="status">{status}</p>
      {error ? <p data-testid="error">{error.message}</p> : null}
      <ol>
        {messages.map((m) => (
          <li key={m.id} data-testid="message" data-role={m.role} data-id={m.id}>
            {m.parts.map(partView)}
          </li>
        ))}
      </ol>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          sendMessage({ text: input });
          setInput("");
        }}
      >
        <input data-testid="input" value={input} onChange={(event) => setInput(event.target.value)} />
        <button data-testid="send" type="submit">Send</button>
        <button data-testid="stop" type="button" onClick={() => stop()}>Stop</button>
        <button data-testid="resume" type="button" onClick={() => resumeStream()}>Resume</button>
      </form>
    </main>
  );
}

async function main() {
  let initialMessages = [];
  if (resume) {
    const response = await fetch(`/api/chat/sessions/${sessionId}/ui-messages`, { headers });
    initialMessages = (await response.json()).messages;
  }
  window.__initialMessages = initialMessages;
  createRoot(document.getElementById("root")).render(<Chat initialMessages={initialMessages} />);
}

main().catch((error) => {
  window.__bootError = String(error?.stack ?? error);
});
