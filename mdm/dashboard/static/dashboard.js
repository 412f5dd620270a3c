/* Small page behaviour for the dashboard: sync status polling, simulated devices drawn live, form niceties.
   Plain JS, no build step; every page works without it (forms post, the server renders). */
(function () {
  "use strict";

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    });
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
        var kind = document.getElementById("sync-kind");
        if (kind && kind.textContent !== s.nextSyncKindText) kind.textContent = s.nextSyncKindText;
        if (kind) kind.classList.toggle("full", s.nextSyncKind === "full");
        var full = document.getElementById("sync-next-full");
        if (full && s.nextFullSyncAvailableDateTime) full.textContent = formatWorld(s.nextFullSyncAvailableDateTime);
      }).catch(function () { /* the next tick tries again */ });
    }
    tick();
    setInterval(tick, 1000);
  }

  function esc(text) {
    return String(text === undefined || text === null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST", cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { ok: r.ok, status: r.status, body: b }; });
    });
  }

  /* World time as the dashboard shows it elsewhere: "2026-12-02 12:00 UTC". */
  function formatWorld(iso) {
    var date = new Date(iso);
    return isNaN(date) ? "—" : date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  /* The world clock controls: each button POSTs the call shown beside it, through the dashboard. */
  function wireClock(box) {
    var now = document.getElementById("world-now");
    box.querySelectorAll("button[data-advance]").forEach(function (button) {
      button.addEventListener("click", function () {
        button.disabled = true;
        postJSON(box.dataset.url, { advance_seconds: Number(button.dataset.advance) }).then(function (res) {
          if (res.ok && res.body.now) { now.textContent = formatWorld(res.body.now); now.dataset.now = res.body.now; }
          else now.textContent = res.body.error || "The clock did not move.";
        }).catch(function () { now.textContent = "The simulation could not be reached."; })
          .then(function () { button.disabled = false; });
      });
    });
    return function (iso) { if (iso) { now.textContent = formatWorld(iso); now.dataset.now = iso; } };
  }

  /* -- drawing a device ----------------------------------------------------------------------------- */
  var ICONS = {
    apple: "M16.4 12.6c0-2.3 1.9-3.4 2-3.5-1.1-1.6-2.8-1.8-3.4-1.8-1.4-.1-2.8.9-3.5.9-.7 0-1.8-.8-3-.8-1.5 0-3 .9-3.8 2.3-1.6 2.8-.4 7 1.2 9.3.8 1.1 1.7 2.4 2.9 2.3 1.2 0 1.6-.7 3-.7s1.8.7 3 .7c1.3 0 2-1.1 2.8-2.3.9-1.3 1.2-2.5 1.2-2.6 0 0-2.4-.9-2.4-3.8zM14.2 5.8c.6-.8 1.1-1.8 1-2.8-.9 0-2 .6-2.6 1.4-.6.7-1.1 1.7-.9 2.7 1 .1 2-.5 2.5-1.3z",
    gear: "M12 8.5a3.5 3.5 0 1 0 0 7a3.5 3.5 0 1 0 0-7zM12 2.5v3M12 18.5v3M2.5 12h3M18.5 12h3M5.3 5.3l2.1 2.1M16.6 16.6l2.1 2.1M5.3 18.7l2.1-2.1M16.6 7.4l2.1-2.1",
    globe: "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18zM3 12h18M12 3c3 3.5 3 14.5 0 18M12 3c-3 3.5-3 14.5 0 18",
    wifi: "M2 9a15 15 0 0 1 20 0M5 12.5a10 10 0 0 1 14 0M8.5 16a5 5 0 0 1 7 0M12 19.5h.01",
    lock: "M6 11h12v10H6zM8.5 11V8a3.5 3.5 0 0 1 7 0v3",
    face: "M4 8V5a1 1 0 0 1 1-1h3M16 4h3a1 1 0 0 1 1 1v3M20 16v3a1 1 0 0 1-1 1h-3M8 20H5a1 1 0 0 1-1-1v-3M9 9v1.5M15 9v1.5M12 9v4h-1M9.5 16c1.5 1 3.5 1 5 0",
    fingerprint: "M12 11v4M8.5 9a4 4 0 0 1 7 2.5V14M6 12a6 6 0 0 1 10.5-4M9 13v2a3 3 0 0 0 .7 2M15.5 17.5c.3-1 .5-2 .5-3.5M4.5 15c.3-1 .5-2 .5-3a7 7 0 0 1 12-5",
    person: "M12 12a4 4 0 1 0 0-8a4 4 0 1 0 0 8zM4 21c1-4 4.5-6 8-6s7 2 8 6",
    hands: "M8 11a3 3 0 1 0 0-6a3 3 0 1 0 0 6zM16 11a3 3 0 1 0 0-6a3 3 0 1 0 0 6zM2 20c.8-3 3.2-5 6-5s5.2 2 6 5M12.5 16.5c1-1 2.2-1.5 3.5-1.5 2.8 0 5.2 2 6 5",
    transfer: "M7 4v14M7 18l-3-3M7 18l3-3M17 20V6M17 6l-3 3M17 6l3 3",
    shield: "M12 3l7 3v5c0 5-3.5 8.5-7 10-3.5-1.5-7-5-7-10V6z",
    doc: "M7 3h7l4 4v14H7zM14 3v4h4M9.5 12h6M9.5 15.5h6",
    update: "M20 12a8 8 0 1 1-2.3-5.7M20 4v5h-5",
    location: "M21 3L3 10.5l7.5 2.9L13.5 21z",
    siri: "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z",
    hourglass: "M7 3h10M7 21h10M8 3c0 5 8 5 8 9s-8 4-8 9M16 3c0 5-8 5-8 9s8 4 8 9",
    card: "M3 6h18v12H3zM3 10h18M6 15h4",
    chat: "M4 5h16v11H9l-5 4z",
    antenna: "M12 11v10M8.5 7.5a5 5 0 0 0 0 7M15.5 7.5a5 5 0 0 1 0 7M5.5 4.5a9 9 0 0 0 0 13M18.5 4.5a9 9 0 0 1 0 13",
    chart: "M4 20V10M10 20V4M16 20v-7M22 20H2",
    sos: "M3 7h18v10H3zM7.5 10h-2v2h2v2h-2M11 10h2v4h-2zM18.5 10h-2v2h2v2h-2",
    spark: "M12 3l2.2 6.8L21 12l-6.8 2.2L12 21l-2.2-6.8L3 12l6.8-2.2z",
    action: "M9 3h6v18H9zM9 9h6",
    camera: "M3 7h4l2-3h6l2 3h4v12H3zM12 10a3.5 3.5 0 1 0 0 7a3.5 3.5 0 1 0 0-7z",
    home: "M12 4a8 8 0 1 0 0 16a8 8 0 1 0 0-16z",
    sun: "M12 8a4 4 0 1 0 0 8a4 4 0 1 0 0-8zM12 2v2M12 20v2M2 12h2M20 12h2M5 5l1.5 1.5M17.5 17.5L19 19M5 19l1.5-1.5M17.5 6.5L19 5",
    zoom: "M10.5 4a6.5 6.5 0 1 0 0 13a6.5 6.5 0 1 0 0-13zM15.5 15.5L21 21M8 10.5h5M10.5 8v5",
    contrast: "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18zM12 3v18",
    bag: "M5 8h14l-1 13H6zM9 8V6a3 3 0 0 1 6 0v2",
    swipe: "M12 20V5M6 11l6-6 6 6",
    keyboard: "M3 6h18v12H3zM6 10h.01M9 10h.01M12 10h.01M15 10h.01M18 10h.01M8 14h8",
    mic: "M9 4a3 3 0 0 1 6 0v7a3 3 0 0 1-6 0zM5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21",
    briefcase: "M3 8h18v11H3zM8 8V5h8v3M3 13h18"
  };
  var CASES = {
    "space gray": "#7d7e80", "space grey": "#7d7e80", silver: "#d9dadc", gold: "#e3ccb4", "rose gold": "#e6c7c2",
    graphite: "#5c5b57", "sierra blue": "#a7c1d9", "pacific blue": "#2d4e5c", blue: "#3b5f8a", midnight: "#2e3642",
    starlight: "#f0e6d8", purple: "#b7a9d6", "deep purple": "#594f63", red: "#b3122e", "(product)red": "#b3122e",
    black: "#2b2b2d", white: "#f2f2f2", green: "#7fa584", "alpine green": "#576856", yellow: "#f3d774",
    pink: "#f2c9d1", "natural titanium": "#bab5a9", "blue titanium": "#3f4a58", "white titanium": "#e9e7e2",
    "black titanium": "#3b3b3c", "desert titanium": "#bfa48f"
  };
  var APP_COLORS = ["#34c759", "#007aff", "#ff9500", "#ff2d55", "#5856d6", "#ffcc00", "#5ac8fa", "#af52de",
                    "#ff3b30", "#30b0c7", "#a2845e", "#8e8e93", "#32ade6", "#00c7be", "#ff6482", "#64d2ff"];

  function icon(name, extra) {
    if (name === "spinner") return '<span class="ios-spinner" aria-hidden="true"></span>';
    var path = ICONS[name];
    if (!path) return "";
    return '<svg class="ios-icon ' + esc(name) + (extra ? " " + extra : "") + '" viewBox="0 0 24 24" aria-hidden="true"><path d="' + path + '"/></svg>';
  }

  function fill(text, fields) {
    return String(text || "").replace(/\{(\w+)\}/g, function (_m, key) {
      var value = fields[key];
      return value === undefined || value === null ? "" : String(value);
    });
  }

  /* The screen of one transcript entry: the pane's words from the simulation's catalog. */
  function paneHTML(screens, entry, fields, managed) {
    var pane = entry ? entry[1] : "off";
    if (pane === "off") return '<div class="pane off"></div>';
    var outcome = entry[2];
    var screen = screens[pane] || { title: pane, body: "" };
    var f = Object.assign({}, fields, { detail: entry[4] || "" });
    var style = screen.style || "plain";
    if (style === "boot") {
      var bar = pane === "EraseDevice" ? '<div class="erase-bar"><i></i></div>' : "";
      return '<div class="pane boot">' + icon("apple", "filled") + bar + "</div>";
    }
    if (style === "home") {
      var apps = "";
      for (var i = 0; i < 20; i++) apps += '<i style="background:' + APP_COLORS[i % APP_COLORS.length] + '"></i>';
      var dock = "";
      for (var j = 0; j < 4; j++) dock += '<i style="background:' + APP_COLORS[(j * 5 + 3) % APP_COLORS.length] + '"></i>';
      var badge = managed && f.org
        ? '<div class="managed-badge" title="' + esc(fill("This {device} is supervised and managed by {org}.", f)) + '">' +
          icon("briefcase") + "<span>" + esc(fill(screen.badge, f)) + "</span></div>"
        : "";
      return '<div class="pane home"><div class="statusbar">9:41</div><div class="apps">' + apps + "</div>" + badge +
        '<div class="dock">' + dock + "</div></div>";
    }
    if (style === "hello") {
      return '<div class="pane hello"><div class="hello-word">' + esc(fill(screen.title, f)) + '</div><p>' +
        esc(fill(screen.body, f)) + "</p></div>";
    }
    var html = '<div class="pane ' + esc(style) + '">';
    if (screen.icon) html += icon(fill(screen.icon, f));
    if (screen.title) html += "<h4>" + esc(fill(screen.title, f)) + "</h4>";
    if (screen.body) html += "<p>" + esc(fill(screen.body, f)) + "</p>";
    if (screen.rows) {
      html += '<div class="rows">';
      screen.rows.forEach(function (row) {
        html += '<div><span>' + esc(fill(row[0], f)) + "</span><b>" + esc(fill(row[1], f)) + "</b></div>";
      });
      html += "</div>";
    }
    if (outcome === "error") {
      html += '<div class="alert" role="presentation">' + esc(entry[4]) + '</div><div class="btn">Try Again</div>';
    } else if (screen.button) {
      html += '<div class="btn">' + esc(fill(screen.button, f)) + "</div>";
    }
    return html + "</div>";
  }

  function phoneClass(family, biometric, color) {
    var kind = family === "iPad" ? "ipad" : "iphone";
    var bio = biometric === "TouchID" ? "touch" : "face";
    return { cls: "phone " + kind + " " + bio, color: CASES[String(color || "").toLowerCase()] || "#8e8e93" };
  }

  /* -- the fleet ------------------------------------------------------------------------------------- */
  function watchFleet(section) {
    var screensTag = document.getElementById("sim-screens");
    var screens = screensTag ? JSON.parse(screensTag.textContent) : {};
    var grid = document.getElementById("sim-grid");
    var status = document.getElementById("sim-status");
    var live = document.getElementById("sim-live");
    var result = document.getElementById("sim-action-result");
    var api = section.dataset.api;
    var params = new URLSearchParams(location.search);
    var pace = Math.max(5, Number(params.get("pace")) || 600);
    var devices = new Map();
    var busy = new Set();
    var panel = wirePanel();
    var clockBox = document.getElementById("sim-clock");
    var setNow = clockBox ? wireClock(clockBox) : function () {};
    var listed = false;

    function record(serial) {
      var rec = devices.get(serial);
      if (rec) return rec;
      rec = { serial: serial, view: null, played: -1, queue: [], nextAt: 0, entry: null, skipped: [], model: "", family: "iPhone",
              biometric: "FaceID", color: "", fields: {}, managed: false, assigned: false, off: true };
      rec.card = document.createElement("article");
      rec.card.className = "device";
      rec.card.dataset.serial = serial;
      rec.card.innerHTML =
        '<button type="button" class="phone-button" data-act="open" aria-label="Open ' + esc(serial) + '"><div class="phone"><div class="screen" data-pane="off"></div></div></button>' +
        '<div class="device-caption"><div class="device-model"></div><div class="device-serial mono">' + esc(serial) + "</div>" +
        '<span class="pill device-state">Off</span></div>' +
        '<div class="device-buttons"><button type="button" class="mini secondary" data-act="power" title="POST /_sim/devices/' + esc(serial) + '/power-on">Power on</button>' +
        '<button type="button" class="mini secondary" data-act="erase" title="POST /_sim/devices/' + esc(serial) + '/erase">Erase</button>' +
        '<button type="button" class="mini secondary" data-act="open">Timeline</button></div>';
      rec.phone = rec.card.querySelector(".phone");
      rec.screen = rec.card.querySelector(".screen");
      rec.modelEl = rec.card.querySelector(".device-model");
      rec.stateEl = rec.card.querySelector(".device-state");
      devices.set(serial, rec);
      grid.appendChild(rec.card);
      return rec;
    }

    function dress(rec) {
      var look = phoneClass(rec.family, rec.biometric, rec.color);
      rec.phone.className = look.cls;
      rec.phone.style.setProperty("--case", look.color);
      rec.modelEl.textContent = rec.model || rec.family;
      rec.card.dataset.family = rec.family;
    }

    function displayable(e) {
      return e[2] === "shown" || e[2] === "error" || e[1] === "Boot" || e[1] === "EraseDevice";
    }

    /* An erased device waits on Hello: the screen after the progress bar, though no pane was walked yet. */
    function afterErase(list) {
      var last = list[list.length - 1];
      return last && last[1] === "EraseDevice" ? list.concat([[last[0], "Hello", "shown", last[3], ""]]) : list;
    }

    function stateText(rec) {
      var e = rec.entry;
      if (!e) return ["Off", ""];
      if (e[2] === "error") return ["Stopped: " + ((screens[e[1]] || {}).title || e[1]), "bad"];
      if (e[1] === "HomeScreen") return rec.managed ? ["Enrolled", "ok"] : ["Home Screen", ""];
      if (e[1] === "Boot") return ["Starting", "run"];
      if (e[1] === "EraseDevice") return ["Erasing", "warn"];
      if (e[1] === "AwaitingConfiguration") return ["Awaiting configuration", "run"];
      var title = fill((screens[e[1]] || {}).title || e[1], rec.fields) || e[1];
      return ["Setup: " + title, "run"];
    }

    function show(rec, entry) {
      if (entry && entry[1] === "Boot" && /^shut down/.test(entry[4] || "")) entry = null;  // MDM turned it off
      rec.entry = entry;
      // What the audience has seen: enrolled once the Enrollment pane went by (the store is ahead of the screen).
      if (!entry || entry[1] === "EraseDevice" || entry[1] === "Boot") rec.shownEnrolled = false;
      else if (entry[1] === "Enrollment" && entry[2] === "shown") rec.shownEnrolled = true;
      var html = paneHTML(screens, entry, rec.fields, rec.managed);
      rec.screen.innerHTML = html;
      rec.screen.dataset.pane = entry ? entry[1] : "off";
      rec.screen.dataset.outcome = entry ? entry[2] : "";
      var state = stateText(rec);
      rec.stateEl.textContent = state[0];
      rec.stateEl.className = "pill device-state " + state[1];
      if (panel.serial === rec.serial) panel.mirror(rec, html);
    }

    /* One device's view from the simulation: new transcript entries are played one by one. */
    function ingest(view, initial) {
      var rec = record(view.serial_number);
      rec.view = view;
      rec.model = view.model; rec.family = view.family; rec.biometric = view.biometric; rec.color = view.color || rec.color;
      rec.fields = view.fields || {};
      rec.managed = view.enrolled && view.managed;
      rec.off = !view.powered;
      dress(rec);
      var entries = view.entries || [];
      var fresh = entries.filter(function (e) { return e[0] > rec.played; });
      fresh.forEach(function (e) { if (e[2] === "skipped" && rec.skipped.indexOf(e[1]) < 0) rec.skipped.push(e[1]); if (e[1] === "EraseDevice") rec.skipped = []; });
      rec.played = Math.max(rec.played, (view.recorded || 0) - 1);
      if (!view.powered) { rec.queue = []; busy.delete(rec); show(rec, null); return; }
      var screensToPlay = afterErase(fresh.filter(displayable));
      if (initial) {
        rec.queue = [];
        busy.delete(rec);
        rec.shownEnrolled = !!view.enrolled;
        var last = afterErase(entries.filter(displayable)).pop();
        show(rec, last || [0, "Hello", "shown", "", ""]);
        return;
      }
      if (screensToPlay.length) {
        rec.queue = rec.queue.concat(screensToPlay);
        busy.add(rec);
      }
      if (panel.serial === rec.serial) panel.refresh(rec);
    }

    function tick() {
      if (!busy.size) return;
      var now = performance.now();
      busy.forEach(function (rec) {
        if (now < rec.nextAt) return;
        show(rec, rec.queue.shift());
        var left = rec.queue.length;
        rec.nextAt = now + (left > 60 ? pace / 6 : left > 25 ? pace / 2 : pace);
        if (!left) busy.delete(rec);
      });
    }
    setInterval(tick, 20);

    function summarize() {
      var all = Array.from(devices.values());
      var on = all.filter(function (r) { return r.entry; }).length;
      var enrolled = all.filter(function (r) { return r.entry && r.shownEnrolled; }).length;
      status.textContent = all.length
        ? all.length + " simulated devices, " + on + " powered on, " + enrolled + " enrolled."
        : "The organisation has no devices yet.";
    }
    setInterval(summarize, 500);

    /* The organisation's devices (off ones too), from the simulation's list. */
    function list() {
      return getJSON(section.dataset.url).then(function (res) {
        var data = res.body;
        if (!data.available) {
          grid.hidden = true;
          status.textContent = "No simulated devices here (" + data.reason + "). Start a world with devices to watch them enroll.";
          return false;
        }
        data.devices.forEach(function (d) {
          var rec = record(d.serial_number);
          rec.model = rec.model || d.model || "";
          rec.family = d.family || (/ipad/i.test(d.model || "") ? "iPad" : rec.family);
          rec.color = rec.color || d.color || "";
          rec.assigned = !!d.profile_uuid;
          dress(rec);
          if (!rec.view || rec.view.fromList) {  // until (or without) the live feed: where the list says it is
            rec.view = { powered: d.phase !== "off", enrolled: d.enrolled, serial_number: d.serial_number, fromList: true };
            rec.managed = !!d.enrolled;
            var pane = d.phase !== "off" ? d.pane : null;
            if ((rec.entry ? rec.entry[1] : null) !== pane) show(rec, pane ? [0, pane, "shown", "", ""] : null);
            rec.shownEnrolled = !!d.enrolled;
          }
        });
        grid.hidden = false;
        listed = true;
        summarize();
        return true;
      });
    }

    function stream() {
      var url = section.dataset.events;
      if (!url || typeof EventSource === "undefined") {
        setInterval(list, 2000);  // no live stream (not served by mdmsim's gateway): the list, every two seconds
        live.hidden = false;
        live.className = "live-dot poll";
        live.textContent = "Refreshed every 2 s";
        return;
      }
      try {
        var parsed = new URL(url, location.href);
        if (/^(127\.0\.0\.1|localhost|\[::1\])$/.test(parsed.hostname) && parsed.hostname !== location.hostname) {
          parsed.hostname = location.hostname;  // advertised on loopback, reached here by another name
        }
        url = parsed.toString();
      } catch (e) { /* use it as given */ }
      var source = new EventSource(url);
      source.addEventListener("open", function () { live.hidden = false; live.classList.remove("down"); live.textContent = "Live"; });
      source.addEventListener("error", function () { live.hidden = false; live.classList.add("down"); live.textContent = "Reconnecting…"; });
      source.addEventListener("snapshot", function (event) {
        var data = JSON.parse(event.data);
        data.devices.forEach(function (view) { ingest(view, true); });
        setNow(data.now);
        summarize();
      });
      source.addEventListener("devices", function (event) {
        var data = JSON.parse(event.data);
        data.devices.forEach(function (view) { ingest(view, false); });
        setNow(data.now);
      });
      source.addEventListener("clock", function (event) { setNow(JSON.parse(event.data).now); });
      source.addEventListener("reset", function () {
        devices.forEach(function (rec) { rec.played = -1; rec.queue = []; rec.skipped = []; rec.view = null; show(rec, null); });
        busy.clear();
        list();
      });
    }

    function act(serial, what, button) {
      var rec = devices.get(serial);
      var path = what === "power" ? "/power-on" : "/erase";
      if (button) button.disabled = true;
      if (rec) rec.card.classList.add("working");
      return postJSON(api + "/devices/" + encodeURIComponent(serial) + path, {}).then(function (res) {
        if (!res.ok) result.textContent = serial + ": " + (res.body.error || "refused (" + res.status + ")");
        if (!section.dataset.events) list();
      }).catch(function () { result.textContent = "The simulation could not be reached."; })
        .then(function () { if (button) button.disabled = false; if (rec) rec.card.classList.remove("working"); });
    }

    grid.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-act]");
      if (!button) return;
      var serial = button.closest(".device").dataset.serial;
      if (button.dataset.act === "open") panel.open(devices.get(serial));
      else act(serial, button.dataset.act, button);
    });

    var all = document.getElementById("power-on-assigned");
    if (all) {
      all.addEventListener("click", function () {
        all.disabled = true;
        var label = all.textContent;
        all.textContent = "Powering on…";
        result.textContent = "";
        postJSON(api + "/devices/power-on", { assigned: true }).then(function (res) {
          result.textContent = res.ok
            ? "Powered on " + res.body.devices.length + " devices with a profile."
            : (res.body.error || "Refused (" + res.status + ").");
          if (!section.dataset.events) list();
        }).catch(function () { result.textContent = "The simulation could not be reached."; })
          .then(function () { all.disabled = false; all.textContent = label; });
      });
    }

    panel.bind({ act: act, api: api, screens: screens, devices: devices });
    list().then(function (ok) { if (ok) stream(); }).catch(function () {
      status.textContent = "The simulated devices could not be read; reload to try again.";
    });
    window.addEventListener("beforeunload", function () { /* EventSource closes with the page */ });
    return { listed: function () { return listed; } };
  }

  /* -- one device: its actions and the timeline of its exchanges -------------------------------------- */
  function wirePanel() {
    var dialog = document.getElementById("device-panel");
    var state = { serial: null };
    if (!dialog) return { serial: null, mirror: function () {}, refresh: function () {}, open: function () {}, bind: function () {} };
    var ctx = {};
    var big = document.getElementById("panel-phone");
    var timeline = document.getElementById("timeline");
    var tStatus = document.getElementById("timeline-status");
    var pending = null;
    var loadedFor = null;

    function curls(serial) {
      ["curl-power", "curl-erase", "curl-timeline"].forEach(function (id) {
        var el = document.getElementById(id);
        el.textContent = el.title = (el.dataset.template || "").replace("SERIAL", serial);
      });
    }

    function props(rec) {
      var v = rec.view || {};
      var f = rec.fields || {};
      var rows = [["Serial number", rec.serial], ["Model", rec.model], ["OS", v.os || "—"],
                  ["Organization", f.org || "—"], ["Department", f.department || "—"], ["Support phone", f.phone || "—"],
                  ["Supervised", v.supervised ? "Yes" : "No"],
                  ["Panes skipped by the profile", rec.skipped.length ? rec.skipped.join(", ") : "—"]];
      document.getElementById("panel-props").innerHTML = rows.map(function (r) {
        return "<dt>" + esc(r[0]) + "</dt><dd>" + esc(r[1]) + "</dd>";
      }).join("");
    }

    function mirror(rec, html) {
      var screen = big.querySelector(".screen");
      if (!screen) return;
      screen.innerHTML = html;
      screen.dataset.pane = rec.screen.dataset.pane;
    }

    function lane(parties, key) {
      for (var i = 0; i < parties.length; i++) if (parties[i][0] === key) return i;
      return 0;
    }

    function renderTimeline(data) {
      var parties = data.parties;
      var n = parties.length;
      timeline.style.setProperty("--lanes", n);
      var head = '<div class="seq-head"><span></span>' + parties.map(function (p) {
        return '<span class="lane" title="' + esc(p[1]) + '">' + esc(p[1]) + "</span>";
      }).join("") + "</div>";
      var rows = data.exchanges.map(function (e) {
        var a = lane(parties, e.source), b = lane(parties, e.target);
        var lo = Math.min(a, b), hi = Math.max(a, b);
        var lives = "";
        for (var i = 0; i < n; i++) lives += '<i class="life" style="grid-column:' + (i + 2) + '"></i>';
        var cls = e.status >= 200 && e.status < 400 ? "ok" : e.status >= 400 && e.status < 500 ? "warn" : "bad";
        return '<li class="seq-row" data-id="' + e.id + '" data-source="' + esc(e.source) + '" data-target="' + esc(e.target) +
          '" data-method="' + esc(e.method) + '" data-path="' + esc(e.path) + '" data-status="' + e.status + '">' +
          '<div class="seq-grid">' + lives +
          '<time class="seq-time" title="' + esc(e.at) + '">' + esc(String(e.at).slice(11, 19)) + "</time>" +
          '<button type="button" class="seq-msg ' + (b >= a ? "to-right" : "to-left") + (e.depth ? " nested" : "") +
          '" style="grid-column:' + (lo + 2) + " / " + (hi + 3) + ";--span:" + (hi - lo + 1) + '" aria-expanded="false">' +
          '<span class="seq-label"><b>' + esc(e.method) + "</b> " + esc(e.path) + (e.note ? " <em>" + esc(e.note) + "</em>" : "") + "</span>" +
          '<span class="seq-line call"></span>' +
          '<span class="seq-line reply"></span>' +
          '<span class="seq-status"><span class="code ' + cls + '">' + (e.status || "no answer") + "</span> " + esc(e.ms) + " ms</span>" +
          "</button></div><div class=\"seq-detail\" hidden></div></li>";
      }).join("");
      timeline.innerHTML = head + '<ol class="seq-rows">' + rows + "</ol>";
      timeline.hidden = !data.exchanges.length;
      tStatus.textContent = data.exchanges.length
        ? data.exchanges.length + " exchanges, oldest first. Select one for its bodies."
        : "No exchanges yet: power the device on.";
    }

    function load(serial) {
      return getJSON(ctx.api + "/devices/" + encodeURIComponent(serial) + "/exchanges").then(function (res) {
        if (state.serial !== serial) return;
        if (!res.ok) {
          timeline.hidden = true;
          tStatus.textContent = res.status === 404 ? "No exchanges yet: power the device on." : (res.body.error || "The timeline could not be read.");
          return;
        }
        var open = Array.from(timeline.querySelectorAll(".seq-row .seq-msg[aria-expanded=true]")).map(function (b) { return b.closest(".seq-row").dataset.id; });
        renderTimeline(res.body);
        open.forEach(function (id) { var row = timeline.querySelector('.seq-row[data-id="' + id + '"]'); if (row) toggle(row); });
        loadedFor = serial;
      });
    }

    function bodyHTML(title, part) {
      var body = part.body;
      var headers = Object.keys(part.headers || {}).map(function (k) { return esc(k) + ": " + esc(part.headers[k]); }).join("\n");
      return '<div class="body-part"><h4>' + esc(title) + ' <span class="muted">' + esc(body.note) + "</span></h4>" +
        (headers ? '<pre class="headers">' + headers + "</pre>" : "") +
        (body.text ? '<pre class="body ' + esc(body.kind) + '">' + esc(body.text) + "</pre>" : "") + "</div>";
    }

    function toggle(row) {
      var button = row.querySelector(".seq-msg");
      var detail = row.querySelector(".seq-detail");
      var opening = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(opening));
      detail.hidden = !opening;
      if (!opening || detail.dataset.loaded) return;
      detail.textContent = "Loading…";
      getJSON(ctx.api + "/devices/" + encodeURIComponent(state.serial) + "/exchanges/" + row.dataset.id).then(function (res) {
        if (!res.ok) { detail.textContent = res.body.error || "This exchange could not be read."; return; }
        detail.innerHTML = bodyHTML("Request", res.body.request) + bodyHTML("Response", res.body.response);
        detail.dataset.loaded = "yes";
      });
    }

    timeline.addEventListener("click", function (event) {
      var button = event.target.closest(".seq-msg");
      if (button) toggle(button.closest(".seq-row"));
    });
    document.getElementById("panel-close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { state.serial = null; });
    document.getElementById("panel-power").addEventListener("click", function (event) { ctx.act(state.serial, "power", event.currentTarget); });
    document.getElementById("panel-erase").addEventListener("click", function (event) { ctx.act(state.serial, "erase", event.currentTarget); });

    return Object.assign(state, {
      bind: function (c) { ctx = c; },
      mirror: mirror,
      open: function (rec) {
        state.serial = rec.serial;
        document.getElementById("panel-title").textContent = (rec.model || rec.family) + " · " + rec.serial;
        document.getElementById("panel-sub").textContent = rec.assigned ? "Assigned a profile in Apple Business Manager" : "";
        big.innerHTML = "";
        var copy = rec.phone.cloneNode(true);
        copy.classList.add("big");
        big.appendChild(copy);
        curls(rec.serial);
        props(rec);
        timeline.hidden = true;
        tStatus.textContent = "Loading the timeline…";
        if (!dialog.open) dialog.showModal();
        load(rec.serial);
      },
      refresh: function (rec) {
        props(rec);
        if (pending) clearTimeout(pending);
        pending = setTimeout(function () { pending = null; if (state.serial === rec.serial) load(rec.serial); }, 250);
      },
      loadedFor: function () { return loadedFor; }
    });
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
    if (sim) watchFleet(sim);
    else {
      var clock = document.getElementById("sim-clock");
      if (clock) wireClock(clock);
    }
    document.querySelectorAll(".sim-action code").forEach(function (code) { code.title = code.textContent; });
    document.querySelectorAll("select[data-shows]").forEach(wireReveal);
    var all = document.getElementById("select-all");
    if (all) wireSelectAll(all);
  });
})();
