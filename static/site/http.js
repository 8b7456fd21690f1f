// Small helpers shared by the pages: JSON requests with the CSRF token, money and time formatting.

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) return meta.content;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// fetch() a JSON API. Never throws for HTTP errors: returns {ok, status, body}; a network
// failure returns {ok: false, status: 0, body: null, networkError}.
export async function api(url, { method = "GET", json, signal, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers }, signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    return { ok: false, status: 0, body: null, networkError: error };
  }
  let body = null;
  if (response.status !== 204) {
    const text = await response.text().catch(() => "");
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = { detail: text.slice(0, 300) };
    }
  }
  return { ok: response.ok, status: response.status, body };
}

// The server's message for a failed request, verbatim when it sent one.
export function errorText(result, fallback = "Something went wrong. Please try again.") {
  if (!result) return fallback;
  if (result.status === 0) return "Could not reach the server. Check your connection and try again.";
  const body = result.body;
  if (body && typeof body === "object") {
    if (typeof body.detail === "string" && body.detail) return body.detail;
    const parts = Object.entries(body).flatMap(([key, value]) =>
      (Array.isArray(value) ? value : [value]).filter((v) => typeof v === "string").map((v) => (key === "non_field_errors" ? v : `${key}: ${v}`)),
    );
    if (parts.length) return parts.join(" ");
  }
  return `${fallback} (HTTP ${result.status})`;
}

export function formatCents(cents) {
  const value = Number(cents) || 0;
  const sign = value < 0 ? "-" : "";
  return `${sign}$${(Math.abs(value) / 100).toFixed(2)}`;
}

// "2h 30m", "15m" (never "0h"), "now" — the server's wording.
export function timeUntil(iso, now = Date.now()) {
  const seconds = Math.floor((Date.parse(iso) - now) / 1000);
  if (!Number.isFinite(seconds) || seconds <= 0) return "now";
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  return minutes > 0 ? `${minutes}m` : "1m";
}

export function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleDateString("en-US", { year: "numeric", month: "long", day: "numeric" });
}

export function formatDateTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString("en-US", { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
}

export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString("en-US", { hour: "numeric", minute: "2-digit" })
    : formatDateTime(iso);
}

// A whole percentage for display: never "100%" before the limit is really reached.
export function percentLabel(percent) {
  if (percent === null || percent === undefined) return "No limit";
  if (percent >= 100) return "100%";
  if (percent > 0 && percent < 1) return "<1%";
  return `${Math.floor(percent)}%`;
}

export function uuid() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
