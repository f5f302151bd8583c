// orderflow console: the only script (CSP allows 'self' scripts, none inline). Hints only: the server decides.
"use strict";
(function () {
  var edited = false;

  // A form marked data-once submits once: a double click sends one request (the server also sends a form id once).
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      edited = true;
    });
    form.addEventListener("input", function () { edited = true; });
  });

  // The order page reloads when a new status arrives, unless the person is editing a form.
  var poll = document.body.dataset.poll;
  if (poll) {
    setInterval(function () {
      if (edited) { return; }
      fetch(poll, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (data) {
        if (data.stamp && data.stamp !== document.body.dataset.stamp) { window.location.reload(); }
      }).catch(function () {});
    }, 1000);
  }

  // Order lines: add and remove rows, renumbering the contract paths lines[i].field; the total follows the lines.
  var table = document.getElementById("lines");
  if (!table) { return; }
  var body = table.tBodies[0];
  var total = document.querySelector("input[name=total_amount]");
  var totalTouched = total && total.value !== "";
  function renumber() {
    Array.prototype.forEach.call(body.rows, function (row, i) {
      row.querySelectorAll("input").forEach(function (input) {
        input.name = input.name.replace(/^lines\[\d+\]/, "lines[" + i + "]");
      });
    });
  }
  function recompute() {
    if (!total || totalTouched) { return; }
    var sum = 0, ok = true;
    Array.prototype.forEach.call(body.rows, function (row) {
      var q = row.querySelector("input[name$='.quantity']").value.trim();
      var p = row.querySelector("input[name$='.unit_price']").value.trim();
      if (!q && !p) { return; }
      if (!/^\d+$/.test(q) || !/^\d+(\.\d{1,4})?$/.test(p)) { ok = false; return; }
      sum += Math.round(parseInt(q, 10) * parseFloat(p) * 10000);
    });
    total.value = ok && sum ? (sum / 10000).toFixed(2) : "";
  }
  document.getElementById("add-line").addEventListener("click", function () {
    var row = body.rows[body.rows.length - 1].cloneNode(true);
    row.querySelectorAll("input").forEach(function (input) { input.value = input.name.endsWith(".uom") ? "EA" : ""; });
    row.querySelectorAll(".field-reason").forEach(function (el) { el.remove(); });
    body.appendChild(row);
    renumber();
  });
  body.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-line")) { return; }
    var row = event.target.closest("tr");
    if (body.rows.length > 1) { row.remove(); } else { row.querySelectorAll("input").forEach(function (i) { i.value = ""; }); }
    renumber();
    recompute();
  });
  body.addEventListener("input", recompute);
  if (total) { total.addEventListener("input", function () { totalTouched = total.value !== ""; }); }

  // Hints while typing (never blocking: intake's answer is the one that counts).
  document.querySelectorAll("input[data-hint]").forEach(function (input) {
    input.addEventListener("blur", function () { input.title = input.value ? "" : input.dataset.hint; });
  });
})();
