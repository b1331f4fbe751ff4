package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/workflows"
)

// hostileApp is a pull request's app that tries what a hostile one would:
// its health path redirects Drydock's health check to an internal address
// (SSRF), or answers an error whose body, like its log, carries text that
// must never reach the PR; and its pages set a cookie for the whole preview
// domain.
const hostileApp = `import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", os.environ["INTERNAL_URL"])
            self.end_headers()
            return
        if self.path == "/fail":
            print("SECRET-LOG-LINE from the app", file=sys.stderr, flush=True)
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"SECRET-BODY " + os.environ["INTERNAL_URL"].encode())
            return
        self.send_response(200)
        self.send_header("Set-Cookie", "sid=1; Domain=preview.localhost; Path=/; HttpOnly")
        self.end_headers()
        self.wfile.write(b"hostile app")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "3000"))), H).serve_forever()
`

func hostileSpec(healthPath, internalURL string) string {
	return fmt.Sprintf(`
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 2s}
app: {port: 3000, health_path: %s, health_timeout: 3s}
env: {INTERNAL_URL: %q}
start: {command: [python3, hostile.py]}
`, healthPath, internalURL)
}

// Issue 13 points 4 and 8 end to end, with a real worker, the emulator's
// machines and the router: the health check follows no redirect (the
// internal address is never requested, a 3xx is the app answering), a
// failure's PR comment and deployment status carry neither the upstream
// URL nor anything the app said, and a preview's cookie cannot be set for
// the whole preview domain.
func TestHostileAppCannotReachInsideNorSpeakOnThePR(t *testing.T) {
	var internalHits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		internalHits.Add(1)
		_, _ = w.Write([]byte("INTERNAL-SECRET"))
	}))
	t.Cleanup(internal.Close)
	internalURL := internal.URL + "/latest/meta-data"

	s := newStack(t)
	src := newRepo(t)
	require.NoError(t, os.WriteFile(filepath.Join(src.dir, "hostile.py"), []byte(hostileApp), 0o644))
	sha := src.commit("a hostile app")

	// The health path redirects inside: the preview is ready (3xx = the app
	// answers), and the internal address was never requested.
	const owner = "Acme"
	s.gh.SetFile(owner, "redirects", "main", ".drydock/preview.yml", hostileSpec("/redirect", internalURL))
	pr := ghfixture.PR{Owner: owner, Repo: "redirects", Number: 1, HeadSHA: sha, HeadRef: "x", CloneURL: src.dir}
	code, out := s.deliver("opened", pr, "hostile-redirect")
	require.Equal(t, http.StatusAccepted, code, out)
	id := workflows.PreviewWorkflowID(owner, "redirects", 1)
	s.waitFor(id, "ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	assert.Zero(t, internalHits.Load(), "the health check followed the app's redirect to an internal address")

	checkDomainCookieHostOnly(t, s)

	// The health path fails with a body and a log line: the PR hears a fixed
	// text and the step, operators see the details in the workflow.
	s.gh.SetFile(owner, "fails", "main", ".drydock/preview.yml", hostileSpec("/fail", internalURL))
	pr = ghfixture.PR{Owner: owner, Repo: "fails", Number: 2, HeadSHA: sha, HeadRef: "x", CloneURL: src.dir}
	code, out = s.deliver("opened", pr, "hostile-fail")
	require.Equal(t, http.StatusAccepted, code, out)
	id = workflows.PreviewWorkflowID(owner, "fails", 2)
	st := s.waitFor(id, "failed", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewFailed })
	assert.Contains(t, st.LastError, "500", "operators see what the app answered")
	// The PR hears of the failure after the status says it (the report is
	// an activity of its own): wait until the comment names the step.
	var all string
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		all = saidOnPR(s, owner, "fails", 2)
		assert.Contains(ct, all, "/fail", "the comment names the failed step")
	}, 30*time.Second, 100*time.Millisecond)
	leaks := []string{"SECRET-BODY", "SECRET-LOG-LINE", "INTERNAL-SECRET", internal.URL, "meta-data", s.emu.URL()}
	if st.URL != "" {
		leaks = append(leaks, st.URL) // the upstream: the Dedalus preview URL
	}
	for _, leak := range leaks {
		assert.NotContains(t, all, leak)
	}
	assert.Zero(t, internalHits.Load())
}

// checkDomainCookieHostOnly checks that, through the router, the hostile
// app's Domain cookie (pull request 1 of Acme/redirects) becomes
// host-only.
func checkDomainCookieHostOnly(t *testing.T, s *stack) {
	req, err := http.NewRequest(http.MethodGet, s.router.URL+"/", nil)
	require.NoError(t, err)
	req.Host = "pr-1--acme--redirects." + domain
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	cookies := resp.Header.Values("Set-Cookie")
	require.Len(t, cookies, 1)
	assert.NotContains(t, strings.ToLower(cookies[0]), "domain", "a preview set a cookie for every preview")
	assert.Contains(t, cookies[0], "sid=1")
}

// saidOnPR is all GitHub was told about pull request number of
// owner/repo: its comments and its deployments' statuses, one a line.
func saidOnPR(s *stack, owner, repo string, number int) string {
	var said []string
	for _, c := range s.gh.Comments(owner, repo, number) {
		said = append(said, c.Body)
	}
	for _, d := range s.gh.Deployments(owner, repo) {
		for _, ds := range d.Statuses {
			said = append(said, ds.Description, ds.LogURL, ds.EnvironmentURL)
		}
	}
	return strings.Join(said, "\n")
}
