// The console's script: every page works without it; it adds live refresh,
// filtering tables as you type, and streamed message searches with progress
// and a cancel button. No libraries, no network beyond this console.
"use strict";

// Whether the user is busy with a field in <main>: focused on one, or has
// changed one (a refresh would throw the text away).
function editing() {
  const active = document.activeElement;
  if (active && active.closest("main") && active.matches("input, textarea, select")) return true;
  for (const el of document.querySelectorAll("main input, main textarea")) {
    if (el.type === "checkbox" || el.type === "radio") {
      if (el.checked !== el.defaultChecked) return true;
    } else if (el.type !== "hidden" && el.value !== el.defaultValue) {
      return true;
    }
  }
  for (const sel of document.querySelectorAll("main select")) {
    // Without a `selected` option the first one is the default.
    const marked = [...sel.options].findIndex((o) => o.defaultSelected);
    if (sel.selectedIndex !== Math.max(marked, 0)) return true;
  }
  return false;
}

// Live pages: re-fetch the page every N seconds and swap <main>, unless paused
// or the user is working in a field.
function liveRefresh() {
  const live = document.querySelector(".live[data-refresh]");
  if (!live) return;
  const every = Number(live.dataset.refresh) * 1000;
  let paused = false;
  const button = live.querySelector("button.pause");
  button.addEventListener("click", () => {
    paused = !paused;
    button.textContent = paused ? "resume" : "pause";
  });
  setInterval(async () => {
    if (paused || editing()) return;
    const url = new URL(location.href);
    url.searchParams.delete("msg");
    try {
      const resp = await fetch(url, { headers: { "X-Refresh": "1" } });
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.querySelector("main");
      if (fresh) {
        document.querySelector("main").replaceChildren(...fresh.childNodes);
        wireFilters();
      }
    } catch (e) { /* the next tick tries again */ }
  }, every);
}

// <input data-filter="#table">: hide rows whose data-name lacks the text.
function wireFilters() {
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const apply = () => {
      const table = document.querySelector(input.dataset.filter);
      if (!table) return;
      const needle = input.value.trim();
      for (const row of table.querySelectorAll("tbody tr")) {
        row.hidden = needle !== "" && !(row.dataset.name || "").includes(needle);
      }
    };
    input.oninput = apply;
    apply();
  }
}

// The message search, streamed: progress as it reads, rows as it finds them,
// and Cancel to stop it (closing the stream stops the search on the server).
function streamedSearch() {
  const form = document.querySelector("form#search[data-stream]");
  if (!form || !window.EventSource) return;
  const cancel = form.querySelector("button.cancel");
  const status = document.getElementById("search-status");
  const body = document.querySelector("table#messages tbody");
  let source = null;
  const stop = (text) => {
    if (source) source.close();
    source = null;
    cancel.hidden = true;
    status.innerHTML = "";
    const p = document.createElement("p");
    p.className = "muted";
    p.id = "summary";
    p.textContent = text;
    status.appendChild(p);
  };
  cancel.addEventListener("click", () => stop("Cancelled."));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (source) source.close();
    const params = new URLSearchParams(new FormData(form));
    history.replaceState(null, "", form.action + "?" + params);
    body.replaceChildren();
    status.innerHTML = '<p class="muted" id="progress"><progress></progress> <span>searching</span></p>';
    cancel.hidden = false;
    const url = form.dataset.stream + "?" + params;
    let opened = false;
    source = new EventSource(url);
    source.onopen = () => { opened = true; };
    source.addEventListener("progress", (e) => {
      const span = status.querySelector("#progress span");
      if (span) span.textContent = e.data;
    });
    source.addEventListener("row", (e) => body.insertAdjacentHTML("beforeend", e.data));
    source.addEventListener("done", (e) => stop(e.data));
    source.addEventListener("failed", (e) => stop("Failed: " + e.data));
    source.onerror = () => {
      // Never let the browser reconnect: that would run the search again.
      if (source) source.close();
      if (opened) {
        stop("The search stopped: the connection was lost.");
        return;
      }
      // It never opened: a bad query is answered with an error page. Read
      // its status and message, and drop the connection if it is a stream.
      const abort = new AbortController();
      fetch(url, { signal: abort.signal }).then(async (r) => {
        if (r.ok) {
          abort.abort();
          stop("The search could not be streamed.");
          return;
        }
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        const err = doc.querySelector("#error");
        stop(err ? err.textContent : "The search failed.");
      }).catch(() => stop("The search failed."));
    };
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveRefresh();
  wireFilters();
  streamedSearch();
});
