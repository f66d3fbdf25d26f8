/* Tollgate console: the little JavaScript the pages use. Everything here is an enhancement;
   pages work without it (forms post, links navigate). No globals besides TollgateConsole. */
(function () {
  "use strict";

  /* --- phone-width menu ------------------------------------------------------------------ */
  function setupNavToggle() {
    var button = document.querySelector(".nav-toggle");
    var nav = document.getElementById("site-nav");
    if (!button || !nav) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      nav.classList.toggle("open", open);
      if (open) {
        var first = nav.querySelector("a");
        if (first) first.focus();
      }
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && nav.classList.contains("open")) {
        nav.classList.remove("open");
        button.setAttribute("aria-expanded", "false");
        button.focus();
      }
    });
  }

  /* --- copy buttons: <button data-copy="element-id"> --------------------------------------- */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy") ? resolve() : reject(new Error("copy refused"));
      } catch (err) {
        reject(err);
      } finally {
        document.body.removeChild(area);
      }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById(button.getAttribute("data-copy-status") || "");
    if (!source) return;
    var text = "value" in source ? source.value : source.textContent;
    copyText(text).then(function () {
      button.textContent = "Copied";
      if (status) status.textContent = "Copied to the clipboard.";
    }, function () {
      if (source.select) source.select();
      if (status) status.textContent = "Copy failed: the key is selected, press Ctrl+C (⌘C).";
    });
  });

  /* --- confirm before destructive plain forms: <form data-confirm="…"> ------------------------ */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  /* --- filter table rows: <input data-filter-rows="#table-id"> ------------------------------ */
  document.addEventListener("input", function (event) {
    var input = event.target.closest("[data-filter-rows]");
    if (!input) return;
    var table = document.querySelector(input.getAttribute("data-filter-rows"));
    if (!table) return;
    var needle = input.value.trim().toLowerCase();
    table.querySelectorAll("tbody tr[data-filter-text]").forEach(function (row) {
      var hay = row.getAttribute("data-filter-text").toLowerCase();
      var checked = row.querySelector("input:checked");
      row.hidden = needle !== "" && hay.indexOf(needle) === -1 && !checked;
    });
  });

  /* --- charts: <canvas data-chart="json-script-id"> ----------------------------------------- */
  var PALETTE = ["#1f4fd1", "#d1495b", "#2a9d8f", "#e09f3e", "#6a4c93", "#3a86ff", "#8ab17d", "#b5651d",
                 "#c2185b", "#455a64"];
  var usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 2,
                                              maximumFractionDigits: 4 });
  var count = new Intl.NumberFormat("en-US");

  function formatValue(unit, value) {
    return unit === "usd" ? usd.format(value) : count.format(value);
  }

  function drawChart(canvas) {
    if (!window.Chart || canvas.dataset.drawn) return;
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source) return;
    var spec = JSON.parse(source.textContent);
    var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    var datasets = spec.datasets.map(function (set, i) {
      return {
        label: set.label,
        data: set.data.map(Number),
        backgroundColor: PALETTE[i % PALETTE.length],
        borderWidth: 0,
        stack: "total"
      };
    });
    canvas.dataset.drawn = "1";
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reduceMotion ? false : { duration: 300 },
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, ticks: { autoSkip: true, maxRotation: 0 } },
          y: { stacked: true, beginAtZero: true,
               ticks: { callback: function (v) { return formatValue(spec.unit, v); } } }
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (ctx) { return ctx.dataset.label + ": " + formatValue(spec.unit, ctx.parsed.y); }
            }
          }
        }
      }
    });
  }

  function drawCharts(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(drawChart);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupNavToggle();
    drawCharts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { drawCharts(event.target); });

  /* htmx does not swap error answers: say what happened where the result would have gone. */
  function showProblem(event, text) {
    var target = event.detail && event.detail.target;
    if (!target) return;
    var note = document.createElement("p");
    note.className = "notice error";
    note.setAttribute("role", "alert");
    note.textContent = text;
    if (target.tagName === "TR") {
      var cell = target.querySelector("td:last-child");
      if (cell) cell.appendChild(note);
    } else {
      target.replaceChildren(note);
    }
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    showProblem(event, status === 403 ? "Not allowed: your role cannot make this change."
      : status === 404 ? "Not found: it may have been deleted meanwhile. Reload the page."
      : "The server could not do this (HTTP " + status + "). Try again, or reload the page.");
  });
  document.addEventListener("htmx:sendError", function (event) {
    showProblem(event, "The server could not be reached. Check your connection and try again.");
  });

  window.TollgateConsole = { drawCharts: drawCharts };
})();
