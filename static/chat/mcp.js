// Tools from the operator's MCP servers reach the model as "<server>__<tool>" (server
// names never contain "__", built-in tool names never do): the chat page shows the
// tool's own name and, beside it, the server it came from.
export function toolLabel(name) {
  const text = String(name ?? "");
  const at = text.indexOf("__");
  if (at <= 0 || at + 2 >= text.length) return { tool: text, server: null };
  return { tool: text.slice(at + 2), server: text.slice(0, at) };
}
