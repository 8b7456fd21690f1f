// Options for the AI SDK's own `new DefaultChatTransport(...)` (package `ai`, 5.x and 6.x)
// that talk to this API:
//
//   import { DefaultChatTransport } from "ai";
//   import { copilotTransportOptions } from <this file: /static/copilot/ai-sdk.js>;
//   const transport = new DefaultChatTransport(
//     copilotTransportOptions({ sessionId, headers: { Authorization: `Bearer ${key}` } }),
//   );
//
// - sending: `POST {baseUrl}/api/chat/sessions/{sessionId}/stream` with
//   `{message, client_message_id}`: the text of the last user message and its id;
// - resuming (`useChat({resume: true})`, `chat.resumeStream()`):
//   `GET {baseUrl}/api/chat/sessions/{sessionId}/stream` (204 when no turn runs);
// - `stop()`: the SDK aborts the request; this module's `fetch` then sends
//   `POST {baseUrl}/api/chat/sessions/{sessionId}/cancel` once, so the server turn ends too.
//   A request that ends any other way (a closed tab, a finished stream, a resume the SDK
//   replaces with a newer one) cancels nothing: the turn runs on and can be resumed.
//
// No build step and no imports: serve this file as it is, or copy it into an app. (The
// example above names this file without quotes: collectstatic rewrites quoted module
// paths, and a file naming itself would never settle on a hash.)

function headersObject(headers) {
  if (headers == null) return {};
  if (typeof Headers !== "undefined" && headers instanceof Headers) return Object.fromEntries(headers.entries());
  if (Array.isArray(headers)) return Object.fromEntries(headers);
  return { ...headers };
}

async function headersResolve(headers) {
  return headersObject(typeof headers === "function" ? await headers() : headers);
}

function lastUserMessage(messages) {
  for (let i = (messages ?? []).length - 1; i >= 0; i--) {
    if (messages[i].role === "user") return messages[i];
  }
  return undefined;
}

function messageText(message) {
  return (message?.parts ?? [])
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}

/**
 * The options object for `new DefaultChatTransport(...)`.
 *
 * @param {object} options
 * @param {string} options.sessionId  the chat session's id
 * @param {Record<string, string> | Headers | (() => Record<string, string> | Promise<Record<string, string>>)} [options.headers]
 *   sent with every request, the cancel included (e.g. `{Authorization: "Bearer <key>"}`)
 * @param {string} [options.baseUrl]  the API's origin, e.g. `https://copilot.example.com`; "" (same origin) by default
 * @param {object} [options.body]  extra fields for every send (`mode`, `model`, `context`, `delivery`)
 * @param {typeof fetch} [options.fetch]  the fetch to wrap; `globalThis.fetch` by default
 */
export function copilotTransportOptions({ sessionId, headers, baseUrl = "", body, fetch: baseFetch } = {}) {
  if (!sessionId) throw new Error("copilotTransportOptions: sessionId is required");
  const root = `${String(baseUrl).replace(/\/+$/, "")}/api/chat/sessions/${encodeURIComponent(sessionId)}`;
  const streamUrl = `${root}/stream`;
  const cancelUrl = `${root}/cancel`;
  let requestCount = 0; // requests to the stream URL so far: a newer one means an older one was replaced

  function cancelSend() {
    const doFetch = baseFetch ?? globalThis.fetch;
    headersResolve(headers)
      .then((resolved) => doFetch(cancelUrl, { method: "POST", headers: resolved, keepalive: true }))
      .catch(() => {}); // fire and forget: the stream is already closed on this side
  }

  async function copilotFetch(input, init = {}) {
    const doFetch = baseFetch ?? globalThis.fetch;
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const signal = init.signal;
    if (url !== streamUrl || signal == null) return doFetch(input, init);
    const method = (init.method ?? "GET").toUpperCase();
    const number = ++requestCount;
    let finished = false;
    let cancelled = false;
    const onAbort = () => {
      if (finished || cancelled) return;
      // The SDK aborts a resume it replaces with a newer one (not a stop): let the next
      // task show whether a newer request followed this one.
      setTimeout(() => {
        if (finished || cancelled || (method === "GET" && requestCount !== number)) return;
        cancelled = true;
        cancelSend();
      }, 0);
    };
    if (signal.aborted) {
      onAbort();
    } else {
      signal.addEventListener("abort", onAbort, { once: true });
    }
    let response;
    try {
      response = await doFetch(input, init);
    } catch (error) {
      if (!signal.aborted) finished = true;
      throw error;
    }
    if (!response.ok || response.status === 204 || response.body == null) {
      finished = true;
      return response;
    }
    const tracked = response.body.pipeThrough(
      new TransformStream({
        flush() {
          finished = true; // the turn's stream ended on its own: nothing to cancel
          signal.removeEventListener("abort", onAbort);
        },
      }),
    );
    return new Response(tracked, { status: response.status, statusText: response.statusText, headers: response.headers });
  }

  return {
    api: streamUrl,
    headers,
    fetch: copilotFetch,
    prepareSendMessagesRequest({ messages, headers: requestHeaders, body: requestBody }) {
      const message = lastUserMessage(messages);
      const extra = { ...(body ?? {}), ...(requestBody ?? {}) };
      return {
        api: streamUrl,
        headers: requestHeaders,
        body: { ...extra, message: messageText(message), client_message_id: message?.id ?? null },
      };
    },
    prepareReconnectToStreamRequest({ headers: requestHeaders }) {
      return { api: streamUrl, headers: requestHeaders };
    },
  };
}
