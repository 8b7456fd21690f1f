// Reads a JSON array of UIMessages on stdin and checks it with the AI SDK's own
// validateUIMessages. Exit 0 when valid; exit 1 with the reason on stderr otherwise.
import { validateUIMessages } from "ai";

let input = "";
for await (const chunk of process.stdin) input += chunk;

try {
  const messages = JSON.parse(input);
  await validateUIMessages({ messages });
} catch (error) {
  process.stderr.write(`${error?.message ?? error}\n`);
  process.exit(1);
}
