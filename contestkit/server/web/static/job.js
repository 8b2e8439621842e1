// Live progress of a running job: polls the JSON API and updates the page's figures in place.
// Without this script the page is still complete (it shows the figures as of its loading).
(function () {
  "use strict";
  var section = document.getElementById("job");
  if (!section) return;
  var id = section.getAttribute("data-job");
  var shown = section.getAttribute("data-status");
  var ACTIVE = { queued: true, running: true };

  function num(v) { return v === undefined || v === null ? "\u2013" : Number(v).toLocaleString("en-US"); }
  function score(v) {
    return v === undefined || v === null ? "\u2013"
      : Number(v).toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  }
  function duration(s) {
    if (s === undefined || s === null) return "\u2013";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function set(root, name, text) {
    var el = root.querySelector('[data-f="' + name + '"]');
    if (el && el.textContent !== text) el.textContent = text;  // text, never HTML
    return el;
  }
  function setStatus(el, state) {
    if (!el) return;
    el.className = "status s-" + state.replace(/[^a-z]/g, "");
  }

  function update(doc) {
    setStatus(set(section, "job-status", doc.status), doc.status);
    set(section, "job-score", score(doc.score));
    (doc.workers || []).forEach(function (w, i) {
      var level = section.querySelector('[data-level="' + i + '"]');
      if (!level) return;
      setStatus(set(level, "state", w.state), w.state);
      set(level, "timesteps", num(w.timesteps));
      set(level, "episodes", num(w.episodes));
      set(level, "eta", duration(w.eta));
      set(level, "score", score(w.score));
      var bar = level.querySelector('[data-f="progress"]');
      if (bar) bar.value = w.progress || 0;
    });
    if (ACTIVE[shown] && !ACTIVE[doc.status]) {
      // The job ended: load the page again once for its scores, curves, logs and files.
      window.location.reload();
      return false;
    }
    return true;
  }

  function poll() {
    fetch("/rest/job/status/" + encodeURIComponent(id), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) { if (!doc || update(doc)) window.setTimeout(poll, 2000); })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
