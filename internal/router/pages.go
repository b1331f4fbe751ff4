package router

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
)

// The router's own pages: small, self-contained, never cached.
type page int

const (
	pageNoPreview page = iota // 404: the request names no preview
	pageUnknown               // 404: no such preview
	pageGone                  // 410: torn down
	pageStarting              // 503: still waking or deploying; reloads itself
)

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>{{.Title}} · Drydock preview</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}code{background:#f2f2f2;padding:0 .2em}</style>
</head><body>
<h1>{{.Title}}</h1>
{{range .Lines}}<p>{{.}}</p>
{{end}}{{if .Patterns}}<p>Preview addresses look like:</p>
<ul>
{{if .DefaultRepo}}<li><code>pr-&lt;number&gt;.{{.Domain}}</code>: pull request &lt;number&gt; of {{.DefaultRepo}}</li>
{{end}}<li><code>pr-&lt;number&gt;--&lt;owner&gt;--&lt;repo&gt;.{{.Domain}}</code>: pull request &lt;number&gt; of &lt;owner&gt;/&lt;repo&gt;</li>
<li>any host with the headers <code>X-Drydock-Repo: &lt;owner&gt;/&lt;repo&gt;</code> and <code>X-PR-Number: &lt;number&gt;</code> (local use, and repositories whose names contain dots)</li>
</ul>{{end}}
<p><small>Drydock preview router</small></p>
</body></html>
`))

type pageData struct {
	Title       string
	Lines       []string
	Refresh     int
	Patterns    bool
	Domain      string
	DefaultRepo string
}

func (rt *Router) writePage(w http.ResponseWriter, r *http.Request, status int, which page, t Target) {
	d := pageData{Domain: rt.mapper.Domain(), DefaultRepo: rt.mapper.DefaultRepo()}
	name := t.String()
	switch which {
	case pageNoPreview:
		d.Title = "No preview here"
		d.Lines = []string{"This address does not name a pull request preview."}
		d.Patterns = true
	case pageUnknown:
		d.Title = "No preview for " + name
		d.Lines = []string{
			"Drydock has no preview environment for pull request " + name + ".",
			"Check that the pull request exists and is open; a preview is created when Drydock receives the pull request's webhook.",
		}
		d.Patterns = true
	case pageGone:
		d.Title = "Preview of " + name + " was torn down"
		d.Lines = []string{
			"The preview environment of pull request " + name + " has been destroyed, usually because the pull request was closed or merged.",
			"Reopening the pull request creates a new one.",
		}
	case pageStarting:
		d.Title = "Preview of " + name + " is starting"
		d.Lines = []string{
			"The preview environment is still waking up or being deployed. This page reloads itself.",
		}
		d.Refresh = 5
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		writeText(w, status, d.Title)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
}
