"""The inline style sheet and script of ``report.html`` (no external library, no network).

Owns: how the page looks (CSS) and the little it does (JS): sortable tables (click a header;
numbers sort by their ``data-v``), the drill-down filters (placement, control kind, text),
the layer chooser of the per-pair Δ columns, the triggered/control prompt toggle, and the
checklist's figure viewer (hover or click a line to see its figure beside it). Must not: hold
data or numbers (the page's HTML carries them) or fetch anything.
"""

from __future__ import annotations

# Content-Security-Policy of the page: nothing may load from anywhere but the page itself
# (figures are data: URLs), so a page that works here works offline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
:root { --fg:#1d2330; --muted:#5d6675; --line:#d9dee7; --bg:#ffffff; --panel:#f6f8fb;
  --pass:#1a7f37; --fail:#c62828; --na:#9a6700; --accent:#0b5cad; --trig:#ffe08a; --dec:#0b5cad; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg);
  background:var(--bg); }
header { padding:18px 28px 12px; border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { margin:0 0 4px; font-size:22px; }
header .sub { color:var(--muted); }
nav { position:sticky; top:0; z-index:5; background:#fff; border-bottom:1px solid var(--line);
  padding:6px 28px; font-size:13px; }
nav a { margin-right:14px; color:var(--accent); text-decoration:none; white-space:nowrap; }
main { padding:8px 28px 60px; max-width:1500px; }
section { margin-top:26px; scroll-margin-top:40px; }
h2 { font-size:19px; border-bottom:2px solid var(--line); padding-bottom:4px; }
h3 { font-size:16px; margin:18px 0 6px; }
.headline { font-size:16px; margin:10px 0; padding:12px 14px; border-left:4px solid var(--accent);
  background:var(--panel); }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-weight:600; font-size:12px;
  border:1px solid currentColor; margin-right:6px; }
.b-strong, .pass { color:var(--pass); } .b-weak, .fail { color:var(--fail); }
.b-medium, .na { color:var(--na); }
.note { color:var(--muted); font-size:13px; }
.warn { color:var(--fail); font-weight:600; }
table { border-collapse:collapse; margin:6px 0 10px; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:3px 8px; text-align:left; vertical-align:top; }
th { background:var(--panel); position:sticky; top:33px; z-index:1; }
table.sortable th { cursor:pointer; user-select:none; }
table.sortable th.asc::after { content:" ▲"; } table.sortable th.desc::after { content:" ▼"; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.ci { color:var(--muted); font-size:11px; white-space:nowrap; }
.tier { font-weight:600; text-transform:uppercase; font-size:11px; color:var(--muted); }
.checks { display:grid; grid-template-columns:minmax(0,3fr) minmax(320px,2fr); gap:18px; }
.checks table { width:100%; }
.checks tr.check { cursor:pointer; }
.checks tr.check:hover, .checks tr.check.sel { background:#eef4fc; }
.viewer { position:sticky; top:44px; align-self:start; border:1px solid var(--line); padding:8px;
  background:#fff; }
.viewer img { width:100%; height:auto; }
.viewer .cap { font-size:12px; color:var(--muted); }
figure { margin:10px 0; scroll-margin-top:40px; }
figure img { max-width:min(100%, 1100px); height:auto; border:1px solid var(--line); }
figcaption { color:var(--muted); font-size:12px; }
details { margin:6px 0; } summary { cursor:pointer; color:var(--accent); }
pre { background:var(--panel); padding:8px; overflow:auto; max-height:420px; font-size:12px; }
.num-entry { scroll-margin-top:40px; border-left:3px solid var(--line); padding-left:10px; margin:8px 0; }
.num-entry:target { border-left-color:var(--accent); background:#eef4fc; }
.checks td:first-child { white-space:nowrap; }
.filters { display:flex; flex-wrap:wrap; gap:12px; align-items:center; margin:8px 0; }
.filters label { font-size:13px; }
.toks { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12px; line-height:1.9;
  max-width:760px; max-height:7.8em; overflow:auto; }
.tok { border:1px solid #e3e6ec; border-radius:3px; padding:0 1px; margin-right:1px; white-space:pre; }
.tok.trig { background:var(--trig); border-color:#d4a500; font-weight:700; }
.tok.dec { border-bottom:2px solid var(--dec); }
.spark rect { fill:var(--accent); } .spark rect.null { fill:#c8ced8; }
.kv td:first-child { color:var(--muted); white-space:nowrap; }
.wide { overflow-x:auto; }
.wide th { position:static; }  /* sticky inside a scroll box would slide over the first row */
.gen { font-family:ui-monospace,monospace; white-space:pre-wrap; }
@media (max-width: 1000px) { .checks { grid-template-columns:1fr; } .viewer { position:static; } }
"""

JS = r"""
(function () {
  "use strict";
  function val(td) {
    var v = td.getAttribute("data-v");
    if (v !== null && v !== "") { var x = parseFloat(v); if (!isNaN(x)) return x; }
    return td.textContent.trim().toLowerCase();
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0]; if (!body) return;
    var asc = !th.classList.contains("asc");
    Array.prototype.forEach.call(table.querySelectorAll("th"), function (h) {
      h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = val(a.cells[col]), y = val(b.cells[col]);
      var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (t) {
    var head = t.tHead; if (!head) return;
    Array.prototype.forEach.call(head.rows[0].cells, function (th, i) {
      th.title = th.title || "click to sort";
      th.addEventListener("click", function () { sortBy(t, i, th); });
    });
  });

  // checklist: show the figure of the hovered / clicked line beside the list
  var viewer = document.getElementById("viewer-img"), cap = document.getElementById("viewer-cap");
  function show(row) {
    if (!viewer) return;
    var key = row.getAttribute("data-fig"), fig = key && document.getElementById("fig-" + key);
    Array.prototype.forEach.call(document.querySelectorAll("tr.check.sel"), function (r) {
      r.classList.remove("sel"); });
    row.classList.add("sel");
    if (fig && fig.querySelector("img")) {
      viewer.src = fig.querySelector("img").src; viewer.style.display = "";
      cap.textContent = row.getAttribute("data-claim") + " — " + (fig.getAttribute("data-title") || key);
    } else { viewer.style.display = "none"; cap.textContent = "no figure for: " + row.getAttribute("data-claim"); }
  }
  Array.prototype.forEach.call(document.querySelectorAll("tr.check"), function (row) {
    row.addEventListener("mouseenter", function () { show(row); });
    row.addEventListener("click", function () { show(row); });
  });
  var first = document.querySelector("tr.check[data-fig]");
  if (first) show(first);

  // a link to a collapsed entry ("numbers") opens it
  function openTarget() {
    var t = location.hash && document.getElementById(location.hash.slice(1));
    if (t && t.tagName === "DETAILS") t.open = true;
  }
  window.addEventListener("hashchange", openTarget); openTarget();

  // drill-down: filters, layer chooser, triggered / control toggle
  var pt = document.getElementById("pair-table");
  if (pt) {
    var fPlace = document.getElementById("f-placement"), fKind = document.getElementById("f-kind"),
        fText = document.getElementById("f-text"), fLayer = document.getElementById("f-layer"),
        fCtrl = document.getElementById("f-control"), count = document.getElementById("f-count");
    var apply = function () {
      var p = fPlace.value, k = fKind.value, q = fText.value.trim().toLowerCase(), shown = 0;
      Array.prototype.forEach.call(pt.tBodies[0].rows, function (r) {
        var ok = (!p || r.getAttribute("data-placement") === p) &&
                 (!k || r.getAttribute("data-kind") === k) &&
                 (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
        r.style.display = ok ? "" : "none"; if (ok) shown++;
      });
      count.textContent = shown + " of " + pt.tBodies[0].rows.length + " pairs";
    };
    var setLayer = function () {
      var j = parseInt(fLayer.value, 10);
      Array.prototype.forEach.call(pt.tBodies[0].rows, function (r) {
        ["rel", "cos"].forEach(function (name) {
          var arr = JSON.parse(r.getAttribute("data-" + name)), td = r.querySelector("td." + name);
          var v = arr[j]; td.setAttribute("data-v", v === null ? "" : v);
          td.textContent = v === null ? "–" : Number(v).toPrecision(3);
        });
      });
    };
    var toggle = function () {
      var ctrl = fCtrl.checked;
      Array.prototype.forEach.call(pt.querySelectorAll(".tok.trig"), function (s) {
        s.textContent = s.getAttribute(ctrl ? "data-ctrl" : "data-trig"); });
    };
    [fPlace, fKind].forEach(function (e) { e.addEventListener("change", apply); });
    fText.addEventListener("input", apply); fLayer.addEventListener("change", setLayer);
    fCtrl.addEventListener("change", toggle);
    apply();
  }
})();
"""
