// conveyor dashboard: confirmations, relative times, and live pages (server-sent events).
// Plain browser JavaScript, no build step and nothing fetched from elsewhere.
"use strict";
(function () {
  const base = document.body.dataset.base || "";
  const dialog = document.getElementById("confirm");
  let pending = null;

  // Every action form asks first, in a dialog of the page (not window.confirm).
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const question = form.dataset && form.dataset.confirm;
    if (!question || form.dataset.confirmed === "1") return;
    event.preventDefault();
    pending = form;
    document.getElementById("confirm-text").textContent = question;
    dialog.showModal();
  });
  dialog.addEventListener("close", function () {
    if (dialog.returnValue === "ok" && pending) {
      pending.dataset.confirmed = "1";
      pending.requestSubmit();
    }
    pending = null;
  });

  function span(seconds) {
    if (seconds < 60) return Math.round(seconds) + " s";
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }
  function refreshTimes(root) {
    const now = Date.now() / 1000;
    root.querySelectorAll("time[data-ts]").forEach(function (node) {
      const seconds = now - parseFloat(node.dataset.ts);
      node.textContent = seconds < 0 ? "in " + span(-seconds) : seconds < 1 ? "just now" : span(seconds) + " ago";
    });
  }
  setInterval(function () { refreshTimes(document); }, 1000);

  // Live: when the history moves, fetch this page again and swap its content, unless
  // the user is busy with it (a dialog open, a field focused, an older page of tasks).
  const dot = document.getElementById("live-dot");
  const EVERY_MS = 700;  // at most this often: a busy queue moves the history 5 times a second
  let busy = false, again = false, last = 0;
  function userBusy() {
    const active = document.activeElement;
    return dialog.open || (active && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName)) ||
      document.querySelector("details[open]") !== null;
  }
  async function reload() {
    if (busy) { again = true; return; }
    if (userBusy()) return;
    const wait = last + EVERY_MS - Date.now();
    if (wait > 0) { busy = true; setTimeout(function () { busy = false; reload(); }, wait); return; }
    last = Date.now();
    busy = true;
    try {
      const response = await fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" });
      if (response.ok && response.redirected === false) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("content");
        if (fresh && !userBusy()) {
          const notice = document.querySelector(".banner.note");
          document.getElementById("content").innerHTML = fresh.innerHTML;
          // keep the line saying what the last action did
          if (notice && !document.querySelector(".banner.note")) document.querySelector("main").before(notice);
          refreshTimes(document);
        }
      }
    } catch (error) { /* the next event tries again */ }
    busy = false;
    if (again) { again = false; setTimeout(reload, 250); }
  }
  if (document.body.dataset.live === "on" && window.EventSource) {
    let version = null;
    const source = new EventSource(base + "/live");
    source.onopen = function () { dot.classList.add("on"); };
    source.onerror = function () { dot.classList.remove("on"); };
    source.onmessage = function (message) {
      if (version !== null && message.data !== version) reload();
      version = message.data;
    };
  }
})();
