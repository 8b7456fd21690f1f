// What `useChat({messages, resume: true})` ends up showing after the resumed stream ends.
// Reads {messages, chunks} as JSON on stdin (a transcript from GET …/ui-messages and the
// chunks of GET …/stream), folds the chunks with the AI SDK's own readUIMessageStream,
// places the streamed message as the SDK's Chat does, and prints
// {"ai6": [...], "ai5": [...]}:
// - ai6 (this package's Chat, trigger "resume-stream"): a fresh message, which replaces
//   the last message with its id, else is appended;
// - ai5: the streamed message continues the last message when that is an assistant
//   message, replaces the last message when it has the same id, else is appended.
import { readUIMessageStream } from "ai";

function streamOf(chunks) {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

async function fold(message, chunks) {
  let streamed = null;
  for await (const m of readUIMessageStream({ message, stream: streamOf(chunks), terminateOnError: true })) {
    streamed = m;
  }
  return streamed;
}

let input = "";
for await (const chunk of process.stdin) input += chunk;

try {
  const { messages, chunks } = JSON.parse(input);
  const ai6 = messages.slice();
  const fresh = await fold(undefined, chunks);
  if (fresh) {
    const at = ai6.findLastIndex((m) => m.id === fresh.id);
    if (at >= 0) ai6[at] = fresh;
    else ai6.push(fresh);
  }
  const ai5 = messages.slice();
  const last = ai5.at(-1);
  const continued = await fold(last?.role === "assistant" ? structuredClone(last) : undefined, chunks);
  if (continued) {
    if (last && last.id === continued.id) ai5[ai5.length - 1] = continued;
    else ai5.push(continued);
  }
  process.stdout.write(JSON.stringify({ ai6, ai5 }));
} catch (error) {
  process.stderr.write(`${error?.message ?? error}\n`);
  process.exit(1);
}
