// Drives the AI SDK's own DefaultChatTransport, built with static/copilot/ai-sdk.js, against
// a running server. Reads {baseUrl, sessionId, key, mode, text?, messageId?} as JSON on stdin;
// prints one JSON object:
// - mode "send": sends `text` as a user message and reads the whole UI message stream:
//   {types, text, message} (`message`: the SDK's readUIMessageStream fold of the stream);
// - mode "stop": sends `text`, aborts after the first text delta (what `chat.stop()` does)
//   and waits until the module's cancel request has been answered:
//   {types, text, abortedAt, cancel: {status, body}} (abortedAt: epoch ms);
// - mode "reconnect": `reconnectToStream` (what `useChat({resume: true})` calls):
//   {none: true} when no turn runs, else {types, text, message};
// - mode "replace-resume": starts a reconnect and, at once, aborts it and starts another one,
//   as the SDK's Chat does when a resume replaces a running one; reads the second to its end.
// With `stock: true` the transport keeps the API's URLs and body but the plain fetch.
// Every result carries cancelCount: the cancel requests sent.
import { DefaultChatTransport, readUIMessageStream } from "ai";
import { copilotTransportOptions } from "../../static/copilot/ai-sdk.js";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { baseUrl, sessionId, key, mode, text, messageId, stock } = JSON.parse(input);
const headers = { Authorization: `Bearer ${key}` };

const cancels = [];
function recordingFetch(url, init) {
  const response = globalThis.fetch(url, init);
  if (String(url).endsWith("/cancel")) {
    cancels.push(response.then(async (r) => ({ status: r.status, body: await r.json() })));
  }
  return response;
}

const options = copilotTransportOptions({ sessionId, headers, baseUrl, fetch: recordingFetch });
if (stock) options.fetch = recordingFetch; // the stock fetch: stop() only aborts the request
const transport = new DefaultChatTransport(options);

function userMessages() {
  return [{ id: messageId, role: "user", parts: [{ type: "text", text }] }];
}

async function readAll(stream) {
  const [forChunks, forMessage] = stream.tee();
  const chunks = [];
  const reading = (async () => {
    for await (const chunk of forChunks) chunks.push(chunk);
  })();
  let message = null;
  for await (const m of readUIMessageStream({ stream: forMessage, terminateOnError: true })) message = m;
  await reading;
  const streamed = chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join("");
  return { types: chunks.map((c) => c.type), text: streamed, message, chunks };
}

async function main() {
  if (mode === "send") {
    const stream = await transport.sendMessages({
      chatId: sessionId,
      messages: userMessages(),
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: new AbortController().signal,
    });
    return await readAll(stream);
  }
  if (mode === "stop") {
    const controller = new AbortController();
    const stream = await transport.sendMessages({
      chatId: sessionId,
      messages: userMessages(),
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: controller.signal,
    });
    const types = [];
    let streamed = "";
    let abortedAt = null;
    const reader = stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        types.push(value.type);
        if (value.type === "text-delta") {
          streamed += value.delta;
          abortedAt = Date.now();
          controller.abort();
        }
      }
    } catch (error) {
      if (error?.name !== "AbortError" && !controller.signal.aborted) throw error;
    }
    // The cancel is sent on the task after the abort; wait for it to be answered.
    const deadline = Date.now() + 10_000;
    while (cancels.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const cancel = cancels.length ? await cancels[0] : null;
    return { types, text: streamed, abortedAt, cancel, cancelCount: cancels.length };
  }
  if (mode === "reconnect") {
    const stream = await transport.reconnectToStream({ chatId: sessionId });
    if (stream == null) return { none: true, cancelCount: cancels.length };
    return { ...(await readAll(stream)), cancelCount: cancels.length };
  }
  if (mode === "replace-resume") {
    const replaced = new AbortController();
    const first = transport.reconnectToStream({ chatId: sessionId, abortSignal: replaced.signal });
    replaced.abort();
    const second = transport.reconnectToStream({ chatId: sessionId, abortSignal: new AbortController().signal });
    await first.then((s) => s?.cancel()).catch(() => {});
    const stream = await second;
    if (stream == null) return { none: true };
    return await readAll(stream);
  }
  throw new Error(`unknown mode ${mode}`);
}

try {
  const result = await main();
  // Give a stray cancel (there must be none outside "stop") the chance to show up.
  await new Promise((r) => setTimeout(r, 50));
  process.stdout.write(JSON.stringify({ ...result, cancelCount: cancels.length }));
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
