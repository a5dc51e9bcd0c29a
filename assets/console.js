// switchboard console: refreshes the overview's live figures (#live) from the JSON endpoint its
// data-source names, every 5 seconds, with the session cookie. No other script, no inline code
// (the pages' Content-Security-Policy allows only files from /admin/assets/). Every value is
// set as text, never as markup.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) return;
  var source = live.getAttribute("data-source");
  var timer = null;

  function pick(data, path) {
    return path.split(".").reduce(function (value, key) {
      return value == null ? value : value[key];
    }, data);
  }

  function rows(tbody, pairs, linkJobs) {
    var labels = Array.prototype.map.call(
      tbody.parentNode.querySelectorAll("thead th"),
      function (th) { return th.textContent; }
    );
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    pairs.forEach(function (pair) {
      var tr = document.createElement("tr");
      pair.forEach(function (value, i) {
        var td = document.createElement("td");
        td.setAttribute("data-label", labels[i] || "");
        if (i === 0 && linkJobs) {
          var a = document.createElement("a");
          a.href = "/admin/jobs?state=" + encodeURIComponent(value);
          a.textContent = value;
          td.appendChild(a);
        } else {
          td.textContent = String(value);
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  function show(data) {
    live.querySelectorAll("[data-live]").forEach(function (el) {
      var key = el.getAttribute("data-live");
      var value = pick(data, key);
      if (value == null) return;
      el.textContent = /_per_s$/.test(key) ? Number(value).toFixed(1) : String(value);
    });
    live.querySelectorAll("[data-live-points]").forEach(function (line) {
      line.setAttribute("points", data.chart[line.getAttribute("data-live-points")] || "");
    });
    live.querySelectorAll("[data-live-rows]").forEach(function (tbody) {
      var key = tbody.getAttribute("data-live-rows");
      if (Array.isArray(data[key])) rows(tbody, data[key], key === "jobs");
    });
  }

  function stop(message) {
    clearInterval(timer);
    var note = document.createElement("p");
    note.className = "error";
    note.textContent = message;
    live.parentNode.insertBefore(note, live);
  }

  function refresh() {
    fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          stop("Signed out: reload the page to sign in again.");
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) { if (data) show(data); })
      .catch(function () { /* the next round tries again */ });
  }

  timer = setInterval(refresh, 5000);
})();
