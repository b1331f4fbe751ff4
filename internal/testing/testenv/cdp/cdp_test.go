package cdp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The client drives a real Chromium: a redirect, a form post, a cookie and
// a screenshot.
func TestBrowserFollowsRedirectsPostsFormsKeepsCookies(t *testing.T) {
	bin, err := Find()
	require.NoError(t, err) // a missing chromium fails the test: make test installs it
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/start":
			http.Redirect(w, r, "/form", http.StatusFound)
		case "/form":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(`<form method=post action=/done><input name=who value=alice><button id=go>Go</button></form>`))
		case "/done":
			http.SetCookie(w, &http.Cookie{Name: "s", Value: r.PostFormValue("who"), HttpOnly: true, Path: "/"})
			_, _ = w.Write([]byte("hello " + r.PostFormValue("who")))
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := Start(ctx, bin, t.TempDir())
	require.NoError(t, err)
	defer b.Close()
	p, err := b.NewPage(ctx)
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.Navigate(ctx, srv.URL+"/start"))
	u, err := p.URL(ctx)
	require.NoError(t, err)
	assert.Equal(t, srv.URL+"/form", u)
	require.NoError(t, p.Eval(ctx, `document.getElementById("go").click()`, nil))
	require.NoError(t, p.WaitFor(ctx, `location.pathname === "/done" && document.readyState === "complete"`))
	text, err := p.Text(ctx)
	require.NoError(t, err)
	assert.Equal(t, "hello alice", text)
	cookies, err := p.Cookies(ctx, srv.URL)
	require.NoError(t, err)
	require.Len(t, cookies, 1)
	assert.True(t, cookies[0].HTTPOnly)
	require.NoError(t, p.Screenshot(ctx, filepath.Join(t.TempDir(), "x.png")))
}
