package router

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The router's public /readyz says 503 with a fixed body: the reason a
// readiness check failed is for the admin listener and the log, not for
// whoever reaches the preview domain.
func TestPublicReadyzRevealsNoErrorText(t *testing.T) {
	_, srv := newRouter(t, &fakeWaker{}, func(o *Options) {
		o.Ready = func(context.Context) error {
			return errors.New("dial tcp 10.42.7.9:7233: connect: connection refused (temporal-frontend.internal)")
		}
	})
	resp, body := get(t, srv, strings.TrimPrefix(srv.URL, "http://"), "/readyz")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "not ready\n", body)
}

// A preview's cookies become host-only: every Domain attribute, in any case
// and spacing, is removed from every Set-Cookie header; the other attributes
// stay as the app wrote them; a cookie without a name is dropped.
func TestSetCookieDomainStripped(t *testing.T) {
	sent := []string{
		"session=abc; Domain=preview.localhost; Path=/; HttpOnly; Secure; SameSite=Lax",
		"theme=dark",
		"a=1;domain=.preview.localhost",
		"b=2; DOMAIN = pr-2.preview.localhost ; Max-Age=60",
		"c=3; Domain; Path=/x",
		"d=4; Domain=preview.localhost; Domain=pr-1.preview.localhost",
		"e=5; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Domain=preview.localhost, f=6; Domain=evil.localhost",
		"=nameless; Domain=preview.localhost",
		"novalue; Domain=preview.localhost",
		"g=7; Partitioned; Priority=High; x-unknown=domain",
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range sent {
			w.Header().Add("Set-Cookie", c)
		}
		w.Header().Add("set-cookie", "h=8; dOmAiN=preview.localhost")
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, nil)
	resp, body := get(t, srv, "pr-1.preview.localhost", "/")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "ok", body)
	assert.Equal(t, []string{
		"session=abc; Path=/; HttpOnly; Secure; SameSite=Lax",
		"theme=dark",
		"a=1",
		"b=2; Max-Age=60",
		"c=3; Path=/x",
		"d=4",
		"e=5; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
		"g=7; Partitioned; Priority=High; x-unknown=domain",
		"h=8",
	}, resp.Header.Values("Set-Cookie"))
	for _, c := range resp.Header.Values("Set-Cookie") {
		assert.NotContains(t, strings.ToLower(c), "domain=preview", c)
	}

	// What a browser keeps: host-only cookies for the preview that set them.
	for _, raw := range resp.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(raw)
		require.NoError(t, err, raw)
		assert.Empty(t, c.Domain, raw)
	}
}

func TestStripDomainKeepsCookiesWithoutDomainUntouched(t *testing.T) {
	for _, v := range []string{"a=1", "a=1; Path=/", "sid=x; HttpOnly; Secure; SameSite=Strict; Max-Age=0"} {
		got, ok := stripDomain(v)
		assert.True(t, ok)
		assert.Equal(t, v, got)
	}
}
