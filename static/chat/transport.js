// The two ways a turn reaches the page: the SSE body of POST/GET …/stream read with
// fetch (AI SDK UI message stream v1), and the session's WebSocket, which also
// follows turns started elsewhere (another tab, auto-continue) and reconnects
// with backoff. Frame and chunk type names match chat/events.py and the contract.

// Reads an SSE response; calls onEvent(eventId, chunk) per data frame. Resolves to
// "done" after `data: [DONE]`, or "eof" if the body ended without it.
export async function readSse(response, onEvent, { onComment } = {}) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let eventId = null;
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "eof";
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        let line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) {
            const payload = data.join("\n");
            const id = eventId;
            data = [];
            eventId = null;
            if (payload === "[DONE]") return "done";
            let chunk = null;
            try {
              chunk = JSON.parse(payload);
            } catch {
              chunk = null;
            }
            if (chunk && typeof chunk === "object") onEvent(id, chunk);
          }
          continue;
        }
        if (line.startsWith(":")) {
          if (onComment) onComment(line.slice(1).trim());
          continue;
        }
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const fieldValue = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") eventId = fieldValue;
        else if (field === "data") data.push(fieldValue);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// Redis stream ids ("<ms>-<seq>") compare as number pairs; they grow across turns too.
export function compareEventIds(a, b) {
  const [am, as = "0"] = String(a).split("-");
  const [bm, bs = "0"] = String(b).split("-");
  const msDiff = Number(am) - Number(bm);
  if (msDiff !== 0) return msDiff;
  return Number(as) - Number(bs);
}

export function backoffDelay(attempt) {
  const base = Math.min(30_000, 1000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_NOT_FOUND = 4404;

// One WebSocket per open chat. Handlers: onReady(), onFrame(frame), onDown(delayMs),
// onFatal(code). Reconnects with exponential backoff until closed.
export class ChatSocket {
  constructor(sessionId, handlers) {
    this.sessionId = sessionId;
    this.handlers = handlers;
    this.attempt = 0;
    this.timer = 0;
    this.closed = false;
    this.ready = false;
    this.ws = null;
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = 0;
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${window.location.host}/ws/chat/${this.sessionId}/`);
    this.ws = ws;
    this.ready = false;
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "ready") {
        this.ready = true;
        this.attempt = 0;
        this.handlers.onReady();
        return;
      }
      this.handlers.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.ready = false;
      this.ws = null;
      if (this.closed) return;
      if (event.code === CLOSE_UNAUTHENTICATED || event.code === CLOSE_NOT_FOUND) {
        this.handlers.onFatal(event.code);
        return;
      }
      this.schedule();
    });
  }

  schedule() {
    this.attempt += 1;
    const delay = backoffDelay(this.attempt);
    this.handlers.onDown(delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.closed || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    this.connect();
  }

  send(frame) {
    if (this.ws && this.ready && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
  }
}
