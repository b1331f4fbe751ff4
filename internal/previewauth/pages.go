package previewauth

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
)

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Drydock preview</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}</style>
</head><body>
<h1>{{.Title}}</h1>
{{range .Lines}}<p>{{.}}</p>
{{end}}<p><small>Drydock preview router</small></p>
</body></html>
`))

// page writes one of the login's own pages (escaped, never cached).
func (a *Auth) page(w http.ResponseWriter, r *http.Request, status int, title string, lines ...string) {
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, struct {
		Title string
		Lines []string
	}{title, lines}); err != nil {
		writeText(w, status, title)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	noStore(w)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
}
