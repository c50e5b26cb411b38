// The dashboard's only script. Pages work without it; it adds two things:
// - live updates: the page's <main> is fetched again every few seconds (its live part only,
//   rendered and escaped by the server) while the tab is visible;
// - a confirmation before the actions that destroy (forms with data-confirm).
"use strict";

const POLL_MS = 2000;

let shown = null; // the live part last put in the page, as the server sent it

async function refresh(main) {
  if (document.hidden) {
    return;
  }
  try {
    const response = await fetch(window.location.href, {
      headers: { "X-Aqueue-Fragment": "1" },
      credentials: "same-origin",
    });
    const html = await response.text();
    // Unchanged: left alone, so a text being selected or a button being pressed stays.
    if (response.ok && html !== shown) {
      main.innerHTML = html;
      shown = html;
    }
  } catch {
    // The server is restarting or the network is down: try again at the next tick.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.querySelector("main[data-live]");
  if (main) {
    setInterval(() => refresh(main), POLL_MS);
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
