// The chunks of a turn whose tool asked first, read by the AI SDK itself.
// Reads {chunks, messages?} as JSON on stdin: the SSE chunks of one turn and, optionally,
// the saved transcript (GET …/ui-messages). The chunks go through the SDK's own
// DefaultChatTransport exactly as a stock `useChat` receives them over HTTP (an SSE body
// from a local fetch: the transport parses each event against the SDK's
// uiMessageChunkSchema and fails on a chunk type it does not know), then through
// readUIMessageStream (terminateOnError). Prints {message, states, valid}: `message` is
// the fold, `states` its tool parts' states after every chunk that changed one, and
// `valid` the result of validateUIMessages on the transcript (true, or the error text).
// Exit 1 when the stream is refused.
import { DefaultChatTransport, readUIMessageStream, validateUIMessages } from "ai";

let input = "";
for await (const chunk of process.stdin) input += chunk;

async function streamOf(chunks) {
  const body = chunks.map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`).join("") + "data: [DONE]\n\n";
  const fetch = async () =>
    new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream", "x-vercel-ai-ui-message-stream": "v1" } });
  const transport = new DefaultChatTransport({ api: "http://127.0.0.1/unused", fetch });
  return await transport.sendMessages({
    chatId: "chat",
    messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "hi" }] }],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: new AbortController().signal,
  });
}

try {
  const { chunks, messages } = JSON.parse(input);
  let message = null;
  const states = [];
  for await (const m of readUIMessageStream({ stream: await streamOf(chunks), terminateOnError: true })) {
    message = m;
    const now = m.parts.filter((p) => p.type.startsWith("tool-")).map((p) => p.state).join(",");
    if (now && states.at(-1) !== now) states.push(now);
  }
  let valid = null;
  if (messages) {
    try {
      await validateUIMessages({ messages });
      valid = true;
    } catch (error) {
      valid = String(error?.message ?? error);
    }
  }
  process.stdout.write(JSON.stringify({ message, states, valid }));
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
