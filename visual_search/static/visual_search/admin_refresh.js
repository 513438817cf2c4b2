/* The trained versions' pages while a version trains or builds: the page reloads itself every few
 * seconds to show the progress. A <meta http-equiv="refresh"> did that unconditionally, every 5 s:
 * a screen reader started reading the page again from the top, a keyboard's focus went back to the
 * start, and a half-chosen action was lost (WCAG 2.2.1, timing adjustable). Now:
 *  - a note at the top of the content says so, with a button that stops the updates (and starts
 *    them again); stopped stays stopped for this page in this tab (sessionStorage);
 *  - it reloads only while nobody is using the page: nothing focused, no row selected, no text
 *    selected, and the tab visible; otherwise it waits for the next round.
 * Without this script the page does not reload: staff reload it themselves. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var seconds = parseInt(script.getAttribute("data-vs-refresh"), 10) || 5;
  var key = "visual_search.refresh_off:" + window.location.pathname;
  var stopped = false;
  try { stopped = window.sessionStorage.getItem(key) === "1"; } catch (error) { /* storage refused: updates on */ }

  function idle() {
    var active = document.activeElement;
    if (active && active !== document.body && active !== document.documentElement) { return false; }
    if (document.querySelector("#changelist-form input.action-select:checked, #action-toggle:checked")) { return false; }
    var selection = window.getSelection ? window.getSelection() : null;
    if (selection && !selection.isCollapsed) { return false; }
    return document.visibilityState !== "hidden";
  }

  function start() {
    var holder = document.getElementById("content-main") || document.getElementById("content");
    if (!holder) { return; }
    var note = document.createElement("p");
    note.className = "vs-refresh";
    var words = document.createElement("span");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button vs-refresh-button";
    function show() {
      words.textContent = (stopped ? script.getAttribute("data-vs-refresh-stopped") : script.getAttribute("data-vs-refresh-says")) + " ";
      button.textContent = stopped ? script.getAttribute("data-vs-refresh-start") : script.getAttribute("data-vs-refresh-stop");
    }
    button.addEventListener("click", function () {
      stopped = !stopped;
      try {
        if (stopped) { window.sessionStorage.setItem(key, "1"); } else { window.sessionStorage.removeItem(key); }
      } catch (error) { /* this page only */ }
      show();
    });
    show();
    note.appendChild(words);
    note.appendChild(button);
    holder.insertBefore(note, holder.firstChild);
    window.setInterval(function () {
      if (!stopped && idle()) { window.location.reload(); }
    }, seconds * 1000);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
