// The chat page: sessions sidebar, message list, composer, live turns.
//
// Turn events can arrive from two sources at once: the SSE body of POST/GET …/stream
// and the session's WebSocket (which also follows turns other tabs start). Both carry
// the same Redis event ids, so every event is applied once, in order: anything at or
// before the last applied id is dropped. When the page attaches to a turn that is
// already partly shown, a replay filter (replay.js) skips what is on screen.
import { api, csrfToken, errorText, formatTime, timeUntil, uuid } from "../site/http.js";
import { refreshUsage, resetDaily, resetOffer } from "../site/usage.js";
import { AttachmentTray, installLightbox } from "./attachments.js";
import { installApprovals } from "./approvals.js";
import { applyChunk, carryReasoningTimes, insertPromoted, newAssistantBubble, rowsToBubbles, turnRegion } from "./model.js";
import { createReplayFilter } from "./replay.js";
import { initSearch } from "./search.js";
import { initTranscriptTools } from "./share.js";
import { ChatSocket, backoffDelay, compareEventIds, readSse } from "./transport.js";
import { usageLine } from "./answer_usage.js";
import { composerChoice, showChoice } from "./picker.js";
import { answerText, bindActions, isEditing, messageActions, startEdit, stopEditing } from "./versions.js";
import { MessageList, copyText } from "./view.js";

const PAGE_SIZE = 50;
const SESSIONS_PAGE = 30;
const PENDING_POLL_MS = 2000;

const root = document.querySelector("[data-chat]");
const $ = (selector) => root.querySelector(selector);
const els = {
  scroller: $("#chat-scroll"),
  list: $("#message-list"),
  sentinel: $("#older-sentinel"),
  olderStatus: $("#older-status"),
  empty: $("#chat-empty"),
  title: $("#chat-title"),
  banner: $("#connection-banner"),
  bannerText: $("#connection-banner [data-text]"),
  bannerRetry: $("#connection-banner button"),
  notice: $("#chat-notice"),
  chips: $("#pending-chips"),
  form: $("#composer"),
  input: $("#composer-input"),
  send: $("#send-button"),
  stop: $("#stop-button"),
  deliveryWrap: $("#delivery-choice"),
  delivery: $("#delivery"),
  composerError: $("#composer-error"),
  sidebar: $("#chat-sidebar"),
  sidebarToggle: $("#sidebar-toggle"),
  sessions: $("#session-list"),
  sessionsMore: $("#sessions-more"),
  newChat: $("#new-chat"),
  attachButton: $("#attach-button"),
  fileInput: $("#file-input"),
  attachmentChips: $("#attachment-chips"),
};

const list = new MessageList(els.list, {
  onRetry: () => retryLast(),
  decorate(bubble, article) {
    const cost = usageLine(bubble);
    if (cost) article.append(cost);
    const actions = messageActions(bubble);
    if (actions) article.append(actions);
    if (isEditing(bubble)) editBubble(bubble, article);
  },
});
const tray = new AttachmentTray({
  form: els.form,
  input: els.input,
  tray: els.attachmentChips,
  button: els.attachButton,
  fileInput: els.fileInput,
  onChange: () => showComposerError(""),
});
installLightbox(els.list);
installApprovals(els.list, () => S.sessionId); // Approve / Deny of tool calls that ask first
let generation = 0;
let S = null;
const sidebar = { sessions: [], total: 0, loading: false };

// ---- state -----------------------------------------------------------------------------

function freshState(sessionId) {
  generation += 1;
  return {
    sessionId,
    generation,
    rows: [],
    dbBubbles: [],
    tail: [], // bubbles not (yet) from the DB: optimistic sends, promoted chips, the live answer, alerts
    hasMore: false,
    oldest: null,
    loadingOlder: false,
    live: null, // {turnId, messageId, bubble, filter, adoptedFrom}
    running: false,
    lastEventId: null,
    syncing: false,
    syncAgain: false,
    buffer: [],
    expectingOwn: false,
    chips: [],
    socket: null,
    sse: null,
    sseAttempt: 0,
    sseTimer: 0,
    wsTurnId: null,
    pollTimer: 0,
    stopRequested: false,
    conn: { ws: 0, sse: 0, sync: 0, offline: navigator.onLine === false },
    lastUserText: "",
    titleTimers: [],
  };
}

function teardown() {
  if (!S) return;
  if (S.socket) S.socket.close();
  if (S.sse) S.sse.abort();
  clearTimeout(S.sseTimer);
  clearInterval(S.pollTimer);
  for (const timer of S.titleTimers) clearTimeout(timer);
}

const displayed = () => [...S.dbBubbles, ...S.tail];

function recomputeDb() {
  const adoptedFrom = S.live ? S.live.adoptedFrom : null;
  const rows = adoptedFrom === null ? S.rows : S.rows.filter((row) => row.sequence < adoptedFrom);
  S.dbBubbles = rowsToBubbles(rows);
  for (const bubble of S.dbBubbles) {
    const first = S.rows.find((row) => row.sequence === bubble.sequence);
    bubble.createdAt = first ? first.created_at : null;
  }
  const lastUser = [...S.dbBubbles].reverse().find((b) => b.role === "user");
  if (lastUser && !S.lastUserText) S.lastUserText = lastUser.text;
}

function mergeRows(fetched) {
  if (!fetched.length) return;
  const first = fetched[0].sequence;
  S.rows = [...S.rows.filter((row) => row.sequence < first), ...fetched];
}

// ---- rendering ---------------------------------------------------------------------------

function nearBottom() {
  const s = els.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

function scrollToBottom() {
  els.scroller.scrollTop = els.scroller.scrollHeight;
}

function render({ stick } = {}) {
  const follow = stick ?? nearBottom();
  const bubbles = displayed();
  const latest = [...bubbles].reverse().find((b) => b.role !== "alert");
  for (const bubble of bubbles) bubble.isLatest = bubble === latest;
  list.render(bubbles);
  // Only the latest answer offers "Regenerate" (CSS hides it on the others).
  for (const element of els.list.querySelectorAll(".msg.is-latest")) element.classList.remove("is-latest");
  const latestElement = latest ? list.elementOf(latest) : null;
  if (latestElement) latestElement.classList.add("is-latest");
  els.empty.hidden = Boolean(bubbles.length) || S.loading === true;
  if (follow) scrollToBottom();
}

// data-state on the page root: "running" while a turn streams, "syncing" while the
// list reloads from the database, "idle" otherwise (tests and styles read it).
function paintState() {
  root.dataset.state = S.running ? "running" : S.syncing || S.loading ? "syncing" : "idle";
}

function setRunning(running) {
  S.running = running;
  paintState();
  els.stop.hidden = !running;
  els.stop.disabled = false;
  els.stop.textContent = "Stop";
  els.deliveryWrap.hidden = !running;
  if (!running) els.delivery.value = "now";
  root.classList.toggle("is-running", running);
  if (running || S.chips.length) startPendingPoll();
  else stopPendingPoll();
}

function setTitle(title) {
  const text = title || (S.sessionId ? "Untitled chat" : "New chat");
  els.title.textContent = text;
  document.title = `${text} · Copilot`;
}

function showNotice(text, tone = "info") {
  els.notice.textContent = text;
  els.notice.dataset.tone = tone;
  els.notice.hidden = !text;
}

// ---- connection banner ---------------------------------------------------------------------

// Each channel reports its own trouble; the banner shows while any has some.
// conn: {ws, sse, sync: retry time (ms) or 0, offline: bool}
let bannerTimer = 0;
function connProblem(channel, retryAt) {
  S.conn[channel] = retryAt;
  paintBanner();
}

function connOk(channel) {
  if (!S.conn[channel]) return;
  S.conn[channel] = 0;
  paintBanner();
}

function paintBanner() {
  clearInterval(bannerTimer);
  const conn = S.conn;
  const retries = [conn.ws, conn.sse, conn.sync].filter(Boolean);
  if (!conn.offline && !retries.length) {
    els.banner.hidden = true;
    return;
  }
  els.banner.hidden = false;
  const text = conn.offline ? "You are offline." : conn.sync && !conn.ws && !conn.sse ? "Could not refresh the conversation." : "Connection lost.";
  const paint = () => {
    const until = Math.min(...retries);
    const left = Math.ceil((until - Date.now()) / 1000);
    els.bannerText.textContent = !retries.length ? text : left > 0 ? `${text} Reconnecting in ${left}s…` : `${text} Reconnecting…`;
  };
  paint();
  if (retries.length) bannerTimer = setInterval(paint, 1000);
}

// ---- loading a session ----------------------------------------------------------------------

function sessionUrl(sessionId) {
  return sessionId ? `/copilot?sessionId=${encodeURIComponent(sessionId)}` : "/copilot";
}

async function openSession(sessionId, { history = null } = {}) {
  teardown();
  stopEditing();
  S = freshState(sessionId);
  const g = S.generation;
  if (history === "push") window.history.pushState({ sessionId }, "", sessionUrl(sessionId));
  if (history === "replace") window.history.replaceState({ sessionId }, "", sessionUrl(sessionId));
  list.render([]);
  els.olderStatus.textContent = "";
  els.chips.replaceChildren();
  paintBanner();
  showNotice("");
  setRunning(false);
  markActiveSession();
  transcriptTools.sessionChanged(sessionId);
  if (!sessionId) {
    setTitle("");
    showChoice(null);
    els.empty.hidden = false;
    return;
  }
  S.loading = true;
  els.empty.hidden = true;
  const known = sidebar.sessions.find((s) => s.id === sessionId);
  setTitle(known ? known.title : "");
  paintState();
  const result = await api(`/api/chat/sessions/${sessionId}?limit=${PAGE_SIZE}`);
  if (g !== S.generation) return;
  S.loading = false;
  paintState();
  if (!result.ok) {
    S.tail.push(alertBubble({
      title: result.status === 404 ? "This chat does not exist, or it was deleted." : errorText(result),
      actions: [{ label: "Start a new chat", href: "/copilot" }],
    }));
    render();
    return;
  }
  const body = result.body;
  S.rows = body.messages;
  S.hasMore = body.has_more;
  S.oldest = body.oldest_sequence;
  setTitle(body.session.title);
  showChoice(body.session);
  recomputeDb();
  if (body.active_turn) attach(body.active_turn);
  render({ stick: true });
  connectSocket();
  refreshPending({ promote: false });
  maybeLoadOlder();
}

// ---- attaching to a running turn ----------------------------------------------------------------

function attach(activeTurn) {
  const region = turnRegion(S.rows, activeTurn.started_at);
  const last = S.dbBubbles[S.dbBubbles.length - 1];
  const started = Date.parse(activeTurn.started_at);
  let bubble;
  let adoptedFrom = null;
  if (last && last.role === "assistant" && last.createdAt && Date.parse(last.createdAt) >= started) {
    // The turn's persisted rows are already on screen: keep that bubble and stream into it.
    S.dbBubbles.pop();
    bubble = last;
    bubble.live = true;
    bubble.startedAt = started;
    adoptedFrom = last.sequence;
  } else {
    bubble = newAssistantBubble(`live-${activeTurn.turn_id}`);
    bubble.startedAt = started || Date.now();
  }
  S.tail.push(bubble);
  S.live = { turnId: activeTurn.turn_id, messageId: null, bubble, filter: createReplayFilter(region), adoptedFrom };
  S.expectingOwn = false;
  setRunning(true);
  if (S.wsTurnId !== activeTurn.turn_id) resumeSse();
}

// GET …/stream: replays the running turn (from the start, or after Last-Event-ID) then follows it.
async function resumeSse({ after = null } = {}) {
  if (S.sse || !S.sessionId) return;
  const state = S;
  const controller = new AbortController();
  state.sse = controller;
  clearTimeout(state.sseTimer);
  try {
    const headers = { Accept: "text/event-stream, application/json" };
    if (after) headers["Last-Event-ID"] = after;
    const response = await fetch(`/api/chat/sessions/${state.sessionId}/stream`, {
      headers,
      credentials: "same-origin",
      signal: controller.signal,
    });
    if (response.status === 204) {
      if (state.sse === controller) state.sse = null;
      if (state === S) connOk("sse");
      if (state === S && state.running) sync(); // it ended while we were away
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    state.sseAttempt = 0;
    if (state === S) connOk("sse");
    const end = await readSse(response, (id, chunk) => state === S && onEvent(id, chunk, "sse"));
    if (state.sse === controller) state.sse = null;
    if (end !== "done" && state === S) sseLost();
  } catch (error) {
    if (state.sse === controller) state.sse = null;
    if (error.name !== "AbortError" && state === S) sseLost();
  }
}

function sseLost() {
  if (!S.running || S.stopRequested) return; // after a stop the client does not reconnect
  if (S.socket && S.socket.ready && S.wsTurnId && S.live && S.wsTurnId === S.live.turnId) return;
  S.sseAttempt += 1;
  const delay = backoffDelay(S.sseAttempt);
  connProblem("sse", Date.now() + delay);
  clearTimeout(S.sseTimer);
  S.sseTimer = setTimeout(() => resumeSse({ after: S.lastEventId }), delay);
}

// ---- the WebSocket -------------------------------------------------------------------------------

function connectSocket() {
  if (!S.sessionId || S.socket) return;
  const state = S;
  state.socket = new ChatSocket(state.sessionId, {
    onReady() {
      if (state !== S) return;
      connOk("ws");
      // Catch up: continue the turn on screen, or pick up one that started meanwhile.
      const frame = { type: "resume" };
      if (state.live && state.lastEventId) frame.after = state.lastEventId;
      state.socket.send(frame);
    },
    onFrame(frame) {
      if (state !== S) return;
      if (frame.chunk) {
        onEvent(frame.event_id, frame.chunk, "ws", frame.turn_id);
        return;
      }
      if (frame.type === "idle" && state.running && !state.sse && !state.expectingOwn) sync();
      if (frame.type === "copilot_completion") sessionSettled(frame.session_id);
    },
    onDown(delay) {
      if (state !== S) return;
      state.wsTurnId = null;
      connProblem("ws", Date.now() + delay);
    },
    onFatal(code) {
      if (state !== S) return;
      connOk("ws");
      S.tail.push(alertBubble({
        title: code === 4401 ? "You were signed out." : "This chat no longer exists.",
        actions: code === 4401 ? [{ label: "Log in", href: "/login/?next=/copilot" }] : [{ label: "Start a new chat", href: "/copilot" }],
      }));
      render();
    },
  });
  state.socket.connect();
}

// ---- applying events -------------------------------------------------------------------------------

function onEvent(eventId, chunk, source, turnId = null) {
  if (eventId) {
    if (S.lastEventId && compareEventIds(eventId, S.lastEventId) <= 0) return; // already applied
    S.lastEventId = eventId;
  }
  if (source === "sse" && S.conn.sse) connOk("sse");
  if (source === "ws" && turnId) {
    S.wsTurnId = turnId;
    if (S.live && !S.live.turnId) S.live.turnId = turnId;
  }
  if (S.syncing) {
    S.buffer.push(chunk);
    return;
  }
  handleChunk(chunk);
}

function lastShownIsUser() {
  const bubbles = displayed().filter((b) => b.role !== "alert");
  const last = bubbles[bubbles.length - 1];
  return Boolean(last && last.role === "user" && last.inFlight);
}

function handleChunk(chunk) {
  if (chunk.type === "start") {
    const live = S.live;
    if (!live || (live.messageId !== null && live.messageId !== chunk.messageId)) {
      if (live) {
        // A second assistant message (auto-continue): queued chips were drained into it.
        finishLive();
        promoteChips(S.chips.filter((c) => c.state === "queued"));
      }
      if (!(S.expectingOwn || lastShownIsUser())) {
        S.buffer.push(chunk); // a turn this page did not start: load its user message first
        sync();
        return;
      }
      S.expectingOwn = false;
      const bubble = newAssistantBubble(`live-${chunk.messageId}`);
      S.tail.push(bubble);
      S.live = { turnId: null, messageId: chunk.messageId, bubble, filter: null, adoptedFrom: null };
      for (const b of S.tail) if (b.inFlight) b.inFlight = false;
      setRunning(true);
      render();
    }
  } else if (!S.live) {
    S.buffer.push(chunk); // events of a turn whose start this page missed
    sync();
    return;
  }
  const live = S.live;
  const filtered = live.filter ? live.filter(chunk) : chunk;
  if (!filtered) return;
  if (filtered.type === "data-pending-drained") {
    const data = filtered.data || {};
    promoteDrained(Array.isArray(data.messages) ? data.messages : [], Number(data.count) || 0);
    return;
  }
  if (filtered.type === "data-usage-warning") {
    usageWarning(filtered.data || {});
    return;
  }
  if (filtered.type.startsWith("data-") && filtered.type !== "data-error") return;
  if (filtered.type === "start") live.messageId = filtered.messageId;
  const follow = nearBottom();
  const change = applyChunk(live.bubble, filtered);
  if (change.structural) list.rebuild(live.bubble);
  else if (change.part) list.touch(live.bubble, change.part);
  if (follow) requestAnimationFrame(scrollToBottom);
  if (filtered.type === "finish") onFinish();
}

function finishLive() {
  if (!S.live) return;
  const bubble = S.live.bubble;
  if (bubble.live) {
    applyChunk(bubble, { type: "finish" });
    list.rebuild(bubble);
  }
}

function onFinish() {
  finishLive();
  clearTimeout(S.sseTimer);
  connOk("sse");
  S.expectingOwn = false;
  setRunning(false);
  window.dispatchEvent(new Event("copilot:usage-refresh"));
  refreshTitleSoon();
  sync(); // stream-end hydration: the live list stays until the DB list replaces it
}

// Reload the newest page from the DB and replace the live list with it; re-attach when
// a turn is (still, or again) running.
async function sync() {
  if (!S.sessionId) return;
  if (S.syncing) {
    S.syncAgain = true;
    return;
  }
  const state = S;
  state.syncing = true;
  paintState();
  const bufferedBefore = state.buffer.length;
  const result = await api(`/api/chat/sessions/${state.sessionId}?limit=${PAGE_SIZE}`);
  if (state !== S) return;
  if (!result.ok) {
    state.syncing = false;
    paintState();
    const delay = backoffDelay((state.syncFailures = (state.syncFailures || 0) + 1));
    connProblem("sync", Date.now() + delay);
    setTimeout(() => state === S && sync(), delay);
    return;
  }
  state.syncFailures = 0;
  connOk("sync");
  const body = result.body;
  const active = body.active_turn;
  // No turn runs: whatever was buffered is not replayed. Replaying a `start` would treat its
  // turn as one still to load, and sync again for ever (a short auto-continued turn can
  // start and end within one fetch). But chunks that came in while the fetch was out may
  // belong to a turn that started after the server read the DB: read it once more then.
  if (!active) {
    if (state.buffer.length > bufferedBefore) state.syncAgain = true;
    state.buffer = [];
  }
  if (state.live && state.live.bubble.live && active && (!state.live.turnId || state.live.turnId === active.turn_id)) {
    // Still streaming the turn on screen: keep it; hydration happens at its end.
    finishSync(state);
    return;
  }
  const fresh = body.messages.length ? body.messages[0].sequence : null;
  if (!state.rows.length || (fresh !== null && fresh <= (state.oldest ?? 0))) {
    state.hasMore = body.has_more;
    state.oldest = body.oldest_sequence;
  }
  mergeRows(body.messages);
  const shown = state.tail.filter((b) => b.role === "assistant");
  state.live = null;
  const persisted = new Set(body.messages.map((row) => row.client_message_id).filter(Boolean));
  state.tail = state.tail.filter((b) => (b.role === "user" && b.inFlight && !persisted.has(b.clientMessageId)) || b.role === "alert");
  recomputeDb();
  carryReasoningTimes(shown, state.dbBubbles);
  const replacement = [...state.dbBubbles].reverse().find((b) => b.role === "assistant");
  const previous = shown[shown.length - 1];
  if (replacement && previous) list.moveOpenState(previous.key, replacement.key);
  setTitle(body.session.title);
  if (active) attach(active);
  else setRunning(false);
  render();
  await refreshPending({ promote: false });
  finishSync(state);
}

function finishSync(state) {
  state.syncing = false;
  if (state === S) paintState();
  const buffered = state.buffer;
  state.buffer = [];
  for (const chunk of buffered) if (state === S) handleChunk(chunk);
  if (state.syncAgain) {
    state.syncAgain = false;
    sync();
  }
}

// ---- older messages (infinite scroll upwards) --------------------------------------------

async function loadOlder() {
  if (!S.sessionId || !S.hasMore || S.loadingOlder || S.oldest === null) return;
  const state = S;
  state.loadingOlder = true;
  els.olderStatus.textContent = "Loading earlier messages…";
  const result = await api(`/api/chat/sessions/${state.sessionId}?limit=${PAGE_SIZE}&before_sequence=${state.oldest}`);
  if (state !== S) return;
  state.loadingOlder = false;
  if (!result.ok) {
    els.olderStatus.textContent = "Could not load earlier messages.";
    return;
  }
  const older = result.body.messages.filter((row) => row.sequence < state.oldest);
  const previousHeight = els.scroller.scrollHeight;
  const previousTop = els.scroller.scrollTop;
  state.rows = [...older, ...state.rows];
  state.hasMore = result.body.has_more;
  if (result.body.oldest_sequence !== null) state.oldest = result.body.oldest_sequence;
  recomputeDb();
  render({ stick: false });
  // Prepended: keep the message the reader was looking at where it was.
  els.scroller.scrollTop = previousTop + (els.scroller.scrollHeight - previousHeight);
  els.olderStatus.textContent = state.hasMore ? "" : "Start of the conversation";
  maybeLoadOlder();
}

function maybeLoadOlder() {
  if (!S.hasMore || S.loadingOlder) return;
  const scroller = els.scroller.getBoundingClientRect();
  const sentinel = els.sentinel.getBoundingClientRect();
  if (sentinel.bottom >= scroller.top - 200) loadOlder();
}

new IntersectionObserver((entries) => {
  if (S && entries.some((e) => e.isIntersecting)) loadOlder();
}, { root: els.scroller, rootMargin: "200px 0px 0px 0px" }).observe(els.sentinel);

// ---- sending -----------------------------------------------------------------------------------------

async function ensureSession() {
  if (S.sessionId) return true;
  const created = await api("/api/chat/sessions", { method: "POST", json: {} });
  if (!created.ok) {
    showComposerError(errorText(created));
    return false;
  }
  S.sessionId = created.body.id;
  transcriptTools.sessionChanged(S.sessionId);
  setTitle(created.body.title);
  window.history.replaceState({ sessionId: S.sessionId }, "", sessionUrl(S.sessionId));
  els.empty.hidden = true;
  sidebar.sessions.unshift(created.body);
  sidebar.total += 1;
  renderSessions();
  connectSocket();
  return true;
}

function showComposerError(text) {
  els.composerError.textContent = text;
  els.composerError.hidden = !text;
}

function restoreComposer(text) {
  if (!els.input.value.trim()) {
    els.input.value = text;
    autosize();
  }
}

async function send(text, delivery = "now", files = []) {
  if (!text.trim() && !files.length) return;
  showComposerError("");
  const state = S;
  if (!(await ensureSession())) {
    restoreComposer(text);
    tray.restore(files);
    return;
  }
  if (state !== S) return;
  state.tail = state.tail.filter((b) => b.role !== "alert");
  state.stopRequested = false;
  state.lastUserText = text;
  state.lastUserFiles = files;
  const clientMessageId = uuid();
  const payload = { message: text, client_message_id: clientMessageId, ...composerChoice() };
  if (files.length) payload.file_ids = files.map((f) => f.id);
  let bubble = null;
  let chip = null;
  if (state.running) {
    payload.delivery = delivery;
    chip = { id: clientMessageId, text, delivery, state: "sending" };
    state.chips.push(chip);
    renderChips();
  } else {
    bubble = { key: `local-${clientMessageId}`, role: "user", text, attachments: files, inFlight: true, clientMessageId };
    state.tail.push(bubble);
    state.expectingOwn = true;
    setRunning(true);
    render({ stick: true });
  }
  const controller = new AbortController();
  let response;
  try {
    // JSON only: a queued follow-up answers 202 JSON (the page already follows the running
    // turn); a message that starts a turn answers with its stream whatever the Accept.
    response = await fetch(`/api/chat/sessions/${state.sessionId}/stream`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(payload),
      signal: controller.signal,
    });
  } catch {
    if (state !== S) return;
    // Unknown whether the server got it: the DB and the pending peek will tell.
    if (chip) removeChip(chip);
    state.expectingOwn = false;
    showNotice("Could not reach the server, so your message may not have been sent. It is back in the box.", "error");
    restoreComposer(text);
    tray.restore(files);
    sync();
    return;
  }
  if (state !== S) return;
  if (response.ok && (response.headers.get("content-type") || "").startsWith("text/event-stream")) {
    if (chip) {
      // The running turn ended meanwhile, so this message started the next one.
      removeChip(chip);
      state.tail.push({ key: `local-${clientMessageId}`, role: "user", text, attachments: files, inFlight: true, clientMessageId });
      state.expectingOwn = true;
      render({ stick: true });
    }
    await followResponse(state, response, controller);
    return;
  }
  const text202 = await response.text().catch(() => "");
  let body = null;
  try {
    body = text202 ? JSON.parse(text202) : null;
  } catch {
    body = { detail: text202.slice(0, 200) };
  }
  if (response.status === 202) {
    if (chip) {
      chip.state = "queued";
    } else {
      // A turn we did not know about is running (another tab): queued behind it.
      state.tail = state.tail.filter((b) => b !== bubble);
      state.expectingOwn = false;
      state.chips.push({ id: clientMessageId, text, delivery: "now", state: "queued" });
      render();
      if (!state.live) sync();
    }
    renderChips();
    startPendingPoll();
    return;
  }
  if (chip) removeChip(chip);
  if (bubble) {
    state.tail = state.tail.filter((b) => b !== bubble);
    state.expectingOwn = false;
    setRunning(Boolean(state.live));
  }
  restoreComposer(text);
  tray.restore(files);
  if (response.status === 429 && body && body.window) {
    await rateLimitAlert(body);
  } else {
    state.tail.push(alertBubble({ title: errorText({ status: response.status, body }, "The message could not be sent.") }));
  }
  render({ stick: true });
}

// Follow a turn from the SSE body of the POST that started it.
async function followResponse(state, response, controller) {
  if (!state.sse) state.sse = controller;
  try {
    const end = await readSse(response, (id, chunk) => state === S && onEvent(id, chunk, "sse"));
    if (state.sse === controller) state.sse = null;
    if (end !== "done" && state === S) sseLost();
  } catch (error) {
    if (state.sse === controller) state.sse = null;
    if (error.name !== "AbortError" && state === S) sseLost();
  }
}

// ---- versions: edit, regenerate, switch (POST …/messages/{sequence}/versions, PUT …/branch) ----

// Replace the shown rows with a page of the session's current branch.
function showBranch(body) {
  S.rows = body.messages;
  S.hasMore = body.has_more;
  S.oldest = body.oldest_sequence;
  S.live = null;
  S.tail = [];
  recomputeDb();
  if (body.active_turn) attach(body.active_turn);
  render({ stick: true });
  els.olderStatus.textContent = "";
  maybeLoadOlder();
}

async function reloadBranch() {
  const state = S;
  const result = await api(`/api/chat/sessions/${state.sessionId}?limit=${PAGE_SIZE}`);
  if (state === S && result.ok) showBranch(result.body);
}

function refuseWhileRunning() {
  if (!S.running) return false;
  showNotice("A reply is still being written. Stop it or wait until it finishes, then try again.", "error");
  return true;
}

// A new version of the message `sequence`: an edit (`text` given) or a regenerate. The shown
// branch is cut back to before that message at once; the server starts the turn.
async function sendVersion(sequence, text = null) {
  if (!S.sessionId || refuseWhileRunning()) return;
  showNotice("");
  showComposerError("");
  const state = S;
  const clientMessageId = uuid();
  const payload = text === null ? {} : { message: text, client_message_id: clientMessageId };
  Object.assign(payload, composerChoice());
  state.stopRequested = false;
  state.rows = state.rows.filter((row) => row.sequence < sequence);
  state.tail = [];
  if (text !== null) {
    state.lastUserText = text;
    state.tail.push({ key: `local-${clientMessageId}`, role: "user", text, inFlight: true, clientMessageId });
  }
  state.expectingOwn = true;
  recomputeDb();
  setRunning(true);
  render({ stick: true });
  const controller = new AbortController();
  let response;
  try {
    response = await fetch(`/api/chat/sessions/${state.sessionId}/messages/${sequence}/versions`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(payload),
      signal: controller.signal,
    });
  } catch {
    if (state !== S) return;
    state.expectingOwn = false;
    setRunning(false);
    showNotice("Could not reach the server. Nothing was changed.", "error");
    reloadBranch();
    return;
  }
  if (state !== S) return;
  if (response.ok && (response.headers.get("content-type") || "").startsWith("text/event-stream")) {
    await followResponse(state, response, controller);
    return;
  }
  const body = await response.json().catch(() => null);
  state.expectingOwn = false;
  setRunning(false);
  await reloadBranch();
  if (state !== S) return;
  if (response.status === 429 && body && body.window) await rateLimitAlert(body);
  else state.tail.push(alertBubble({ title: errorText({ status: response.status, body }, "That could not be done.") }));
  render({ stick: true });
}

async function switchVersion(sequence) {
  if (!S.sessionId || refuseWhileRunning()) return;
  const state = S;
  const result = await api(`/api/chat/sessions/${state.sessionId}/branch`, { method: "PUT", json: { sequence } });
  if (state !== S) return;
  if (!result.ok) {
    showNotice(errorText(result, "Could not show that version."), "error");
    return;
  }
  showBranch(result.body);
}

function editBubble(bubble, article) {
  if (refuseWhileRunning()) return;
  startEdit(article, bubble, { onSubmit: (text) => sendVersion(bubble.sequence, text) });
}

// ↑ in an empty composer: edit the last message of yours.
function editLast() {
  const last = [...S.dbBubbles].reverse().find((b) => b.role === "user" && b.sequence !== undefined);
  const article = last ? list.elementOf(last) : null;
  if (!article) return false;
  editBubble(last, article);
  article.scrollIntoView({ block: "nearest" });
  return true;
}

bindActions(els.list, (article) => list.bubbleOf(article), {
  onEdit: editBubble,
  onRegenerate: (bubble) => sendVersion(bubble.sequence),
  onSwitch: switchVersion,
  onCopy(bubble, button) {
    copyText(answerText(bubble)).then((ok) => {
      button.dataset.icon = ok ? "Copied" : "Copy failed";
      button.setAttribute("aria-label", ok ? "Copied" : "Copy failed");
      setTimeout(() => {
        button.dataset.icon = "Copy";
        button.setAttribute("aria-label", "Copy answer");
      }, 1500);
    });
  },
});

function retryLast() {
  if (S.lastUserText || (S.lastUserFiles && S.lastUserFiles.length)) send(S.lastUserText, "now", S.lastUserFiles || []);
}

async function stop() {
  if (!S.sessionId) return;
  S.stopRequested = true;
  els.stop.disabled = true;
  els.stop.textContent = "Stopping…";
  const state = S;
  const result = await api(`/api/chat/sessions/${state.sessionId}/cancel`, { method: "POST" });
  if (state !== S) return;
  if (!result.ok) {
    els.stop.disabled = false;
    els.stop.textContent = "Stop";
    showNotice(errorText(result, "Could not stop the reply."), "error");
    return;
  }
  // The stream ends with `finish`; if nothing is delivering it, fetch the final state.
  if (!state.sse && !(state.socket && state.socket.ready)) sync();
  setTimeout(() => {
    if (state === S && state.running && state.stopRequested && !state.sse) resumeSse({ after: state.lastEventId });
  }, 6000);
}

// ---- alerts: rate limit and other errors with a next step -----------------------------------------------

function alertBubble({ title, text = "", tone = "error", actions = [] }) {
  return { key: `alert-${uuid()}`, role: "alert", title, text, tone, actions };
}

async function rateLimitAlert(body) {
  const usage = await refreshUsage();
  const resets = body.resets_at ? ` It resets at ${formatTime(body.resets_at)} (in ${timeUntil(body.resets_at)}).` : "";
  const alert = alertBubble({
    title: body.detail || "You have reached your usage limit.",
    text: `Your message is still in the box below.${resets}`,
    tone: "warn",
  });
  const offer = body.window === "daily" && !body.personal_cap ? resetOffer(usage) : null;
  if (offer) {
    alert.actions.push({
      label: offer.label,
      run: async (button) => {
        button.disabled = true;
        alert.status = "Resetting…";
        list.rebuild(alert);
        const outcome = await resetDaily();
        alert.status = "";
        if (outcome.ok) {
          alert.tone = "ok";
          alert.title = "Your daily limit was reset.";
          alert.text = `${outcome.message} Send your message again.`;
          alert.actions = [];
        } else {
          alert.status = outcome.message;
          if (outcome.status === 402) alert.actions = [{ label: "Top up credits", href: "/billing/#credits" }];
        }
        list.rebuild(alert);
      },
    });
  }
  if (body.personal_cap) alert.actions.push({ label: "Change your daily cap", href: "/account/#personal-cap-heading", secondary: true });
  alert.actions.push({ label: "See plans", href: "/billing/", secondary: true });
  S.tail.push(alert);
}

function usageWarning(data) {
  const which = data.window === "weekly" ? "this week's" : "today's";
  const percent = Math.floor(Number(data.percent_used) || 0);
  const pace = data.projected_exhaustion_at ? ` At this pace you reach it around ${formatTime(data.projected_exhaustion_at)}.` : "";
  showNotice(`You have used ${percent}% of ${which} limit.${pace}`, "warn");
  window.dispatchEvent(new Event("copilot:usage-refresh"));
}

// ---- pending chips ------------------------------------------------------------------------------

function renderChips() {
  const chips = S.chips;
  els.chips.replaceChildren(
    ...chips.map((chip) => {
      const li = document.createElement("li");
      li.className = `chip chip-${chip.state}`;
      li.dataset.testid = "pending-chip";
      const text = document.createElement("span");
      text.className = "chip-text";
      text.textContent = chip.text;
      const meta = document.createElement("span");
      meta.className = "chip-meta";
      meta.textContent =
        chip.state === "sending" ? "sending…" : chip.delivery === "next_turn" ? "queued · next turn" : chip.delivery === "now" ? "queued · joins this reply" : "queued";
      li.append(text, meta);
      return li;
    }),
  );
  els.chips.hidden = !chips.length;
  if (chips.length) startPendingPoll();
}

function removeChip(chip) {
  S.chips = S.chips.filter((c) => c !== chip);
  renderChips();
}

function promoteChips(chips) {
  if (!chips.length) return;
  for (const chip of chips) {
    S.chips = S.chips.filter((c) => c !== chip);
    const bubble = { key: `promoted-${chip.id}`, role: "user", text: chip.text, promoted: true };
    S.tail = insertPromoted(S.tail, bubble);
  }
  renderChips();
  render();
}

// `data-pending-drained`: exactly which queued messages the model just received.
function promoteDrained(messages, count) {
  const queued = S.chips.filter((c) => c.state === "queued");
  const chosen = [];
  for (const text of messages) {
    const chip = queued.find((c) => c.text === text && !chosen.includes(c));
    if (chip) chosen.push(chip);
  }
  while (chosen.length < Math.min(count, queued.length)) {
    const chip = queued.find((c) => !chosen.includes(c));
    if (!chip) break;
    chosen.push(chip);
  }
  promoteChips(queued.filter((c) => chosen.includes(c)));
}

// Peek the server's buffer. While a turn streams, chips that left it were drained into
// the turn and become bubbles; otherwise (after a DB reload) they are simply dropped.
async function refreshPending({ promote }) {
  if (!S.sessionId) return;
  const state = S;
  const result = await api(`/api/chat/sessions/${state.sessionId}/messages/pending`);
  if (state !== S || !result.ok) return;
  const messages = result.body.messages || [];
  const queued = state.chips.filter((c) => c.state === "queued");
  const sending = state.chips.filter((c) => c.state === "sending");
  if (messages.length < queued.length) {
    const gone = queued.slice(0, queued.length - messages.length);
    if (promote && state.live) promoteChips(gone);
    else {
      state.chips = state.chips.filter((c) => !gone.includes(c));
      renderChips();
    }
  } else if (messages.length > queued.length + sending.length) {
    for (const text of messages.slice(queued.length + sending.length)) state.chips.push({ id: uuid(), text, delivery: null, state: "queued" });
    renderChips();
  }
  if (!state.chips.length && !state.running) stopPendingPoll();
}

function startPendingPoll() {
  if (S.pollTimer) return;
  S.pollTimer = setInterval(() => {
    if (S.syncing) return;
    refreshPending({ promote: true });
  }, PENDING_POLL_MS);
}

function stopPendingPoll() {
  clearInterval(S.pollTimer);
  S.pollTimer = 0;
}

// ---- sidebar ------------------------------------------------------------------------------------------------

async function loadSessions({ more = false } = {}) {
  if (sidebar.loading) return;
  sidebar.loading = true;
  const offset = more ? sidebar.sessions.length : 0;
  const result = await api(`/api/chat/sessions?limit=${SESSIONS_PAGE}&offset=${offset}`);
  sidebar.loading = false;
  if (!result.ok) return;
  const incoming = result.body.sessions;
  sidebar.sessions = more ? [...sidebar.sessions, ...incoming.filter((s) => !sidebar.sessions.some((k) => k.id === s.id))] : incoming;
  sidebar.total = result.body.total;
  renderSessions();
  if (S && S.sessionId) {
    const current = sidebar.sessions.find((s) => s.id === S.sessionId);
    if (current && current.title) setTitle(current.title);
  }
}

function renderSessions() {
  els.sessions.replaceChildren(
    ...sidebar.sessions.map((session) => {
      const li = document.createElement("li");
      li.className = "session";
      li.dataset.sessionId = session.id;
      const link = document.createElement("a");
      link.className = "session-link";
      link.href = sessionUrl(session.id);
      link.textContent = session.title || "Untitled chat";
      link.dataset.testid = "session-link";
      if (session.turn_in_flight) link.append(Object.assign(document.createElement("span"), { className: "session-live", title: "Replying…", textContent: " ●" }));
      const rename = iconButton("✎", `Rename “${session.title || "Untitled chat"}”`, () => startRename(li, session));
      const remove = iconButton("🗑", `Delete “${session.title || "Untitled chat"}”`, () => deleteSession(session));
      li.append(link, rename, remove);
      return li;
    }),
  );
  els.sessionsMore.hidden = sidebar.sessions.length >= sidebar.total;
  markActiveSession();
}

// A turn of this user ended (any chat, any tab or device): its sidebar entry stops showing "Replying…".
function sessionSettled(sessionId) {
  const session = sidebar.sessions.find((s) => s.id === sessionId);
  if (!session || !session.turn_in_flight) return;
  session.turn_in_flight = false;
  renderSessions();
}

function iconButton(glyph, label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "icon";
  button.setAttribute("aria-label", label);
  button.title = label;
  button.textContent = glyph;
  button.addEventListener("click", onClick);
  return button;
}

function markActiveSession() {
  for (const li of els.sessions.children) {
    const link = li.querySelector("a");
    if (link) {
      if (S && li.dataset.sessionId === S.sessionId) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }
}

function startRename(li, session) {
  const input = document.createElement("input");
  input.type = "text";
  input.value = session.title || "";
  input.maxLength = 200;
  input.className = "session-rename";
  input.setAttribute("aria-label", "New chat title");
  li.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== session.title) {
      const result = await api(`/api/chat/sessions/${session.id}`, { method: "PATCH", json: { title } });
      if (result.ok) {
        session.title = result.body.title;
        if (S.sessionId === session.id) setTitle(session.title);
      } else {
        showNotice(errorText(result, "Could not rename the chat."), "error");
      }
    }
    renderSessions();
    const again = els.sessions.querySelector(`li[data-session-id="${session.id}"] button.icon`);
    if (again) again.focus();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
}

async function deleteSession(session) {
  if (!window.confirm(`Delete “${session.title || "Untitled chat"}”? This cannot be undone.`)) return;
  const result = await api(`/api/chat/sessions/${session.id}`, { method: "DELETE" });
  if (!result.ok && result.status !== 404) {
    showNotice(errorText(result, "Could not delete the chat."), "error");
    return;
  }
  sidebar.sessions = sidebar.sessions.filter((s) => s.id !== session.id);
  sidebar.total = Math.max(0, sidebar.total - 1);
  renderSessions();
  if (S.sessionId === session.id) openSession(null, { history: "push" });
}

// Titles are generated after the first turn, a moment after it ends.
function refreshTitleSoon() {
  const state = S;
  loadSessions();
  for (const delay of [2500, 7000]) {
    state.titleTimers.push(
      setTimeout(() => {
        if (state !== S) return;
        const current = sidebar.sessions.find((s) => s.id === state.sessionId);
        if (!current || !current.title) loadSessions();
      }, delay),
    );
  }
}

// ---- composer and page wiring ------------------------------------------------------------------------------

function autosize() {
  els.input.style.height = "auto";
  els.input.style.height = `${Math.min(els.input.scrollHeight, 240)}px`;
}

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = els.input.value;
  if (tray.busy) {
    showComposerError("Wait until your files have finished uploading.");
    return;
  }
  if (!text.trim() && !tray.ready().length) return;
  const delivery = els.delivery.value === "next_turn" ? "next_turn" : "now";
  const files = tray.take();
  els.input.value = "";
  els.delivery.value = "now";
  autosize();
  send(text, delivery, files);
});
els.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    els.form.requestSubmit();
  } else if (event.key === "ArrowUp" && !els.input.value && !event.shiftKey && !event.altKey && !event.metaKey && !event.ctrlKey) {
    if (!S.running && editLast()) event.preventDefault();
  }
});
els.input.addEventListener("input", autosize);
els.stop.addEventListener("click", () => stop());
els.bannerRetry.addEventListener("click", () => {
  if (S.socket) S.socket.reconnectNow();
  if (S.running && !S.sse && !S.stopRequested) resumeSse({ after: S.lastEventId });
  if (!S.running) sync();
});
for (const button of root.querySelectorAll("[data-suggestion]")) {
  button.addEventListener("click", () => {
    els.input.value = button.dataset.suggestion;
    autosize();
    els.input.focus();
  });
}
els.sessions.addEventListener("click", (event) => {
  const link = event.target.closest("a.session-link");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  const id = link.closest("li").dataset.sessionId;
  if (!S || id !== S.sessionId) openSession(id, { history: "push" });
  closeSidebar();
  els.input.focus();
});
els.newChat.addEventListener("click", (event) => {
  if (event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  openSession(null, { history: "push" });
  closeSidebar();
  els.input.focus();
});
els.sessionsMore.addEventListener("click", () => loadSessions({ more: true }));
els.sidebarToggle.addEventListener("click", () => {
  const open = els.sidebarToggle.getAttribute("aria-expanded") !== "true";
  els.sidebarToggle.setAttribute("aria-expanded", String(open));
  root.classList.toggle("sidebar-open", open);
  if (open) els.newChat.focus();
});
root.querySelector(".chat-main").addEventListener("click", (event) => {
  if (root.classList.contains("sidebar-open") && !event.target.closest("#sidebar-toggle")) closeSidebar();
});
function closeSidebar() {
  els.sidebarToggle.setAttribute("aria-expanded", "false");
  root.classList.remove("sidebar-open");
}
function openSidebar() {
  els.sidebarToggle.setAttribute("aria-expanded", "true");
  root.classList.add("sidebar-open");
}
// Search over the sidebar, and export/share in the toolbar (search.js, share.js).
initSearch(root, {
  openSession: (id) => {
    if (!S || id !== S.sessionId) openSession(id, { history: "push" });
  },
  openSidebar,
  closeSidebar,
  sessionUrl,
});
const transcriptTools = initTranscriptTools(root);
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (root.classList.contains("sidebar-open")) {
    closeSidebar();
    els.sidebarToggle.focus();
  } else if (S && S.running && !els.stop.hidden && !els.stop.disabled) {
    // Esc stops the reply, as the Stop button does.
    event.preventDefault();
    stop();
  }
});
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(window.location.search).get("sessionId") || pathSession();
  openSession(id || null);
});
window.addEventListener("offline", () => {
  if (!S) return;
  S.conn.offline = true;
  paintBanner();
});
window.addEventListener("online", () => {
  if (!S) return;
  if (S.socket) S.socket.reconnectNow();
  if (S.running && !S.sse && !S.stopRequested) resumeSse({ after: S.lastEventId });
  S.conn.offline = false;
  paintBanner();
});

function pathSession() {
  const match = window.location.pathname.match(/^\/chat\/([0-9a-f-]{36})\/?$/i);
  return match ? match[1] : null;
}

loadSessions();
openSession(root.dataset.sessionId || null);
autosize();

// For the page's own tests and debugging: a read-only view of the state.
window.copilotChat = { state: () => S };
