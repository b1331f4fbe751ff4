package router

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustProxies(t *testing.T, list ...string) func(*Options) {
	t.Helper()
	p, err := ParseTrustedProxies(list)
	require.NoError(t, err)
	return func(o *Options) { o.TrustedProxies = p }
}

// forwardedUpstream records the X-Forwarded-* headers the preview gets.
func forwardedUpstream(t *testing.T) (*httptest.Server, func() http.Header) {
	var mu sync.Mutex
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	return up, func() http.Header {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

var spoofed = map[string]string{
	"X-Forwarded-For":   "6.6.6.6, 203.0.113.7",
	"X-Forwarded-Proto": "https",
	"X-Forwarded-Host":  "pr-2.preview.localhost",
	"Forwarded":         "for=6.6.6.6;proto=https",
}

// With no trusted proxy (the default), X-Forwarded-* from the client are
// ignored: the preview learns the peer's address and the router's own view.
func TestForwardedHeadersIgnoredFromUntrustedPeers(t *testing.T) {
	up, seen := forwardedUpstream(t)
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, mustProxies(t, "10.0.0.0/8"))
	resp, _ := do(t, "GET", srv.URL+"/", "pr-1.preview.localhost", nil, spoofed)
	require.Equal(t, 200, resp.StatusCode)
	h := seen()
	assert.Equal(t, []string{"127.0.0.1"}, h.Values("X-Forwarded-For"))
	assert.Equal(t, "http", h.Get("X-Forwarded-Proto"))
	assert.Equal(t, "pr-1.preview.localhost", h.Get("X-Forwarded-Host"))
	assert.Empty(t, h.Values("Forwarded"))
}

// Behind a trusted proxy, the client is the right-most address of
// X-Forwarded-For that is not a trusted proxy (what the client wrote left
// of it is dropped), and the proxy's X-Forwarded-Proto and -Host count.
func TestForwardedHeadersFromTrustedProxy(t *testing.T) {
	up, seen := forwardedUpstream(t)
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, mustProxies(t, "127.0.0.1", "10.0.0.0/8"))
	hdr := map[string]string{
		"X-Forwarded-For":   "6.6.6.6, 203.0.113.7, 10.1.2.3",
		"X-Forwarded-Proto": "http, https",
		"X-Forwarded-Host":  "pr-1.preview.example.com",
	}
	resp, _ := do(t, "GET", srv.URL+"/", "pr-1.preview.localhost", nil, hdr)
	require.Equal(t, 200, resp.StatusCode)
	h := seen()
	assert.Equal(t, []string{"203.0.113.7"}, h.Values("X-Forwarded-For"))
	assert.Equal(t, "https", h.Get("X-Forwarded-Proto"))
	assert.Equal(t, "pr-1.preview.example.com", h.Get("X-Forwarded-Host"))

	// Malformed values from the proxy are replaced by the router's view.
	hdr = map[string]string{"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "a b<script>"}
	resp, _ = do(t, "GET", srv.URL+"/", "pr-1.preview.localhost", nil, hdr)
	require.Equal(t, 200, resp.StatusCode)
	h = seen()
	assert.Equal(t, []string{"127.0.0.1"}, h.Values("X-Forwarded-For"), "no X-Forwarded-For: the proxy is the client")
	assert.Equal(t, "http", h.Get("X-Forwarded-Proto"))
	assert.Equal(t, "pr-1.preview.localhost", h.Get("X-Forwarded-Host"))
}

func TestClientAddr(t *testing.T) {
	p, err := ParseTrustedProxies([]string{"10.0.0.0/8", " 192.0.2.1 ", "fd00::/8", ""})
	require.NoError(t, err)
	rt := &Router{trustedProxies: p}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
		via        bool
	}{
		{"untrusted peer", "198.51.100.1:1234", []string{"1.2.3.4"}, "198.51.100.1", false},
		{"trusted, no header", "10.0.0.1:1234", nil, "10.0.0.1", true},
		{"trusted, one hop", "10.0.0.1:1234", []string{"203.0.113.9"}, "203.0.113.9", true},
		{"right-most untrusted", "10.0.0.1:1234", []string{"1.1.1.1, 203.0.113.9, 10.9.9.9"}, "203.0.113.9", true},
		{"several header lines", "10.0.0.1:1234", []string{"1.1.1.1", "203.0.113.9,10.9.9.9"}, "203.0.113.9", true},
		{"all trusted", "192.0.2.1:1", []string{"10.1.1.1, 10.2.2.2"}, "10.1.1.1", true},
		{"garbage ends the walk", "10.0.0.1:1234", []string{"1.1.1.1, not-an-ip, 10.2.2.2"}, "10.2.2.2", true},
		{"with port", "10.0.0.1:1234", []string{"203.0.113.9:5555"}, "203.0.113.9", true},
		{"IPv6", "[fd00::1]:443", []string{"2001:db8::7"}, "2001:db8::7", true},
		{"IPv4-mapped peer", "[::ffff:10.0.0.1]:80", []string{"203.0.113.9"}, "203.0.113.9", true},
		{"IPv4-mapped entry", "10.0.0.1:80", []string{"::ffff:203.0.113.9"}, "203.0.113.9", true},
		{"empty entries", "10.0.0.1:80", []string{" , 203.0.113.9 , "}, "203.0.113.9", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, via := rt.clientAddr(r)
			assert.Equal(t, tc.want, got.String())
			assert.Equal(t, tc.via, via)
		})
	}
	_, err = ParseTrustedProxies([]string{"10.0.0.0/33"})
	assert.Error(t, err)
	_, err = ParseTrustedProxies([]string{"lb.internal"})
	assert.Error(t, err)
}
