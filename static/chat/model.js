// The chat's data model, free of DOM: DB rows → bubbles, live stream
// chunks → parts of the streaming assistant bubble, and where a promoted follow-up
// goes.
//
// A bubble is {key, role: "user", text, attachments} or {key, role: "assistant", parts, durationMs, live}.
// Parts: {kind: "reasoning"|"text", id, text, done, startedAt?, endedAt?},
//        {kind: "tool", id, name, input, output, state: "input"|"running"|"done"|"incomplete"},
//        {kind: "notice", text, tone: "info"|"error"}, {kind: "error", text, code}.

// A row's kind: "message" (the model's words), or a notice the server wrote: "stopped"
// (the user stopped the turn) or "error_notice" (the turn failed; content is the reason).
export const STOPPED_TEXT = "Stopped";

function parseJson(text) {
  if (typeof text !== "string") return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function parseToolCalls(toolCalls) {
  if (!Array.isArray(toolCalls)) return [];
  return toolCalls
    .map((call) => {
      if (!call || typeof call !== "object") return null;
      const fn = call.function && typeof call.function === "object" ? call.function : call;
      const args = fn.arguments !== undefined ? fn.arguments : fn.input;
      return { id: String(call.id || ""), name: String(fn.name || "tool"), input: parseJson(args) };
    })
    .filter(Boolean);
}

export function rowsToBubbles(rows) {
  const bubbles = [];
  let current = null;
  let userAt = null;
  const tools = new Map();
  for (const row of rows) {
    if (row.role === "user") {
      userAt = Date.parse(row.created_at);
      current = null;
      // Every user row is a bubble, even an empty one.
      bubbles.push({
        key: `u${row.sequence}`,
        role: "user",
        text: row.content ?? "",
        attachments: row.attachments || [],
        sequence: row.sequence,
        versions: row.versions || null,
      });
      continue;
    }
    if (row.role !== "assistant" && row.role !== "tool" && row.role !== "reasoning") continue;
    if (!current) {
      current = { key: `a${row.sequence}`, role: "assistant", parts: [], durationMs: null, live: false, sequence: row.sequence, versions: row.versions || null };
      bubbles.push(current);
    }
    if (row.duration_ms) current.durationMs = row.duration_ms;
    if (row.role === "assistant" && row.model) [current.model, current.mode] = [row.model, row.mode];
    if (row.role === "assistant" && row.usage) current.usage = row.usage;
    if (!current.durationMs && userAt !== null) {
      // No duration stored: the turn took from its user message to its last row.
      const span = Date.parse(row.created_at) - userAt;
      if (Number.isFinite(span) && span > 0) current.spanMs = span;
    }
    const content = row.content ?? "";
    if (row.role === "reasoning") {
      if (content.trim()) current.parts.push({ kind: "reasoning", id: `r${row.sequence}`, text: content, done: true });
      continue;
    }
    if (row.role === "assistant") {
      if (row.kind === "stopped") {
        current.parts.push({ kind: "notice", text: STOPPED_TEXT, tone: "info" });
      } else if (row.kind === "error_notice") {
        current.parts.push({ kind: "notice", text: content, tone: "error" });
      } else if (content.trim()) {
        current.parts.push({ kind: "text", id: `t${row.sequence}`, text: content, done: true });
      }
      for (const call of parseToolCalls(row.tool_calls)) {
        const part = { kind: "tool", id: call.id, name: call.name, input: call.input, output: undefined, state: "incomplete" };
        current.parts.push(part);
        if (call.id) tools.set(call.id, part);
      }
      continue;
    }
    const owner = tools.get(row.tool_call_id);
    if (owner) {
      owner.output = content;
      owner.state = "done";
    } else {
      current.parts.push({ kind: "tool", id: row.tool_call_id || `x${row.sequence}`, name: row.name || "tool", input: undefined, output: content, state: "done" });
    }
  }
  for (const bubble of bubbles) {
    if (bubble.role === "assistant" && !bubble.durationMs && bubble.spanMs) bubble.durationMs = bubble.spanMs;
  }
  return bubbles;
}

// Live timings of reasoning blocks survive the stream-end reload: copy them onto the
// same blocks of the DB bubbles (matched by text).
export function carryReasoningTimes(fromBubbles, toBubbles) {
  const times = new Map();
  for (const bubble of fromBubbles) {
    for (const part of bubble.parts || []) {
      if (part.kind === "reasoning" && part.startedAt && part.endedAt) times.set(part.text, [part.startedAt, part.endedAt]);
    }
  }
  if (!times.size) return;
  for (const bubble of toBubbles) {
    for (const part of bubble.parts || []) {
      const time = part.kind === "reasoning" ? times.get(part.text) : null;
      if (time) [part.startedAt, part.endedAt] = time;
    }
  }
}

// The parts a running turn has already persisted: its rows are those created at or
// after the turn started (the user row is written after the claim). Used to skip
// the part of a replay that the page already shows.
export function turnRegion(rows, startedAt) {
  const start = Date.parse(startedAt);
  if (!Number.isFinite(start)) return [];
  const inTurn = rows.filter((row) => Date.parse(row.created_at) >= start && row.role !== "user");
  return rowsToBubbles(inTurn).flatMap((bubble) => bubble.parts || []);
}

// A follow-up promoted from a chip goes before the streaming assistant message when
// that is last, else at the end: the streaming message must stay last.
export function insertPromoted(bubbles, bubble) {
  const result = bubbles.slice();
  const last = result[result.length - 1];
  if (last && last.role === "assistant") result.splice(result.length - 1, 0, bubble);
  else result.push(bubble);
  return result;
}

export function newAssistantBubble(key) {
  return { key, role: "assistant", parts: [], durationMs: null, live: true, startedAt: Date.now() };
}

function findPart(bubble, kind, id) {
  for (let i = bubble.parts.length - 1; i >= 0; i -= 1) {
    const part = bubble.parts[i];
    if (part.kind === kind && part.id === id) return part;
  }
  return null;
}

// A delta for a block this page never saw start (a replay whose start was already
// shown): it continues the last part of that kind when that part is last.
function adoptPart(bubble, kind, id, now) {
  const last = bubble.parts[bubble.parts.length - 1];
  if (last && last.kind === kind) {
    last.id = id;
    last.done = false;
    return { part: last, structural: false };
  }
  const part = { kind, id, text: "", done: false, startedAt: now };
  bubble.parts.push(part);
  return { part, structural: true };
}

// Applies one stream chunk to the live assistant bubble. Returns what changed:
// {structural: true} (parts added or states changed) or {part} (text appended).
export function applyChunk(bubble, chunk, now = Date.now()) {
  const type = chunk.type;
  switch (type) {
    case "start":
      bubble.messageId = chunk.messageId;
      return { structural: false };
    case "reasoning-start":
    case "text-start": {
      const kind = type === "text-start" ? "text" : "reasoning";
      bubble.parts.push({ kind, id: chunk.id, text: "", done: false, startedAt: now });
      return { structural: true };
    }
    case "reasoning-delta":
    case "text-delta": {
      const kind = type === "text-delta" ? "text" : "reasoning";
      let part = findPart(bubble, kind, chunk.id);
      let structural = false;
      if (!part) ({ part, structural } = adoptPart(bubble, kind, chunk.id, now));
      part.text += chunk.delta || "";
      return { structural, part };
    }
    case "reasoning-end":
    case "text-end": {
      const part = findPart(bubble, type === "text-end" ? "text" : "reasoning", chunk.id);
      if (part) {
        part.done = true;
        part.endedAt = now;
      }
      return { structural: true, part };
    }
    case "tool-input-start": {
      if (!findPart(bubble, "tool", chunk.toolCallId)) {
        bubble.parts.push({ kind: "tool", id: chunk.toolCallId, name: chunk.toolName, input: undefined, output: undefined, state: "input", startedAt: now });
      }
      return { structural: true };
    }
    case "tool-input-available": {
      let part = findPart(bubble, "tool", chunk.toolCallId);
      if (!part) {
        part = { kind: "tool", id: chunk.toolCallId, name: chunk.toolName, startedAt: now };
        bubble.parts.push(part);
      }
      part.input = chunk.input;
      part.state = "running";
      return { structural: true };
    }
    case "tool-approval-request": {
      // The call waits for the user's Approve / Deny (approvals.js).
      const part = findPart(bubble, "tool", chunk.toolCallId);
      if (part) {
        part.state = "approval";
        part.approvalId = chunk.approvalId;
      }
      return { structural: true };
    }
    case "tool-output-denied": {
      const part = findPart(bubble, "tool", chunk.toolCallId);
      if (part) {
        part.state = "denied";
        part.endedAt = now;
      }
      return { structural: true };
    }
    case "tool-output-available": {
      let part = findPart(bubble, "tool", chunk.toolCallId);
      if (!part) {
        part = { kind: "tool", id: chunk.toolCallId, name: "tool", input: undefined };
        bubble.parts.push(part);
      }
      part.output = chunk.output;
      part.state = "done";
      part.endedAt = now;
      return { structural: true };
    }
    case "error":
      bubble.parts.push({ kind: "error", text: chunk.errorText || "Something went wrong." });
      return { structural: true };
    case "data-error": {
      const last = bubble.parts[bubble.parts.length - 1];
      if (last && last.kind === "error") last.code = chunk.data && chunk.data.code;
      return { structural: true };
    }
    case "finish":
      bubble.live = false;
      for (const part of bubble.parts) {
        if (part.kind === "reasoning" || part.kind === "text") part.done = true;
        if (part.kind === "tool" && part.state !== "done" && part.state !== "denied") part.state = "incomplete";
      }
      bubble.durationMs = bubble.durationMs || now - (bubble.startedAt || now);
      return { structural: true };
    default:
      return { structural: false };
  }
}

// ---- presentation helpers (pure) -------------------------------------------------

function oneLine(value, limit = 90) {
  const text = String(value ?? "").replace(/\s+/g, " ").trim();
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

// What ran, in one line (the subtitle never shows the outcome).
export function toolSummary(part) {
  const input = part.input;
  if (input && typeof input === "object" && !Array.isArray(input)) {
    const pick = (...keys) => keys.map((k) => input[k]).find((v) => typeof v === "string" && v.trim());
    if (typeof input.command === "string") return `Ran: ${oneLine(input.command)}`;
    const url = pick("url");
    if (url) return `Fetched: ${oneLine(url)}`;
    const expression = pick("expression");
    if (expression) return `Calculated: ${oneLine(expression)}`;
    const query = pick("query");
    if (query !== undefined) return `Searched: ${oneLine(query)}`;
    const content = pick("content", "text", "message", "prompt");
    if (content) return oneLine(content);
    const entries = Object.entries(input);
    if (!entries.length) return part.name === "get_current_time" ? "Checked the time" : "No arguments";
    return oneLine(entries.map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", "));
  }
  if (typeof input === "string") return oneLine(input) || "No arguments";
  return part.state === "input" ? "Preparing…" : "";
}

function firstLine(text) {
  return String(text ?? "").split("\n").map((line) => line.trim()).find(Boolean) || "";
}

const FAILURE_PREFIXES = ["Tool execution error", "Invalid JSON arguments", "Tool '"];
// The tool results of calls that asked first and did not run (chat/engine/approvals.py).
const DENIAL_PATTERN = /^(The user denied running tool '|The user did not answer the request to run tool '|Tool '[^']*' was not run: the user stopped)/;

// How it ended, in one line: "completed", "status code 127 · …", "Timed out after 120s", "failed · …".
export function toolOutcome(part, { live = false } = {}) {
  if (part.state === "input") return { label: "preparing…", tone: "running" };
  if (part.state === "running") return { label: "running…", tone: "running" };
  if (part.state === "approval") return { label: "waiting for your approval", tone: "running" };
  if (part.state === "denied") return { label: "denied", tone: "error" };
  if (typeof part.output === "string" && DENIAL_PATTERN.test(part.output)) return { label: "denied", tone: "error" };
  if (part.state === "incomplete" || part.output === undefined) {
    return live ? { label: "running…", tone: "running" } : { label: "did not finish", tone: "muted" };
  }
  const output = parseJson(part.output);
  if (output && typeof output === "object" && !Array.isArray(output)) {
    if (output.timed_out) return { label: `Timed out${output.timeout ? ` after ${output.timeout}s` : ""}`, tone: "error" };
    if (typeof output.exit_code === "number") {
      if (output.exit_code === 0) return { label: "completed", tone: "ok" };
      const detail = firstLine(output.stderr) || firstLine(output.stdout);
      return { label: `status code ${output.exit_code}${detail ? ` · ${oneLine(detail, 80)}` : ""}`, tone: "error" };
    }
    if (typeof output.error === "string" && output.error) return { label: `failed · ${oneLine(output.error, 80)}`, tone: "error" };
  }
  if (typeof output === "string" && FAILURE_PREFIXES.some((prefix) => output.startsWith(prefix))) {
    return { label: `failed · ${oneLine(firstLine(output), 80)}`, tone: "error" };
  }
  return { label: "completed", tone: "ok" };
}

export function prettyValue(value) {
  const parsed = parseJson(value);
  if (parsed === undefined) return "";
  if (typeof parsed === "string") return parsed;
  try {
    return JSON.stringify(parsed, null, 2);
  } catch {
    return String(parsed);
  }
}

export function seconds(ms) {
  return Math.max(1, Math.round((ms || 0) / 1000));
}
