// Replay de-duplication. A resumed stream starts at the turn's first
// event, but the page may already show part of the turn (persisted rows, or what it
// streamed before a reconnect). The filter walks the replay alongside the parts
// already shown: events fully shown are dropped, the shown prefix of a text or
// reasoning block is stripped from its deltas, and once the replay goes past what
// is shown every event passes through unchanged.

const STRUCTURAL = new Set(["start", "start-step", "finish-step"]);

export function createReplayFilter(shownParts) {
  const shown = (shownParts || []).filter((p) => p.kind === "text" || p.kind === "reasoning" || p.kind === "tool");
  const tools = new Map(shown.filter((p) => p.kind === "tool").map((p) => [p.id, p]));
  let index = 0; // next shown text/reasoning/tool part to match
  let block = null; // {id, kind, text, consumed}: a shown block being replayed
  let caughtUp = shown.length === 0;

  const catchUp = (chunk) => {
    caughtUp = true;
    block = null;
    return chunk;
  };

  return function filter(chunk) {
    if (caughtUp || !chunk || typeof chunk.type !== "string") return chunk;
    const type = chunk.type;
    if (STRUCTURAL.has(type) || type.startsWith("data-")) return chunk;

    if (type === "text-start" || type === "reasoning-start") {
      const kind = type === "text-start" ? "text" : "reasoning";
      const next = shown[index];
      if (next && next.kind === kind) {
        block = { id: chunk.id, kind, text: next.text || "", consumed: 0 };
        index += 1;
        return null;
      }
      return catchUp(chunk);
    }

    if (type === "text-delta" || type === "reasoning-delta") {
      if (!block || block.id !== chunk.id) return catchUp(chunk);
      const delta = chunk.delta || "";
      const remaining = block.text.slice(block.consumed);
      if (remaining.startsWith(delta)) {
        block.consumed += delta.length;
        return null;
      }
      if (delta.startsWith(remaining)) {
        // Partly shown: keep only what the page has not shown yet.
        const rest = delta.slice(remaining.length);
        caughtUp = true;
        block = null;
        return { ...chunk, delta: rest };
      }
      return catchUp(chunk);
    }

    if (type === "text-end" || type === "reasoning-end") {
      if (block && block.id === chunk.id) {
        const complete = block.consumed >= block.text.length;
        block = null;
        if (complete) {
          if (index >= shown.length) caughtUp = true;
          return null;
        }
      }
      return catchUp(chunk);
    }

    if (type === "tool-input-start" || type === "tool-input-available") {
      const part = tools.get(chunk.toolCallId);
      if (part) {
        const position = shown.indexOf(part);
        if (position >= index) index = position + 1;
        return type === "tool-input-available" && part.input === undefined ? chunk : null;
      }
      return catchUp(chunk);
    }

    if (type === "tool-approval-request" || type === "tool-output-denied") {
      // A call that asked first (approvals.js): dropped once the page shows how it ended,
      // applied (without ending the match) while the page still shows it waiting.
      const part = tools.get(chunk.toolCallId);
      if (part) return part.output !== undefined || part.state === "done" || part.state === "denied" ? null : chunk;
      return catchUp(chunk);
    }

    if (type === "tool-output-available") {
      const part = tools.get(chunk.toolCallId);
      if (part && part.output !== undefined && part.state === "done") {
        if (index >= shown.length) caughtUp = true;
        return null;
      }
      return catchUp(chunk);
    }

    return catchUp(chunk); // error, finish, anything new
  };
}

// The whole-array form (used by tests): the events that still need applying.
export function stripReplayPrefix(shownParts, chunks) {
  const filter = createReplayFilter(shownParts);
  return chunks.map((chunk) => filter(chunk)).filter(Boolean);
}
