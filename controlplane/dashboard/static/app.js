// Brik Cloud dashboard: the few things that need a script. Every page works without it.
"use strict";

// Scripts run: the switcher needs no Go button (app.css hides it under .js).
document.documentElement.classList.add("js");

// A <select data-autosubmit> submits its form when changed (the Go button stays for no-JS).
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});

// <button data-copy="#id">: copy the text of the element it names.
document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.hidden = false;
  button.addEventListener("click", async () => {
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch (error) {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl-C";
    }
  });
});

// The invitation link carries its token after '#', which browsers never send to a server:
// put it into the form's token field.
const tokenField = document.querySelector("input[data-token-from-fragment]");
if (tokenField && window.location.hash.length > 1 && !tokenField.value) {
  tokenField.value = decodeURIComponent(window.location.hash.slice(1));
  // The token is a key to the organization: keep it out of the address bar (and screenshots).
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
}

// A form with data-confirm asks before it is sent (revoke, delete).
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});

// A form is sent once: a double click does not post it twice (the server's idempotency key
// would make a second send harmless anyway).
document.querySelectorAll("form[method=post]").forEach((form) => {
  form.addEventListener("submit", () => {
    form.querySelectorAll("button[type=submit]").forEach((button) => {
      window.setTimeout(() => { button.disabled = true; }, 0);
    });
  });
});
// Coming back (Back from Stripe Checkout) may show the page from the browser's cache with
// its buttons still disabled: enable them again.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    document.querySelectorAll("form[method=post] button[type=submit]").forEach((button) => {
      button.disabled = false;
    });
  }
});

// Live push status: <section data-push-events="…/events">, fed by the push's event stream
// (`event: push` with the push as JSON on every change, `event: end` once it is final).
// Elements with data-field="status" or "counts.delivered" show that field of the push.
const live = document.querySelector("[data-push-events]");
if (live && window.EventSource) {
  const source = new EventSource(live.dataset.pushEvents);
  const flatten = (value, prefix, out) => {
    for (const [name, item] of Object.entries(value)) {
      const key = prefix ? `${prefix}.${name}` : name;
      if (item !== null && typeof item === "object" && !Array.isArray(item)) flatten(item, key, out);
      else out[key] = item;
    }
    return out;
  };
  source.addEventListener("push", (event) => {
    const fields = flatten(JSON.parse(event.data), "", {});
    // The push's counts name only the outcomes some delivery has now: any other one is 0
    // (else "queued" kept its first count after every delivery had left it).
    live.querySelectorAll('[data-field^="deliveries."]').forEach((element) => {
      if (!(element.dataset.field in fields)) element.textContent = "0";
    });
    for (const [name, value] of Object.entries(fields)) {
      // Names come from the push, its content's keys included: any text, quotes and all.
      live.querySelectorAll(`[data-field="${CSS.escape(name)}"]`).forEach((element) => {
        element.textContent = value === null ? "—" : String(value);
        if (name === "status") element.className = `status status-${value}`;
      });
    }
  });
  source.addEventListener("end", () => {
    source.close();
    live.dataset.ended = "true";
    // The deliveries table below is server-rendered: show its final rows.
    if (live.dataset.reloadWhenDone !== undefined && !window.location.search.includes("final=1")) {
      const url = new URL(window.location.href);
      url.searchParams.set("final", "1");
      window.location.replace(url.toString());
    }
  });
}
