/* Small page behaviour for the dashboard: sync status polling, simulated devices, form niceties.
   Plain JS, no build step; every page works without it (forms post, the server renders). */
(function () {
  "use strict";

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    });
  }

  /* Seconds since the epoch or ISO 8601 → "15:19:03 UTC" (world time, as the server reports it). */
  function formatTime(value) {
    var date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return isNaN(date) ? String(value) : date.toISOString().slice(11, 19) + " UTC";
  }

  /* Sync: poll the setting every second; the button is enabled only when the controller's rules allow. */
  function watchSync(panel) {
    var button = document.getElementById("sync-button");
    var message = document.getElementById("sync-message");
    var bar = document.getElementById("sync-wait");
    var reload = document.getElementById("sync-reload");
    var wasRunning = false;
    function tick() {
      getJSON(panel.dataset.statusUrl).then(function (res) {
        if (!res.ok) { message.textContent = res.body.error || "The sync status could not be read."; return; }
        var s = res.body;
        button.disabled = !s.canSync;
        if (message.textContent !== s.message) message.textContent = s.message;
        bar.hidden = s.canSync || s.remainingSeconds <= 0;
        bar.value = s.waitFraction;
        var running = s.syncStatus === "running";
        if (wasRunning && !running) reload.hidden = false;
        wasRunning = running;
      }).catch(function () { /* the next tick tries again */ });
    }
    tick();
    setInterval(tick, 1000);
  }

  /* Simulated devices: rebuild the table from the simulation's list every second. */
  function watchDevices(section) {
    var status = document.getElementById("sim-status");
    var table = document.getElementById("sim-table");
    var body = table.querySelector("tbody");
    function cell(row, text, cls) {
      var td = document.createElement("td");
      td.textContent = text === undefined || text === null || text === "" ? "—" : String(text);
      if (cls) td.className = cls;
      row.appendChild(td);
      return td;
    }
    function tick() {
      getJSON(section.dataset.url).then(function (res) {
        var data = res.body;
        if (!data.available) {
          table.hidden = true;
          status.textContent = "No simulated devices here (" + data.reason + "). Start a world with devices to watch them enroll.";
          return;
        }
        var devices = data.devices;
        var enrolled = devices.filter(function (d) { return d.enrolled; }).length;
        status.textContent = devices.length
          ? devices.length + " simulated devices, " + enrolled + " enrolled."
          : "No simulated device has been powered on yet.";
        var rows = document.createDocumentFragment();
        devices.forEach(function (d) {
          var tr = document.createElement("tr");
          tr.dataset.serial = d.serial_number;
          var serial = cell(tr, d.serial_number, "mono");
          if (d.model) serial.title = d.model;
          var phase = d.state || d.phase;
          var pill = document.createElement("span");
          pill.className = "pill" + (d.enrolled ? " ok" : (/fail|error/i.test(phase || "") ? " bad" : " run"));
          pill.textContent = phase || "—";
          cell(tr, "").replaceChildren(pill);
          cell(tr, d.pane);
          var last = d.last_entry;  // [pane, outcome, time, detail]
          var step = cell(tr, last ? last[0] + ": " + last[1] : "");
          if (last && last[1] === "error") step.className = "bad-text";
          if (last && last[3]) step.title = String(last[3]);
          cell(tr, d.enrolled ? "Yes" : "No");
          cell(tr, d.updated_at ? formatTime(d.updated_at) : "");
          rows.appendChild(tr);
        });
        body.replaceChildren(rows);
        table.hidden = false;
      }).catch(function () { status.textContent = "The simulated devices could not be read; retrying…"; });
    }
    tick();
    setInterval(tick, 1000);
  }

  /* A select that reveals a block for one value (Sync with computers → certificates). */
  function wireReveal(select) {
    var target = document.getElementById(select.dataset.shows);
    function update() { target.hidden = select.value !== select.dataset.showsWhen; }
    select.addEventListener("change", update);
    update();
  }

  function wireSelectAll(box) {
    box.addEventListener("change", function () {
      document.querySelectorAll('input[name="serial"]').forEach(function (c) { c.checked = box.checked; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.getElementById("sync-panel");
    if (panel) watchSync(panel);
    var sim = document.getElementById("sim-devices");
    if (sim) watchDevices(sim);
    document.querySelectorAll("select[data-shows]").forEach(wireReveal);
    var all = document.getElementById("select-all");
    if (all) wireSelectAll(all);
  });
})();
