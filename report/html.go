package report

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"io"
	"strings"
)

// The page is self-contained: this stylesheet and script are its only
// resources, and its Content-Security-Policy allows exactly them (by hash)
// and nothing else, so an escaping mistake could not run injected script or
// load anything from the network. Without JavaScript the table is still
// complete, already in severity order.
const htmlCSS = `
:root { color-scheme: light dark; --line: #8884; --muted: #888; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 80rem; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .5rem; word-break: break-all; }
h2 { font-size: 1.1rem; margin-top: 2rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
.warnings { border: 2px solid #d97706; background: #fef3c7; color: #78350f; padding: .5rem 1rem; margin: 1rem 0; }
.warnings strong { display: block; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { white-space: nowrap; }
th button { font: inherit; font-weight: bold; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
th[aria-sort=ascending] button::after { content: " \25B2"; }
th[aria-sort=descending] button::after { content: " \25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, monospace; white-space: nowrap; }
table.summary { width: auto; }
.sev { font-weight: bold; white-space: nowrap; }
.sev-Defcon1, .sev-Critical { color: #b91c1c; }
.sev-High { color: #dc2626; }
.sev-Medium { color: #b45309; }
.sev-Low { color: #0e7490; }
.sev-Negligible, .sev-Unknown { color: var(--muted); }
details summary { cursor: pointer; }
.desc { max-width: 40rem; white-space: pre-wrap; }
footer { margin-top: 2rem; color: var(--muted); font-size: .9em; }
`

const htmlJS = `
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "number";
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          var c = numeric ? Number(x) - Number(y) : x.localeCompare(y, undefined, { numeric: true });
          return dir * c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
`

const htmlTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{.CSP}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="layerbridge">
<title>Vulnerability report: {{.Title}}</title>
<style>{{.CSS}}</style>
</head>
<body>
<h1>Vulnerability report: {{.Title}}</h1>
<dl class="meta">
{{- with .R.Image.Ref}}
<dt>Image</dt><dd>{{.}}</dd>
{{- end}}
{{- with .R.Image.ID}}
<dt>ID</dt><dd>{{.}}</dd>
{{- end}}
{{- with .R.Image.Platform}}
<dt>Platform</dt><dd>{{.}}</dd>
{{- end}}
{{- with .R.Image.ManifestDigest}}
<dt>Manifest</dt><dd>{{.}}</dd>
{{- end}}
{{- with .R.Clair.URL}}
<dt>Clair</dt><dd>{{.}}</dd>
{{- end}}
{{- with .R.Clair.API}}
<dt>Clair API</dt><dd>{{.}}</dd>
{{- end}}
</dl>
{{- if .R.Warnings}}
<div class="warnings" role="alert">
{{- range .R.Warnings}}
<strong>Warning: {{.}}</strong>
{{- end}}
</div>
{{- end}}

<h2>Summary</h2>
<table class="summary">
<thead><tr>{{range .Summary}}<th><span class="sev sev-{{.Severity}}">{{.Severity}}</span></th>{{end}}<th>Total</th><th>Ignored</th></tr></thead>
<tbody><tr>{{range .Summary}}<td class="num">{{.Count}}</td>{{end}}<td class="num">{{.Total}}</td><td class="num">{{.Ignored}}</td></tr></tbody>
</table>

<h2>Vulnerabilities ({{len .R.Findings}})</h2>
{{- if .R.Findings}}
<table class="sortable" id="vulnerabilities">
<thead><tr><th>Vulnerability</th><th>Package</th><th>Installed</th><th>Fixed in</th><th data-type="number">Severity</th><th>Layer</th><th>Description</th></tr></thead>
<tbody>
{{- range .R.Findings}}
<tr><td class="mono">{{template "name" .}}</td><td class="mono">{{.Package}}</td><td class="mono">{{.Version}}</td><td class="mono">{{.FixedIn}}</td><td data-sort="{{rank .Severity}}"><span class="sev sev-{{.Severity}}">{{.Severity}}</span></td><td class="mono" title="{{.Layer}}">{{short .Layer}}</td><td>{{template "desc" .Description}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p>No vulnerabilities found.</p>
{{- end}}

<h2>Ignored ({{len .R.Ignored}})</h2>
{{- if .R.Ignored}}
<p>Suppressed by ignore rules: not counted in the summary and never fail the scan.</p>
<table class="sortable" id="ignored">
<thead><tr><th>Vulnerability</th><th>Package</th><th>Installed</th><th>Fixed in</th><th data-type="number">Severity</th><th>Reason</th></tr></thead>
<tbody>
{{- range .R.Ignored}}
<tr><td class="mono">{{template "name" .Finding}}</td><td class="mono">{{.Package}}</td><td class="mono">{{.Version}}</td><td class="mono">{{.FixedIn}}</td><td data-sort="{{rank .Severity}}"><span class="sev sev-{{.Severity}}">{{.Severity}}</span></td><td>{{.Reason}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p>None.</p>
{{- end}}

<footer>Generated by layerbridge{{with .ToolVersion}} {{.}}{{end}}.</footer>
<script>{{.JS}}</script>
</body>
</html>
{{define "name"}}{{if .Link}}<a href="{{.Link}}" rel="noreferrer">{{.Name}}</a>{{else}}{{.Name}}{{end}}{{end}}
{{- define "desc"}}{{if gt (len .) 200}}<details><summary>{{printf "%.160s" .}}…</summary><div class="desc">{{.}}</div></details>{{else if .}}<div class="desc">{{.}}</div>{{end}}{{end}}`

type htmlSummaryCell struct {
	Severity Severity
	Count    int
}

type htmlData struct {
	R           *Report
	Title       string
	Summary     []htmlSummaryCell
	Total       int
	Ignored     int
	ToolVersion string
	CSS         template.CSS
	JS          template.JS
	CSP         string
}

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func renderHTML(w io.Writer, r *Report, o Options) error {
	tmpl, err := template.New("report").Funcs(template.FuncMap{
		"rank":  func(s Severity) int { return int(s) },
		"short": shortDigest,
	}).Parse(htmlTemplate)
	if err != nil {
		return err
	}
	s := r.Summary()
	cells := make([]htmlSummaryCell, 0, len(Severities))
	for _, sev := range Severities {
		cells = append(cells, htmlSummaryCell{sev, s.Count(sev)})
	}
	title := r.Image.Ref
	if title == "" {
		title = r.Image.ID
	}
	if title == "" {
		title = "image"
	}
	data := htmlData{
		R:           r,
		Title:       title,
		Summary:     cells,
		Total:       s.Total(),
		Ignored:     s.Ignored,
		ToolVersion: o.ToolVersion,
		CSS:         template.CSS(htmlCSS),
		JS:          template.JS(htmlJS),
		CSP: "default-src 'none'; style-src " + cspHash(htmlCSS) + "; script-src " + cspHash(htmlJS) +
			"; img-src 'none'; form-action 'none'; base-uri 'none'",
	}
	return tmpl.Execute(w, data)
}

// shortDigest abbreviates "sha256:beee9f30bc1f…" to 12 hex digits for display.
func shortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return hex[:12]
}
