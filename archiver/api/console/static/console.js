// archiver console: a little progressive enhancement (every page works without it).
// - forms with data-confirm ask before they are sent;
// - the policy form previews the policy as it is edited (POST .../preview, an HTML fragment);
// - rows and pages of running runs (data-live) refresh their counters every 2 s until the run ends.
// Loaded from this origin (Content-Security-Policy: script-src 'self'); no inline script anywhere.
(function () {
  "use strict";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function onReady(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function livePreview() {
    var form = document.getElementById("policy-form");
    var target = document.getElementById("preview");
    if (!form || !target) { return; }
    var url = form.getAttribute("data-preview-url");
    var timer = null;
    var sequence = 0;
    function refresh() {
      var mine = ++sequence;
      var body = new URLSearchParams(new FormData(form));
      body.delete("action");
      target.setAttribute("aria-busy", "true");
      fetch(url, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRF-TOKEN": csrf(), "X-Requested-With": "fetch", "Accept": "text/html" }
      }).then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.text();
      }).then(function (html) {
        if (html !== null && mine === sequence) { target.innerHTML = html; }
      }).catch(function () {
        if (mine === sequence) { target.textContent = "The preview could not be loaded."; }
      }).then(function () { target.removeAttribute("aria-busy"); });
    }
    function schedule() {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 500);
    }
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    refresh();
  }

  function number(value) {
    return typeof value === "number" ? value.toLocaleString("en-US") : (value === null ? "" : String(value));
  }

  function liveRuns() {
    var live = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
    if (!live.length) { return; }
    function poll() {
      live = live.filter(function (el) { return el.hasAttribute("data-live"); });
      if (!live.length) { return; }
      live.forEach(function (el) {
        fetch(el.getAttribute("data-live"), {
          credentials: "same-origin", headers: { "Accept": "application/json", "X-Requested-With": "fetch" }
        }).then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }   // the page view renews the session
          return r.ok ? r.json() : null;
        }).then(function (run) {
          if (!run) { return; }
          var derived = {
            percent_text: run.percent === null ? "starting…" : run.percent.toFixed(1) + " %",
            rate_text: run.rate ? Math.round(run.rate).toLocaleString("en-US") + " rows/s" : "",
            eta_text: run.eta_seconds === null || run.eta_seconds === undefined ? "" :
              "about " + Math.round(run.eta_seconds) + " s left"
          };
          el.querySelectorAll("[data-field]").forEach(function (cell) {
            var name = cell.getAttribute("data-field");
            if (name in derived) { cell.textContent = derived[name]; return; }
            if (!(name in run)) { return; }
            if (cell.tagName === "PROGRESS") {
              if (run[name] !== null) { cell.value = run[name]; }
              return;
            }
            var value = run[name];
            if (name === "duration_seconds") { value = value === null ? "…" : value.toFixed(1) + " s"; }
            else if (name === "status") { cell.className = "badge status-" + value; }
            cell.textContent = name === "duration_seconds" || name === "status" ? value : number(value);
          });
          if (run.status !== "running") {
            el.removeAttribute("data-live");
            if (el.id === "run-detail") { window.location.reload(); }   // the final record, without the cancel button
          }
        }).catch(function () { /* try again at the next tick */ });
      });
      window.setTimeout(poll, 2000);
    }
    window.setTimeout(poll, 2000);
  }

  // On a phone, a table page opens with its filter folded (unless a filter is set), so rows come first.
  function foldFilters() {
    var box = document.querySelector("details.filter-box");
    if (box && !box.hasAttribute("data-keep-open") && window.matchMedia("(max-width: 760px)").matches) {
      box.open = false;
    }
  }

  onReady(function () {
    foldFilters();
    confirmations();
    livePreview();
    liveRuns();
  });
})();
