(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.remove("no-js");
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };

  // Sortable tables: each unit (a row, or a <tbody> of a case and its details) moves as one.
  function units(table) {
    return table.classList.contains("units") ? Array.prototype.slice.call(table.tBodies)
      : Array.prototype.slice.call(table.tBodies[0].rows);
  }
  function key(unit, col, numeric) {
    var row = unit.rows ? unit.rows[0] : unit;
    var cell = row.cells[col];
    var v = cell ? (cell.getAttribute("data-v") !== null ? cell.getAttribute("data-v") : cell.textContent.trim()) : "";
    if (!numeric) { return v.toLowerCase(); }
    var x = parseFloat(v);
    return isNaN(x) ? -Infinity : x;
  }
  function sortBy(table, th, dir) {
    var col = th.cellIndex, numeric = th.getAttribute("data-type") === "num";
    var list = units(table).map(function (u, i) { return [key(u, col, numeric), i, u]; });
    list.sort(function (a, b) { return a[0] < b[0] ? -dir : a[0] > b[0] ? dir : a[1] - b[1]; });
    var parent = table.classList.contains("units") ? table : table.tBodies[0];
    list.forEach(function (item) { parent.appendChild(item[2]); });
    each(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }
  each(document.querySelectorAll("table.sortable"), function (table) {
    each(table.tHead.rows[0].cells, function (th) {
      if (!th.hasAttribute("data-type")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "descending" ? 1 : th.getAttribute("aria-sort") === "ascending" ? -1
          : (th.getAttribute("data-type") === "num" ? -1 : 1);
        sortBy(table, th, dir);
        save();
      });
    });
  });

  // Expanding a case: its detail row is the second row of its <tbody>.
  function setOpen(tbody, open) {
    var detail = tbody.rows[1], button = tbody.querySelector("button.expand");
    if (!detail || !button) { return; }
    detail.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.textContent = open ? "hide" : "show";
  }
  each(document.querySelectorAll("button.expand"), function (button) {
    button.addEventListener("click", function () {
      var tbody = button.closest("tbody");
      setOpen(tbody, tbody.rows[1].hidden);
    });
  });

  // Filtering the case table by text, status and the suspect flag; the state lives in the URL's #hash.
  var cases = document.getElementById("cases");
  var q = document.getElementById("f-text"), status = document.getElementById("f-status");
  var suspect = document.getElementById("f-suspect"), shown = document.getElementById("f-shown");
  function apply() {
    if (!cases) { return; }
    var text = q.value.trim().toLowerCase(), n = 0, bodies = cases.tBodies;
    each(bodies, function (b) {
      var ok = (!text || b.getAttribute("data-search").indexOf(text) >= 0 || b.id.indexOf(text) === 4) &&
        (!status.value || b.getAttribute("data-status") === status.value) &&
        (!suspect.checked || b.classList.contains("suspect"));
      b.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = n + " of " + bodies.length + " shown";
  }
  function save() {
    if (!cases || !window.history.replaceState) { return; }
    var state = [], sorted = cases.tHead.querySelector("th[aria-sort]");
    if (q.value) { state.push("q=" + encodeURIComponent(q.value)); }
    if (status.value) { state.push("status=" + encodeURIComponent(status.value)); }
    if (suspect.checked) { state.push("suspect=1"); }
    if (sorted) { state.push("sort=" + sorted.getAttribute("data-key") + (sorted.getAttribute("aria-sort") === "ascending" ? ":asc" : ":desc")); }
    window.history.replaceState(null, "", state.length ? "#" + state.join("&") : window.location.pathname);
  }
  function restore() {
    var hash = decodeURIComponent(window.location.hash.slice(1));
    if (hash.indexOf("run-") === 0) {
      var target = document.getElementById(hash);
      if (target && target.tagName === "TBODY") {
        target.hidden = false;
        setOpen(target, true);
        target.scrollIntoView();
      }
      return;
    }
    if (!cases) { return; }
    window.location.hash.slice(1).split("&").forEach(function (part) {
      var kv = part.split("="), value = decodeURIComponent(kv[1] || "");
      if (kv[0] === "q") { q.value = value; }
      if (kv[0] === "status") { status.value = value; }
      if (kv[0] === "suspect") { suspect.checked = value === "1"; }
      if (kv[0] === "sort") {
        var spec = value.split(":"), th = cases.tHead.querySelector('th[data-key="' + spec[0].replace(/[^a-z_]/g, "") + '"]');
        if (th) { sortBy(cases, th, spec[1] === "asc" ? 1 : -1); }
      }
    });
    apply();
  }
  if (cases) {
    each(document.querySelectorAll(".js-only"), function (el) { el.hidden = false; });
    [q, status, suspect].forEach(function (el) { el.addEventListener("input", function () { apply(); save(); }); });
    suspect.addEventListener("change", function () { apply(); save(); });
    document.getElementById("f-open").addEventListener("click", function () {
      each(cases.tBodies, function (b) { if (!b.hidden) { setOpen(b, true); } });
    });
    document.getElementById("f-close").addEventListener("click", function () { each(cases.tBodies, function (b) { setOpen(b, false); }); });
  }
  window.addEventListener("hashchange", restore);
  restore();
  root.setAttribute("data-ready", "1");
})();
