package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// BenchmarkWarmPath compares a warm hit through the router with a plain
// httputil.ReverseProxy to the same upstream: the difference is the
// router's own cost (mapping, cache lookup, touch throttle).
func BenchmarkWarmPath(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	target, err := url.Parse(up.URL)
	if err != nil {
		b.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	defer transport.CloseIdleConnections()

	rt, err := New(Options{Domain: "preview.localhost", DefaultRepo: "octo/hello", Waker: &fakeWaker{url: up.URL}, Transport: transport})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	plain := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:     transport,
		FlushInterval: -1,
	}

	run := func(b *testing.B, h http.Handler) {
		req := httptest.NewRequest("GET", "http://pr-1.preview.localhost/", nil)
		h.ServeHTTP(httptest.NewRecorder(), req) // wakes the router's preview
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Errorf("status %d", w.Code)
					return
				}
			}
		})
	}
	b.Run("router", func(b *testing.B) {
		rt.awakeTTL = 1 << 62 // stay warm however long the benchmark runs
		run(b, rt)
	})
	b.Run("plain", func(b *testing.B) { run(b, plain) })
}
