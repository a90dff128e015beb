// roachlab's charts: turns a ChartSet (src/chart.rs: charts, markers, phases) into Apache
// ECharts options. Shared by the live console and every drill's report.html, so both read
// the same. Nothing here draws by hand: step lines, bars, labelled marker lines (markLine)
// and named phase bands (markArea) are ECharts' own.
(function () {
  "use strict";

  // One colour per marker kind, matching the timeline's highlights.
  // Labels stand along their line, at a height of their own per kind, so the labels of
  // neighbouring groups of markers (see `grouped`) rarely meet.
  var MARKER = {
    fault: { color: "#c62828", type: "solid", width: 2, at: "insideEndTop", bold: true },
    recovery: { color: "#1a7f37", type: "solid", width: 2, at: "insideEndTop", bold: true },
    haproxy: { color: "#455a64", type: "dashed", width: 1, at: "insideMiddleTop" },
    leader: { color: "#6a1b9a", type: "dotted", width: 2, at: "insideStartTop" },
    quorum: { color: "#6a1b9a", type: "solid", width: 3, at: "insideEndBottom", bold: true },
    alert: { color: "#e65100", type: "solid", width: 2, at: "insideMiddleBottom", bold: true },
    alert_resolved: { color: "#2e7d32", type: "dashed", width: 2, at: "insideMiddleBottom" }
  };
  var BANDS = ["rgba(31,119,180,0.08)", "rgba(120,120,120,0.12)"];

  function fmtSeconds(v) { return Math.round(v) + " s"; }
  function fmtTime(v) {
    var d = new Date(v);
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  // The x extent the chart shows: its range, else from the first to the last point or marker.
  function span(set) {
    if (set.range) { return set.range[1] - set.range[0]; }
    var xs = [];
    set.charts.forEach(function (c) { c.series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p[0]); }); }); });
    (set.markers || []).forEach(function (m) { xs.push(m.at); });
    if (xs.length < 2) { return 0; }
    return Math.max.apply(null, xs) - Math.min.apply(null, xs);
  }

  // Which label a group of close markers shows: the first kind in this list.
  var PRIORITY = ["fault", "recovery", "quorum", "leader", "alert", "alert_resolved", "haproxy"];
  function rank(kind) { var i = PRIORITY.indexOf(kind); return i < 0 ? PRIORITY.length : i; }

  // Where a kind's label stands on its line (`MARKER[kind].at`): labels of different kinds
  // stand at different heights, so only markers that share a height can write over one
  // another.
  function slot(kind) { return (MARKER[kind] || MARKER.haproxy).at; }

  // Markers closer than 2.5 % of the span to the previous one *at the same label height* (a
  // kill and the restart just after it; HAProxy's DOWN for two nodes; an alert per node)
  // would write their labels over one another: every line is still drawn in its kind's
  // colour, but the group carries one label — its most telling marker's (a fault before a
  // recovery, then quorum, leader, alerts, HAProxy), with how many more stand beside it
  // ("kill 2 (+1)"). A marker at another height (quorum regained beside a restart) keeps its
  // own label. Each line's own words stay in its name and in the timeline. Returns the
  // markers in time order, each with `show` (its label) or not.
  function grouped(markers, width) {
    var gap = width * 0.025;
    var sorted = markers.slice().sort(function (a, b) { return a.at - b.at; });
    var groups = [];
    var last = {};
    sorted.forEach(function (m) {
      var g = last[slot(m.kind)];
      if (g && m.at - g[g.length - 1].at <= gap) { g.push(m); } else { g = [m]; groups.push(g); last[slot(m.kind)] = g; }
    });
    var lead = new Map();
    groups.forEach(function (g) {
      var best = g.reduce(function (b, m) { return rank(m.kind) < rank(b.kind) ? m : b; }, g[0]);
      lead.set(best, best.label + (g.length > 1 ? " (+" + (g.length - 1) + ")" : ""));
    });
    return sorted.map(function (m) {
      return { kind: m.kind, at: m.at, label: m.label, show: lead.has(m) ? lead.get(m) : null };
    });
  }

  // ECharts options for one chart of `set`.
  function options(chart, set, opts) {
    opts = opts || {};
    var time = set.x === "time";
    var fmt = time ? fmtTime : fmtSeconds;
    var xAxis = {
      type: time ? "time" : "value",
      name: time ? "" : "seconds since the workload began",
      nameLocation: "middle",
      nameGap: 24,
      axisLabel: { formatter: fmt, hideOverlap: true },
      splitLine: { show: false }
    };
    if (set.range) { xAxis.min = set.range[0]; xAxis.max = set.range[1]; }
    var yAxes = chart.axes.map(function (a, i) {
      var y = { type: "value", name: a.name, min: 0, nameTextStyle: { align: i === 0 ? "left" : "right" } };
      if (a.integer) { y.minInterval = 1; y.axisLabel = { formatter: function (v) { return Number.isInteger(v) ? v : ""; } }; }
      if (i > 0) { y.splitLine = { show: false }; y.position = "right"; }
      return y;
    });
    var series = chart.series.map(function (s) {
      var out = {
        name: s.name,
        type: s.style === "bar" ? "bar" : "line",
        yAxisIndex: s.axis,
        data: s.points,
        color: s.color,
        showSymbol: false,
        animation: false
      };
      if (s.style === "step") { out.step = "end"; }
      if (s.style === "line" || s.style === "step") { out.lineStyle = { width: 2 }; }
      if (s.style === "bar") { out.barMaxWidth = 10; out.barMinWidth = 3; }
      return out;
    });
    // Markers and phases ride on the first series (an empty one still places them).
    if (series.length === 0) { series.push({ type: "line", data: [], yAxisIndex: 0 }); }
    series[0].markLine = {
      silent: true,
      symbol: ["none", "none"],
      animation: false,
      data: grouped(set.markers || [], span(set)).map(function (m) {
        var k = MARKER[m.kind] || MARKER.haproxy;
        return {
          xAxis: m.at,
          name: m.label,
          lineStyle: { color: k.color, type: k.type, width: k.width },
          label: { show: m.show !== null, formatter: m.show || "", position: k.at, color: k.color, fontSize: 11, fontWeight: k.bold ? "bold" : "normal" }
        };
      })
    };
    series[0].markArea = {
      silent: true,
      animation: false,
      data: (set.phases || []).map(function (p, i) {
        return [
          { name: p.name, xAxis: p.from, itemStyle: { color: BANDS[i % 2] }, label: { position: "insideTopLeft", color: "#333", fontSize: 12, fontWeight: "bold" } },
          { xAxis: p.to }
        ];
      })
    };
    return {
      animation: false,
      title: { text: chart.title, left: 8, top: 4, textStyle: { fontSize: 14 } },
      legend: { top: 4, right: 8, textStyle: { fontSize: 12 } },
      tooltip: { trigger: "axis", valueFormatter: function (v) { return typeof v === "number" ? Math.round(v * 10) / 10 : v; } },
      grid: { left: 52, right: chart.axes.length > 1 ? 52 : 20, top: 48, bottom: opts.compact ? 28 : 44 },
      xAxis: xAxis,
      yAxis: yAxes,
      series: series
    };
  }

  // Draws (or redraws) every chart of `set` into `container`, one div per chart id.
  function render(container, set, opts) {
    opts = opts || {};
    set.charts.forEach(function (chart) {
      var el = container.querySelector('[data-chart="' + chart.id + '"]');
      if (!el) {
        el = document.createElement("div");
        el.className = "chart";
        el.setAttribute("data-chart", chart.id);
        if (opts.height) { el.style.height = opts.height; }
        container.appendChild(el);
      }
      var inst = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: opts.renderer || "canvas" });
      inst.setOption(options(chart, set, opts), true);
    });
    // A chart that is no longer in the set (no ranges any more) goes.
    Array.prototype.slice.call(container.querySelectorAll("[data-chart]")).forEach(function (el) {
      var id = el.getAttribute("data-chart");
      if (!set.charts.some(function (c) { return c.id === id; })) {
        var inst = echarts.getInstanceByDom(el);
        if (inst) { inst.dispose(); }
        el.remove();
      }
    });
  }

  window.addEventListener("resize", function () {
    Array.prototype.slice.call(document.querySelectorAll("[data-chart]")).forEach(function (el) {
      var inst = echarts.getInstanceByDom(el);
      if (inst) { inst.resize(); }
    });
  });

  window.RoachlabCharts = { options: options, render: render, grouped: grouped };
})();
