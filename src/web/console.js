// roachlab console: renders the frames the daemon pushes once a second (GET /api/live,
// server-sent events) and sends the lab's own verbs through the daemon's API (/api/v1/...),
// with the lab's token from the URL `roachlab console` prints. Without the token it is
// read-only. No framework: the DOM is rebuilt from each frame.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var token = params.get("token") || sessionStorage.getItem("roachlab-token") || "";
  if (params.get("token")) {
    // Kept for this tab only, and out of the address bar (screens are shared in demos).
    sessionStorage.setItem("roachlab-token", token);
    history.replaceState(null, "", location.pathname);
  }
  var timeline = new Map();      // seq -> entry
  var lastSeq = 0;
  var lastFrameAt = 0;
  var frame = null;

  function text(el, s) { el.textContent = s == null ? "" : String(s); return el; }
  function make(tag, cls, s) { var e = document.createElement(tag); if (cls) { e.className = cls; } if (s != null) { text(e, s); } return e; }

  function toast(message, isError) {
    var d = make("div", isError ? "error" : "", message);
    $("toast").appendChild(d);
    setTimeout(function () { d.remove(); }, isError ? 9000 : 4000);
  }

  // POSTs `body` to `path` with the token and reads the streamed reply (NDJSON: events, then
  // {"done": …} or {"error": …}) to its end.
  function act(what, path, body) {
    if (!token) { toast("read-only: open the URL `roachlab console` prints to act on the lab", true); return; }
    toast(what + "…");
    fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-roachlab-token": token },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.text().then(function (t) {
        var lines = t.split("\n").filter(function (l) { return l.trim() !== ""; });
        var last = lines.length ? JSON.parse(lines[lines.length - 1]) : {};
        if (!r.ok || last.error) {
          var e = last.error || {};
          toast(what + ": " + (e.message || r.status + " " + r.statusText), true);
        } else {
          toast(what + ": done");
        }
      });
    }).catch(function (e) { toast(what + ": " + e, true); });
  }

  var NODE_ACTIONS = [
    ["stop", "graceful stop (drain)", false],
    ["kill", "SIGKILL", true],
    ["start", "start", false],
    ["pause", "SIGSTOP", true],
    ["resume", "SIGCONT", false]
  ];

  function nodeAction(verb, id) {
    if (verb === "pause" || verb === "resume") {
      act("node " + verb + " " + id, "/api/v1/nodes/" + verb, { nodes: [id] });
    } else {
      act("node " + verb + " " + id, "/api/v1/nodes/" + id + "/" + verb, {});
    }
  }

  function renderNodes(f) {
    var body = $("nodes").querySelector("tbody");
    body.textContent = "";
    f.nodes.forEach(function (n) {
      var tr = make("tr", n.decommissioned ? "decommissioned" : "");
      tr.setAttribute("data-node", n.id);
      var id = make("td", n.leader ? "leader" : "", n.id + (n.leader ? " ★" : ""));
      if (n.leader) { id.title = "leader"; }
      tr.appendChild(id);
      var proc = make("td", "state-" + n.state, n.process);
      proc.setAttribute("data-field", "process");
      tr.appendChild(proc);
      var ready = make("td", "", n.ready);
      ready.setAttribute("data-field", "ready");
      tr.appendChild(ready);
      var hp = make("td", "hp-" + (n.haproxy || "").split(" ")[0], n.haproxy || "–");
      hp.setAttribute("data-field", "haproxy");
      tr.appendChild(hp);
      tr.appendChild(make("td", "", !n.liveness || n.liveness === "-" ? "–" : n.liveness));
      tr.appendChild(make("td", "", n.replicas == null ? "–" : n.replicas + " / " + (n.leases == null ? "–" : n.leases)));
      tr.appendChild(make("td", "", n.quorum || "–"));
      tr.appendChild(make("td", "", n.locality || "–"));
      tr.appendChild(make("td", "", n.side == null ? "–" : "side " + n.side));
      var cell = make("td", "act");
      NODE_ACTIONS.forEach(function (a) {
        var b = make("button", a[2] ? "danger" : "", a[0]);
        b.title = a[1];
        b.disabled = !token || n.decommissioned;
        b.setAttribute("data-act", a[0]);
        b.onclick = function () { nodeAction(a[0], n.id); };
        cell.appendChild(b);
      });
      var admin = make("a", "", "admin");
      admin.href = n.admin_url;
      admin.target = "_blank";
      admin.rel = "noopener";
      cell.appendChild(admin);
      tr.appendChild(cell);
      body.appendChild(tr);
    });
  }

  function renderCluster(f) {
    text($("lab"), f.engine + " lab · " + f.dir + " · " + f.topology);
    var q = $("quorum");
    if (f.quorum_ok === true) { q.className = "quorum ok"; text(q, "QUORUM OK"); }
    else if (f.quorum_ok === false) { q.className = "quorum lost"; text(q, "QUORUM LOST"); }
    else { q.className = "quorum unknown"; text(q, "quorum not observed yet"); }
    text($("cluster-line"), f.cluster);
    var rule = $("rule");
    rule.textContent = "";
    f.rule.forEach(function (r) { rule.appendChild(make("li", "", r)); });
    text($("network"), f.network || "");
    var links = $("links");
    links.textContent = "";
    var link = function (label, href) { if (!href) { return; } var a = make("a", "", label); a.href = href; a.target = "_blank"; a.rel = "noopener"; links.appendChild(a); };
    link("HAProxy stats", f.links.haproxy_stats);
    link("admin UI", f.links.haproxy_admin);
    link("Prometheus", f.links.prometheus);
    link("Alertmanager", f.links.alertmanager);
  }

  function fixed(v, digits) { return v == null ? "–" : (Math.round(v * Math.pow(10, digits)) / Math.pow(10, digits)).toString(); }

  function renderClients(f) {
    var c = f.clients;
    $("clients-note").style.display = c ? "none" : "";
    text($("source"), c ? c.source + (c.running ? " · running" : " · ended") : "");
    var t = c && c.running ? c.latest : null;
    text($("ok-s"), t ? fixed(t.ops_per_sec_inst, 0) : "–");
    var errs = t ? t.errors : null;
    text($("err-s"), t ? errs : "–");
    $("err-s").className = "big" + (errs ? " bad" : "");
    text($("amb"), c ? c.ambiguous : "–");
    $("amb").className = "big" + (c && c.ambiguous ? " bad" : "");
    text($("p99"), t ? fixed(t.p99_ms, 1) : "–");

    var d = c && c.drill;
    text($("drill-name"), d ? d.drill + (d.finished ? " · finished" : " · running") : "");
    var phases = $("phases");
    phases.textContent = "";
    (d ? d.phases : []).forEach(function (p, i, all) {
      var li = make("li", !d.finished && i === all.length - 1 ? "current" : "", p.name + (p.fault ? " — " + p.fault : ""));
      phases.appendChild(li);
    });
    var ex = $("expectations");
    ex.textContent = "";
    (d ? d.expectations : []).forEach(function (e) {
      var li = make("li", e.state, e.text + (e.observed != null ? " (observed " + e.observed + ")" : ""));
      li.setAttribute("data-state", e.state);
      ex.appendChild(li);
    });
    var v = $("verdict");
    text(v, d && d.finished ? (d.finished.passed ? "PASSED — " : "FAILED — ") + d.finished.verdict : "");
    v.style.color = d && d.finished ? (d.finished.passed ? "var(--ok)" : "var(--bad)") : "";
  }

  function renderDrills(f) {
    var sel = $("drill-choice");
    var current = sel.value;
    sel.textContent = "";
    f.drills.forEach(function (d) {
      var o = make("option", "", d.name + (d.unavailable ? " (" + d.unavailable + ")" : ""));
      o.value = d.name;
      o.disabled = !!d.unavailable;
      sel.appendChild(o);
    });
    if (current) { sel.value = current; }
    document.querySelectorAll("[data-act=drill],[data-act=partition],[data-act=heal]").forEach(function (b) { b.disabled = !token; });
  }

  function addTimeline(entries) {
    entries.forEach(function (e) { timeline.set(e.seq, e); if (e.seq > lastSeq) { lastSeq = e.seq; } });
    if (timeline.size > 2000) {
      var keys = Array.from(timeline.keys()).sort(function (a, b) { return a - b; });
      keys.slice(0, timeline.size - 2000).forEach(function (k) { timeline.delete(k); });
    }
  }

  function renderTimeline() {
    var filter = $("filter").value;
    var ol = $("timeline");
    ol.textContent = "";
    var keys = Array.from(timeline.keys()).sort(function (a, b) { return b - a; });
    keys.forEach(function (k) {
      var e = timeline.get(k);
      if (filter && e.class !== filter) { return; }
      var li = make("li", e.class);
      li.setAttribute("data-kind", e.kind);
      li.appendChild(make("span", "t", (e.ts || "").replace("T", " ").slice(11, 23)));
      li.appendChild(document.createTextNode(e.text));
      ol.appendChild(li);
    });
  }

  function render(f) {
    frame = f;
    lastFrameAt = Date.now();
    window.roachlabFrameSeq = f.seq;
    var conn = $("conn");
    conn.className = "badge on";
    text(conn, "live");
    text($("mode"), token ? "actions on" : "read-only");
    // A gap in the numbered events (frames were skipped): fetch the missing ones first.
    var first = f.timeline.length ? f.timeline[0].seq : lastSeq + 1;
    if (lastSeq && first > lastSeq + 1) {
      fetch("/api/timeline?after=" + lastSeq).then(function (r) { return r.json(); }).then(function (es) { addTimeline(es); renderTimeline(); });
    }
    addTimeline(f.timeline);
    renderCluster(f);
    renderNodes(f);
    renderClients(f);
    renderDrills(f);
    renderTimeline();
    RoachlabCharts.render($("charts"), f.charts, { compact: true });
  }

  $("filter").onchange = renderTimeline;
  document.querySelector("[data-act=heal]").onclick = function () { act("net heal", "/api/v1/net/heal", {}); };
  document.querySelector("[data-act=partition]").onclick = function () {
    var sides = $("sides").value.split("|").map(function (s) {
      return s.split(",").map(function (x) { return parseInt(x.trim(), 10); }).filter(function (x) { return !isNaN(x); });
    }).filter(function (s) { return s.length; });
    if (sides.length < 2) { toast("partition: write the sides as 1,2|3", true); return; }
    act("net partition " + $("sides").value, "/api/v1/net/partition", { sides: sides });
  };
  document.querySelector("[data-act=drill]").onclick = function () {
    var name = $("drill-choice").value;
    if (name) { act("drill " + name, "/api/drill", { name: name }); }
  };

  var source = new EventSource("/api/live");
  source.addEventListener("frame", function (m) { render(JSON.parse(m.data)); });
  source.onerror = function () { var c = $("conn"); c.className = "badge off"; text(c, "reconnecting…"); };
  // A page with no frame for 3 s says so (the daemon is gone, or the tunnel is down).
  setInterval(function () {
    if (lastFrameAt && Date.now() - lastFrameAt > 3000) { var c = $("conn"); c.className = "badge off"; text(c, "no frame for " + Math.round((Date.now() - lastFrameAt) / 1000) + " s"); }
  }, 1000);
})();
