// The account page's personal daily cap card (templates/ratelimits/_personal_cap.html).
// Amounts are typed in dollars and sent in microdollars; server errors are shown verbatim.
(() => {
  "use strict";
  const card = document.querySelector("[data-personal-cap]");
  if (!card) return;
  const form = card.querySelector("[data-personal-cap-form]");
  const input = form.querySelector("input[name=dollars]");
  const status = card.querySelector("[data-personal-cap-status]");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  const show = (cap, reached) => {
    input.value = cap === null ? "" : (cap / 1e6).toFixed(2);
    status.textContent = cap === null
      ? "No personal cap."
      : `Cap: $${(cap / 1e6).toFixed(2)} a day${reached ? " — reached for today." : "."}`;
  };

  const save = async (microdollars) => {
    const response = await fetch(card.dataset.capUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ daily_cap_microdollars: microdollars }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = body.detail || Object.values(body).flat().join(" ") || `Error ${response.status}`;
      status.textContent = detail;
      return;
    }
    const cap = body.personal_daily_cap_microdollars;
    show(cap, Boolean(body.usage && body.usage.personal_cap && body.usage.personal_cap.reached));
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const dollars = Number.parseFloat(input.value);
    if (!Number.isFinite(dollars) || dollars <= 0) {
      status.textContent = "Enter an amount above $0.00, or remove the cap.";
      return;
    }
    save(Math.round(dollars * 1e6));
  });
  card.querySelector("[data-personal-cap-clear]").addEventListener("click", () => save(null));

  fetch(card.dataset.usageUrl, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : null))
    .then((usage) => {
      if (!usage) return;
      const cap = usage.personal_cap;
      show(cap ? cap.daily_cap_microdollars : null, Boolean(cap && cap.reached));
    })
    .catch(() => {});
})();
