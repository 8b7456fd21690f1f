// The billing page: tier cards, upgrade through Stripe Checkout, downgrade
// with a confirmation, the pending-change banner with "Keep <tier>", credits.
import { api, errorText, formatCents, formatDate, formatDateTime } from "../site/http.js";

const root = document.querySelector("[data-billing]");
const $ = (selector) => root.querySelector(selector);
const ORDER = ["FREE", "PRO", "BUSINESS", "ENTERPRISE"];
const LABEL = { FREE: "Free", PRO: "Pro", BUSINESS: "Business", ENTERPRISE: "Enterprise" };
const rank = (tier) => ORDER.indexOf(tier);
const hasSubscription = root.dataset.hasSubscription === "true";
const periodEnd = root.dataset.periodEnd || "";

let status = null;
let busy = false;

function showError(text) {
  const box = $("[data-billing-error]");
  box.querySelector("[data-text]").textContent = text;
  box.hidden = !text;
}

let toastTimer = 0;
function toast(text) {
  const box = $("[data-toast]");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.hidden = true;
  }, 6000);
}

function price(cents) {
  const dollars = (Number(cents) || 0) / 100;
  return Number.isInteger(dollars) ? `$${dollars}` : formatCents(cents);
}

async function loadStatus() {
  const result = await api("/api/billing/subscription");
  if (!result.ok) {
    showError(errorText(result, "Could not load your plan."));
    return null;
  }
  status = result.body;
  paint();
  return status;
}

function paint() {
  if (!status) return;
  const current = status.tier;
  const pending = status.pending_tier;
  const enterprise = current === "ENTERPRISE";
  $("[data-tiers]").setAttribute("aria-busy", "false");
  for (const card of root.querySelectorAll("[data-tier]")) {
    const tier = card.dataset.tier;
    const isCurrent = tier === current;
    card.classList.toggle("is-current", isCurrent);
    card.querySelector("[data-current-badge]").hidden = !isCurrent;
    const cost = status.tier_costs ? status.tier_costs[tier] : 0;
    const priceBox = card.querySelector("[data-price]");
    priceBox.textContent = price(cost);
    priceBox.append(Object.assign(document.createElement("small"), { textContent: "/mo" }));
    const button = card.querySelector("[data-tier-action]");
    button.className = "";
    button.disabled = busy;
    delete button.dataset.action;
    button.removeAttribute("title");
    if (enterprise) {
      button.textContent = "Managed by an administrator";
      button.disabled = true;
    } else if (isCurrent) {
      if (pending) {
        button.textContent = `Keep ${LABEL[current]}`;
        button.dataset.action = "keep";
      } else {
        button.textContent = "Your current plan";
        button.className = "secondary";
        button.disabled = true;
      }
    } else {
      const up = rank(tier) > rank(current);
      button.textContent = `${up ? "Upgrade" : "Downgrade"} to ${LABEL[tier]}`;
      button.dataset.action = up ? "upgrade" : "downgrade";
      if (!up) button.className = "secondary";
      if (pending) {
        button.disabled = true; // one change at a time
        button.title = `Keep ${LABEL[current]} first to cancel the scheduled change.`;
      }
    }
  }
  const banner = $("[data-pending-banner]");
  banner.hidden = !pending;
  if (pending) {
    const when = status.pending_tier_effective_at ? `on ${formatDate(status.pending_tier_effective_at)}` : "at the end of your billing period";
    banner.querySelector("[data-pending-text]").textContent = `Your plan changes to ${LABEL[pending] || pending} ${when}.`;
    const keep = banner.querySelector("[data-keep]");
    keep.textContent = `Keep ${LABEL[current]}`;
    keep.disabled = busy;
  }
  $("[data-enterprise-banner]").hidden = !enterprise;
}

function returnUrl(query) {
  return `${window.location.origin}/billing/${query}`;
}

async function post(tier) {
  busy = true;
  paint();
  showError("");
  const result = await api("/api/billing/subscription", {
    method: "POST",
    json: { tier, success_url: returnUrl("?subscription=success"), cancel_url: returnUrl("?subscription=cancelled") },
  });
  busy = false;
  paint();
  return result;
}

async function changeTier(tier) {
  const previous = status.tier;
  const result = await post(tier);
  if (result.ok && result.body && result.body.url) {
    window.location.assign(result.body.url); // Stripe Checkout
    return;
  }
  if (!result.ok) {
    showError(errorText(result, "Your plan could not be changed."));
    await loadStatus();
    return;
  }
  status = result.body;
  paint();
  if (status.pending_tier) toast(`Scheduled: your plan changes to ${LABEL[status.pending_tier]}.`);
  else if (status.tier !== previous) toast(`Your plan is now ${LABEL[status.tier]}.`);
}

// "Keep <tier>" cancels the pending change. The reply may be lost even when the server
// did it, so the status is read again after success and failure alike.
async function keepCurrent() {
  const result = await post(status.tier);
  if (!result.ok) showError(errorText(result, "The scheduled change could not be cancelled."));
  const fresh = await loadStatus();
  if (result.ok && fresh && !fresh.pending_tier) toast(`You keep ${LABEL[fresh.tier]}.`);
}

function confirmDowngrade(tier) {
  const dialog = $("[data-downgrade-dialog]");
  const current = status.tier;
  const until = periodEnd ? formatDate(periodEnd) : "";
  const keepUntil = until ? `until ${until}` : "until the end of your current billing period";
  let title;
  let text;
  let confirm;
  if (tier === "FREE") {
    title = `Cancel your ${LABEL[current]} plan?`;
    text = hasSubscription
      ? `You keep ${LABEL[current]} ${keepUntil}. After that your account moves to Free and you will not be charged again.`
      : "Your account moves to Free right away.";
    confirm = "Downgrade to Free";
  } else {
    title = `Switch to ${LABEL[tier]}?`;
    text = hasSubscription
      ? `You keep ${LABEL[current]} ${keepUntil}. From then on your plan is ${LABEL[tier]}, billed at ${price(status.tier_costs[tier])} a month.`
      : `Your plan changes to ${LABEL[tier]} right away.`;
    confirm = `Switch to ${LABEL[tier]}`;
  }
  dialog.querySelector("[data-dialog-title]").textContent = title;
  dialog.querySelector("[data-dialog-text]").textContent = text;
  dialog.querySelector("[data-dialog-confirm]").textContent = confirm;
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue === "confirm") changeTier(tier);
  };
  dialog.showModal();
}

root.querySelector("[data-tiers]").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled || !status) return;
  const tier = button.closest("[data-tier]").dataset.tier;
  if (button.dataset.action === "keep") keepCurrent();
  else if (button.dataset.action === "upgrade") changeTier(tier);
  else confirmDowngrade(tier);
});
$("[data-keep]").addEventListener("click", () => keepCurrent());

// ---- credits ---------------------------------------------------------------------------------

const KIND = { grant: "Credit grant", top_up: "Top-up", usage: "Usage", refund: "Refund", dispute: "Dispute", adjustment: "Adjustment" };

async function loadCredits() {
  const result = await api("/api/billing/credits?limit=50");
  const body = $("[data-transactions] tbody");
  if (!result.ok) {
    body.replaceChildren(row(["Could not load your credits."], 4));
    return;
  }
  const data = result.body;
  $("[data-balance]").textContent = formatCents(data.balance);
  $("[data-credits-disabled]").hidden = data.enabled;
  $("[data-top-up]").hidden = !data.enabled;
  if (!data.transactions.length) {
    body.replaceChildren(row(["No transactions yet."], 4));
    return;
  }
  body.replaceChildren(
    ...data.transactions.map((t) => {
      const tr = row([
        formatDateTime(t.created_at),
        t.reason || KIND[String(t.kind).toLowerCase()] || t.kind,
        `${t.amount_cents > 0 ? "+" : ""}${formatCents(t.amount_cents)}`,
        formatCents(t.balance_after_cents),
      ]);
      if (t.amount_cents > 0) tr.children[2].className = "amount-positive";
      return tr;
    }),
  );
}

function row(cells, span = 0) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (span) td.colSpan = span;
    tr.append(td);
  }
  return tr;
}

$("[data-top-up]").addEventListener("submit", async (event) => {
  event.preventDefault();
  const statusBox = $("[data-top-up-status]");
  const dollars = Number.parseFloat(event.target.amount.value);
  if (!Number.isFinite(dollars) || dollars < 1) {
    statusBox.textContent = "Enter a whole number of dollars, at least $1.";
    return;
  }
  const button = event.target.querySelector("button");
  button.disabled = true;
  statusBox.textContent = "Opening checkout…";
  const result = await api("/api/billing/credits/top-up", {
    method: "POST",
    json: { amount: Math.round(dollars * 100), success_url: returnUrl("?topup=success#credits"), cancel_url: returnUrl("#credits") },
  });
  button.disabled = false;
  if (result.ok && result.body.url) {
    window.location.assign(result.body.url);
    return;
  }
  statusBox.textContent = errorText(result, "Could not start the payment.");
});

// ---- start -------------------------------------------------------------------------------------

async function start() {
  const params = new URLSearchParams(window.location.search);
  const returned = params.get("subscription");
  const toppedUp = params.get("topup") === "success";
  if (returned || toppedUp) window.history.replaceState(null, "", `/billing/${window.location.hash}`);
  const credits = loadCredits();
  const first = await loadStatus();
  await credits;
  if (returned === "success") {
    toast("Thank you! Your subscription was updated.");
    // The webhook, not the redirect, changes the plan: give it a moment to arrive.
    for (let i = 0; first && first.tier === "FREE" && i < 5; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const fresh = await loadStatus();
      if (!fresh || fresh.tier !== "FREE") break;
    }
  } else if (returned === "cancelled") {
    toast("Checkout was cancelled; nothing changed.");
  }
  if (toppedUp) {
    toast("Thank you! Your credits will appear in a moment.");
    // Credits arrive with Stripe's webhook, usually within seconds.
    const before = $("[data-balance]").textContent;
    for (const delay of [1000, 2000, 4000, 8000]) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      await loadCredits();
      if ($("[data-balance]").textContent !== before) break;
    }
  }
}

start();
