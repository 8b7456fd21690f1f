// The chunks of a turn whose tool asked first, read by the AI SDK itself.
// Reads {chunks, messages?} as JSON on stdin: the SSE chunks of one turn and, optionally,
// the saved transcript (GET …/ui-messages). Prints
// {message, states, valid}: `message` is readUIMessageStream's fold of the chunks (each
// chunk checked against the SDK's own uiMessageChunkSchema, terminateOnError), `states`
// its tool parts' states after every chunk that changed one, and `valid` the result of
// validateUIMessages on the transcript (true, or the error text). Exit 1 when the stream
// is refused.
import { readUIMessageStream, validateUIMessages } from "ai";

let input = "";
for await (const chunk of process.stdin) input += chunk;

function streamOf(chunks) {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

try {
  const { chunks, messages } = JSON.parse(input);
  let message = null;
  const states = [];
  for await (const m of readUIMessageStream({ stream: streamOf(chunks), terminateOnError: true })) {
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
