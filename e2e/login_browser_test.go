package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/internal/testing/testenv/cdp"
	"github.com/drydock-dev/drydock/workflows"
)

// artifactsDir is .test-artifacts/<test> at the repository root (git-ignored):
// what a test keeps for people to look at, such as screenshots.
func artifactsDir(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	dir := filepath.Join(root, ".test-artifacts", t.Name())
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// openHarnessPreview opens pull request number of owner/repo on the harness
// stack (the demo app) and waits until it is ready; it returns the head SHA
// and the status.
func openHarnessPreview(ctx context.Context, t *testing.T, h *harness.Harness, owner, repo string, number int, spec string) (string, workflows.PreviewStatus) {
	t.Helper()
	h.GH.SetFile(owner, repo, "main", ".drydock/preview.yml", spec)
	src, err := harness.NewGitRepo(t.TempDir())
	require.NoError(t, err)
	sha, err := src.Commit("login test")
	require.NoError(t, err)
	body, err := h.PullRequest("opened", ghfixture.PR{Owner: owner, Repo: repo, Number: number, HeadSHA: sha, HeadRef: "feature", CloneURL: src.Dir})
	require.NoError(t, err)
	code, err := h.Deliver(ctx, "pull_request", fmt.Sprintf("login-open-%d", number), body)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code)
	id := workflows.PreviewWorkflowID(owner, repo, number)
	var st workflows.PreviewStatus
	require.Eventually(t, func() bool {
		st, err = h.PreviewStatus(ctx, id, 10*time.Second)
		require.False(t, err == nil && st.Phase == workflows.PreviewFailed, "preview failed: %s", st.LastError)
		return err == nil && st.Phase == workflows.PreviewReady && st.DeployedSHA == sha
	}, 3*time.Minute, 100*time.Millisecond, "preview %s ready", id)
	return sha, st
}

func emuMachinePhase(h *harness.Harness, id string) string {
	for _, m := range h.Emu.Stats().Machines {
		if m.MachineID == id {
			return strings.ToLower(string(m.Phase))
		}
	}
	return ""
}

// A real headless Chromium signs in to a private preview through the
// router's login and the GitHub double: redirected to the login, signs in
// on GitHub's page, comes back through the callback and the ticket, and
// sees the preview. A user without access is refused and wakes nothing;
// the session cookie of one preview does not open another. Screenshots of
// the login page, the preview and the refusal are kept in .test-artifacts.
func TestPreviewLoginInChromium(t *testing.T) {
	bin, err := cdp.Find()
	require.NoError(t, err, "the browser test needs chromium (make test installs it)")
	out := artifactsDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	h, err := harness.Start(ctx, harness.Options{
		Dir:       t.TempDir(),
		Login:     true,
		WorkerEnv: []string{"PREVIEW_VISIBILITY=private"},
		Emulator:  emulator.Config{BootDelay: 200 * time.Millisecond, WakeDelay: 300 * time.Millisecond, SleepDelay: 50 * time.Millisecond},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("router log:\n%s", h.LogTail("router", 4000))
		}
		h.Close()
	})
	r := openLoginPreviews(ctx, t, h)
	r.out = out

	b, err := cdp.Start(ctx, bin, t.TempDir())
	require.NoError(t, err)
	defer b.Close()
	r.p, err = b.NewPage(ctx)
	require.NoError(t, err)
	defer r.p.Close()

	r.unauthenticatedGoesToLogin(t)
	session := r.aliceSignsIn(t)
	r.cookieOpensNoOtherPreview(t, session)
	r.bobIsRefused(t)
	t.Logf("screenshots in %s", out)
}

// The private previews of the login test: pull requests 1 and 2 of
// loginOwner/loginRepo.
const loginOwner, loginRepo = "octo", "secret-app"

// loginRun is the login test's browser (page p) on harness h, the two
// previews it visits (their statuses, their URLs through the router), and
// the emulator's count of wakes the next check starts from.
type loginRun struct {
	ctx                context.Context
	h                  *harness.Harness
	p                  *cdp.Page
	out                string
	sha1               string
	st1, st2           workflows.PreviewStatus
	preview1, preview2 string
	ghWeb              string
	wakes              int64
}

// openLoginPreviews gives alice (not bob) access to the repository, opens
// both previews and waits for both machines to be asleep: every wake from
// there on is counted.
func openLoginPreviews(ctx context.Context, t *testing.T, h *harness.Harness) *loginRun {
	h.GH.AddCollaborator(loginOwner, loginRepo, "alice", "read")
	h.GH.AddUser("bob") // no access to octo/secret-app
	spec := demoSpecFor("2s")
	r := &loginRun{ctx: ctx, h: h}
	r.sha1, r.st1 = openHarnessPreview(ctx, t, h, loginOwner, loginRepo, 1, spec)
	_, r.st2 = openHarnessPreview(ctx, t, h, loginOwner, loginRepo, 2, spec)
	assert.Equal(t, workflows.VisibilityPrivate, r.st1.Visibility)

	_, port, ok := strings.Cut(strings.TrimPrefix(h.RouterURL, "http://"), ":")
	require.True(t, ok)
	r.preview1 = "http://" + harness.PreviewHost(loginOwner, loginRepo, 1) + ":" + port
	r.preview2 = "http://" + harness.PreviewHost(loginOwner, loginRepo, 2) + ":" + port
	r.ghWeb = strings.TrimSuffix(h.GH.WebURL(), "/")

	// Both machines asleep: every wake from here on is counted.
	for _, st := range []workflows.PreviewStatus{r.st1, r.st2} {
		require.Eventually(t, func() bool { return emuMachinePhase(h, st.MachineID) == "sleeping" }, time.Minute, 50*time.Millisecond, "autosleep")
	}
	r.wakes = h.Emu.Stats().Wakes
	return r
}

// unauthenticatedGoesToLogin: 1. Unauthenticated: redirected to the login
// (GitHub's page, via the auth host), and nothing woke.
func (r *loginRun) unauthenticatedGoesToLogin(t *testing.T) {
	ctx, p, h := r.ctx, r.p, r.h
	require.NoError(t, p.Navigate(ctx, r.preview1+"/"))
	u, err := p.URL(ctx)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(u, r.ghWeb+"/login/oauth/authorize?"), "login page, got %s", u)
	assert.Contains(t, u, "redirect_uri="+url.QueryEscape(h.AuthURL+"/callback"))
	require.NoError(t, p.Screenshot(ctx, filepath.Join(r.out, "1-login-page.png")))
	assert.Equal(t, r.wakes, h.Emu.Stats().Wakes, "an unauthenticated visit wakes nothing")
	assert.Equal(t, "sleeping", emuMachinePhase(h, r.st1.MachineID))
}

// signIn signs in as login on GitHub's form and waits to be back.
func (r *loginRun) signIn(t *testing.T, login string) {
	t.Helper()
	require.NoError(t, r.p.Eval(r.ctx, `document.getElementById("login").value = `+strconv.Quote(login)+`; document.getElementById("authorize").click()`, nil))
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, r.p.WaitFor(r.ctx, `!location.href.startsWith(`+strconv.Quote(r.ghWeb)+`) && document.readyState === "complete"`))
}

// aliceSignsIn: 2. alice signs in on the form: callback, ticket, cookie,
// the preview. It returns preview 1's session cookie.
func (r *loginRun) aliceSignsIn(t *testing.T) *cdp.Cookie {
	ctx, p, h := r.ctx, r.p, r.h
	r.signIn(t, "alice")
	u, err := p.URL(ctx)
	require.NoError(t, err)
	assert.Equal(t, r.preview1+"/", u, "back on the page first asked for, the ticket gone from the address")
	text, err := p.Text(ctx)
	require.NoError(t, err)
	assert.Contains(t, text, r.sha1, "the preview's app, deployed at the PR's head")
	require.NoError(t, p.Screenshot(ctx, filepath.Join(r.out, "2-preview-after-login.png")))
	assert.Equal(t, r.wakes+1, h.Emu.Stats().Wakes, "alice's visit woke the machine once")

	cookies, err := p.Cookies(ctx, r.preview1+"/")
	require.NoError(t, err)
	var session *cdp.Cookie
	for i := range cookies {
		if cookies[i].Name == "drydock_session" {
			session = &cookies[i]
		}
	}
	require.NotNil(t, session, "session cookie on the preview host")
	assert.True(t, session.HTTPOnly)
	assert.Equal(t, "Lax", session.SameSite)
	assert.Equal(t, harness.PreviewHost(loginOwner, loginRepo, 1), session.Domain, "host-only: no Domain attribute")
	var visible string
	require.NoError(t, p.Eval(ctx, "document.cookie", &visible))
	assert.NotContains(t, visible, "drydock_session", "HttpOnly: the page's scripts cannot read it")
	return session
}

// cookieOpensNoOtherPreview: 3. The cookie copied to preview 2: not valid
// there (login again), and preview 2's machine stays asleep.
func (r *loginRun) cookieOpensNoOtherPreview(t *testing.T, session *cdp.Cookie) {
	ctx, p, h := r.ctx, r.p, r.h
	wakes := h.Emu.Stats().Wakes
	require.NoError(t, p.SetCookie(ctx, r.preview2+"/", cdp.Cookie{Name: session.Name, Value: session.Value, HTTPOnly: true}))
	require.NoError(t, p.Navigate(ctx, r.preview2+"/"))
	u, err := p.URL(ctx)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(u, r.ghWeb+"/login/oauth/authorize?"), "preview 1's cookie on preview 2: login, got %s", u)
	assert.Equal(t, wakes, h.Emu.Stats().Wakes)
	assert.Equal(t, "sleeping", emuMachinePhase(h, r.st2.MachineID))
}

// bobIsRefused: 4. bob (no access) signs in from a clean browser: 403,
// nothing woken.
func (r *loginRun) bobIsRefused(t *testing.T) {
	ctx, p, h := r.ctx, r.p, r.h
	require.NoError(t, p.Call(ctx, "Network.clearBrowserCookies", nil, nil))
	require.Eventually(t, func() bool { return emuMachinePhase(h, r.st1.MachineID) == "sleeping" }, time.Minute, 50*time.Millisecond, "autosleep after alice")
	wakes := h.Emu.Stats().Wakes
	require.NoError(t, p.Navigate(ctx, r.preview1+"/"))
	r.signIn(t, "bob")
	text, err := p.Text(ctx)
	require.NoError(t, err)
	assert.Contains(t, text, "No access to this preview")
	assert.Contains(t, text, "bob")
	assert.NotContains(t, text, r.sha1)
	require.NoError(t, p.Screenshot(ctx, filepath.Join(r.out, "3-refused-without-access.png")))
	// Reload: still refused (no session was issued), still asleep.
	require.NoError(t, p.Navigate(ctx, r.preview1+"/"))
	u, err := p.URL(ctx)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(u, r.ghWeb+"/login/oauth/authorize?"), "bob has no session: %s", u)
	assert.Equal(t, wakes, h.Emu.Stats().Wakes, "bob woke nothing")
	assert.Equal(t, "sleeping", emuMachinePhase(h, r.st1.MachineID))
}

// demoSpecFor is the demo app's spec with the given autosleep.
func demoSpecFor(autosleep string) string {
	return `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: ` + autosleep + `}
app: {port: 3000, health_path: /healthz, health_timeout: 30s}
start: {command: [python3, examples/previewapp/app.py]}
`
}
