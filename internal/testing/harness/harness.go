package harness

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
)

// Constants of every harness stack.
const (
	Secret  = "harness-webhook-secret"
	GHToken = "ghp_harness_token"
	Domain  = "preview.localhost"
	// The OAuth App of Options.Login.
	LoginClientID     = "Iv1.harness-login"
	LoginClientSecret = "harness-login-secret"
)

// Options shape a stack. Zero values are sensible.
type Options struct {
	// Dir is a scratch directory: binaries, logs, the Temporal database.
	Dir string
	// TemporalCLI is the `temporal` binary ($TEMPORAL_CLI when empty).
	TemporalCLI string
	// PersistTemporal keeps Temporal's state in Dir/temporal.db so that
	// RestartTemporal loses nothing.
	PersistTemporal bool
	// Emulator is the Dedalus emulator's configuration; Addr, Logger and
	// DataDir are filled in.
	Emulator emulator.Config
	// Pools returns RUNNER_POOLS for the worker and webhook server, given
	// the stack's GitHub double and webhook URL (nil: no pools).
	Pools func(h *Harness) (string, error)
	// Extra environment of the worker, the webhook server and the router.
	WorkerEnv, WebhookEnv, RouterEnv []string
	// AllowedOwners is the webhook server's DRYDOCK_ALLOWED_OWNERS (empty:
	// "*", so a test may invent any owner; chaos and bench list theirs).
	AllowedOwners string
	// Login turns on the router's GitHub login against the GitHub double:
	// an OAuth App (LoginClientID) whose callback is on AuthURL, and a
	// random session key. Users, collaborators and org members are the
	// test's to add (h.GH.AddCollaborator, AddOrgMember).
	Login bool
	// NoWorker leaves the worker stopped (start it with Worker.Start).
	NoWorker bool
	// Bins holds binaries already built by Build (empty: build into Dir/bin).
	Bins string
	// Cluster runs the stack on a make-cluster Temporal, in a namespace of
	// its own, instead of `temporal server start-dev` (nil: the cluster
	// named by $DRYDOCK_CLUSTER_DIR, if any; else the dev server).
	Cluster *Cluster
	// Replicas runs that many workers, webhook servers and routers (0 or
	// 1: one of each); Deliver and Get alternate between the replicas.
	Replicas int
	// GitHubApp makes the worker a GitHub App (AppID) instead of a token
	// user: the test installs it (h.GH.AddInstallation(AppID, id)) and its
	// deliveries name the installation (ghfixture.PR.InstallationID).
	GitHubApp bool
}

// Harness is one running Drydock.
type Harness struct {
	opts Options
	Root string
	Bins string

	Temporal *Temporal
	TC       client.Client
	Emu      *emulator.Server
	GH       *githubtest.Server

	// The first replica of each binary; Workers, Webhooks and Routers hold
	// every replica (Options.Replicas), with their URLs.
	Worker, Webhook, Router    *Proc
	WebhookURL, RouterURL      string
	Workers, Webhooks, Routers []*Proc
	WebhookURLs, RouterURLs    []string
	// AuthURL is the router's login host (Options.Login), e.g.
	// http://auth.preview.localhost:PORT.
	AuthURL string
	// The binaries' admin listeners: /metrics, /healthz, /readyz.
	WorkerAdminURL, WebhookAdminURL, RouterAdminURL string
	RunnerPools                                     string

	http *http.Client
	logs []*os.File
	// The next replica of Deliver and of Get; the 2xx answers of each
	// webhook replica.
	rrWebhook, rrRouter atomic.Uint64
	accepted            []atomic.Int64
}

// Start builds the binaries and brings the whole stack up.
func Start(ctx context.Context, opts Options) (h *Harness, err error) {
	if opts.Dir == "" {
		return nil, errors.New("harness: Options.Dir is required")
	}
	h = &Harness{opts: opts, http: &http.Client{Transport: &http.Transport{
		MaxIdleConns: 2000, MaxIdleConnsPerHost: 2000, IdleConnTimeout: time.Minute,
	}}}
	defer func() {
		if err != nil {
			h.Close()
			h = nil
		}
	}()
	if h.Root, err = RepoRoot(); err != nil {
		return h, err
	}
	h.Bins = opts.Bins
	if h.Bins == "" {
		h.Bins = filepath.Join(opts.Dir, "bin")
		if err := Build(ctx, h.Root, h.Bins); err != nil {
			return h, err
		}
	}
	// The fakerunner runs as a pool machine's runner user.
	if err := ShareWithMachines(h.Bins); err != nil {
		return h, err
	}

	cli := opts.TemporalCLI
	if cli == "" {
		cli = os.Getenv("TEMPORAL_CLI")
	}
	if cli == "" {
		return h, errors.New("harness: set TEMPORAL_CLI to the temporal binary (the Makefile does)")
	}
	if h.Temporal, err = h.startTemporal(ctx, cli); err != nil {
		return h, err
	}
	if h.TC, err = h.Temporal.Dial(); err != nil {
		return h, err
	}

	ecfg := opts.Emulator
	ecfg.Addr = "127.0.0.1:0"
	ecfg.DataDir = filepath.Join(opts.Dir, "emulator")
	ecfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if h.Emu, err = emulator.New(ecfg); err != nil {
		return h, err
	}
	if err := h.Emu.Start(); err != nil {
		return h, err
	}
	h.GH = githubtest.NewServer()
	h.GH.AddToken(GHToken, "drydock-bot")
	ghEnv, err := h.githubEnv()
	if err != nil {
		return h, err
	}

	// The webhook server and the router listen on ports picked a moment
	// before they start; another process may take one in between (the
	// kernel hands the same ephemeral ports to everyone). A server that
	// exits before it is ready is started again, on new ports.
	var serveErr error
	for attempt := 0; attempt < 3; attempt++ {
		if serveErr = h.startServers(ctx, ghEnv); serveErr == nil || !errors.Is(serveErr, errExitedEarly) {
			break
		}
		for _, p := range append(h.Routers, h.Webhooks...) {
			p.Stop(syscall.SIGKILL, 15*time.Second)
		}
	}
	if serveErr != nil {
		return h, serveErr
	}
	if !opts.NoWorker {
		for _, w := range h.Workers {
			if err := w.Start(); err != nil {
				return h, err
			}
		}
	}
	return h, nil
}

// errExitedEarly: a server exited before it answered /readyz.
var errExitedEarly = errors.New("exited before it was ready")

// startServers picks the listeners' addresses, configures the worker,
// webhook server and router for them and starts the webhook server and
// the router (not the worker), waiting until both are ready.
func (h *Harness) startServers(ctx context.Context, ghEnv []string) error {
	opts := h.opts
	var addr [5]string // webhook, router, and the three admin listeners
	for i := range addr {
		var err error
		if addr[i], err = FreeAddr(); err != nil {
			return err
		}
	}
	webhookAddr, routerAddr := addr[0], addr[1]
	h.WebhookURL, h.RouterURL = "http://"+webhookAddr, "http://"+routerAddr
	h.WorkerAdminURL, h.WebhookAdminURL, h.RouterAdminURL = "http://"+addr[2], "http://"+addr[3], "http://"+addr[4]
	if opts.Pools != nil {
		var err error
		if h.RunnerPools, err = opts.Pools(h); err != nil {
			return err
		}
	}
	_, routerPort, _ := net.SplitHostPort(routerAddr)
	base := append(os.Environ(), "TEMPORAL_ADDRESS="+h.Temporal.Address(), "TEMPORAL_NAMESPACE="+h.Temporal.Namespace(), "LOG_LEVEL=warn")
	h.Worker = h.proc("worker", append(append(base[:len(base):len(base)],
		"DEDALUS_BASE_URL="+h.Emu.URL(), "DEDALUS_API_KEY="+h.Emu.APIKey(),
		"PREVIEW_PUBLIC_URL=http://pr-{number}--{owner}--{repo}."+Domain+":"+routerPort,
		// Previews are public unless a test sets PREVIEW_VISIBILITY in
		// WorkerEnv (the tests that exercise the router's login).
		"PREVIEW_VISIBILITY=public",
		"RUNNER_POOLS="+h.RunnerPools, "WORKER_METRICS_ADDR="+addr[2]), append(ghEnv, opts.WorkerEnv...)...))
	h.Webhook = h.proc("webhook", append(append(base[:len(base):len(base)],
		"WEBHOOK_ADDR="+webhookAddr, "GITHUB_WEBHOOK_SECRET="+Secret,
		"PREVIEW_LOCAL_CLONE_URLS=true", "RUNNER_POOLS="+h.RunnerPools, "WEBHOOK_METRICS_ADDR="+addr[3],
		"DRYDOCK_ALLOWED_OWNERS="+cmp.Or(opts.AllowedOwners, "*")), opts.WebhookEnv...))
	routerEnv := append(base[:len(base):len(base)], "ROUTER_ADDR="+routerAddr, "PREVIEW_DOMAIN="+Domain, "ROUTER_METRICS_ADDR="+addr[4])
	if opts.Login {
		h.AuthURL = "http://auth." + Domain + ":" + routerPort
		h.GH.AddOAuthApp(LoginClientID, LoginClientSecret, h.AuthURL+"/callback")
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		routerEnv = append(routerEnv, "ROUTER_AUTH_URL="+h.AuthURL, "ROUTER_GITHUB_CLIENT_ID="+LoginClientID,
			"ROUTER_GITHUB_CLIENT_SECRET="+LoginClientSecret, "ROUTER_GITHUB_URL="+h.GH.WebURL(),
			"ROUTER_GITHUB_API_URL="+h.GH.URL(), "ROUTER_SESSION_KEY="+hex.EncodeToString(key))
	}
	h.Router = h.proc("router", append(routerEnv, opts.RouterEnv...))
	if err := h.addReplicas(max(1, opts.Replicas)); err != nil {
		return err
	}
	for _, p := range append(h.Webhooks, h.Routers...) {
		if err := p.Start(); err != nil {
			return err
		}
	}
	readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, p := range h.Webhooks {
		if err := h.waitServing(readyCtx, p, h.WebhookURLs[i]+"/readyz"); err != nil {
			return err
		}
	}
	for i, p := range h.Routers {
		if err := h.waitServing(readyCtx, p, h.RouterURLs[i]+"/readyz"); err != nil {
			return err
		}
	}
	return nil
}

// waitServing waits until url answers 200, failing at once (errExitedEarly)
// if p exits first; the error carries the end of p's log.
func (h *Harness) waitServing(ctx context.Context, p *Proc, url string) error {
	ready := HTTPReady(url)
	var err error
	for {
		if !p.Running() {
			err = fmt.Errorf("%s %w", p.Name, errExitedEarly)
			break
		}
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		last := ready(attempt)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			err = fmt.Errorf("%s not ready: %w (last: %v)", p.Name, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	return fmt.Errorf("%w; its log ends:\n%s", err, h.LogTail(p.Name, 2000))
}

func (h *Harness) proc(name string, env []string) *Proc {
	return h.procOf(name, name, env)
}

// procOf is a child running the binary bin, logging to name.log.
func (h *Harness) procOf(name, bin string, env []string) *Proc {
	return &Proc{Name: name, Path: filepath.Join(h.Bins, bin), Env: env, out: h.logFile(name)}
}

// logFile is Dir/<name>.log, where a child's output goes.
func (h *Harness) logFile(name string) io.Writer {
	f, err := os.OpenFile(filepath.Join(h.opts.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	h.logs = append(h.logs, f)
	return f
}

// LogTail returns the last n bytes of a child's log (for failure reports).
func (h *Harness) LogTail(name string, n int) string {
	b, err := os.ReadFile(filepath.Join(h.opts.Dir, name+".log"))
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Close stops everything: router, webhook server and worker (SIGTERM),
// Temporal, the emulator (which kills its machines' processes) and the
// GitHub double.
func (h *Harness) Close() {
	for _, p := range append(append(h.Routers[:len(h.Routers):len(h.Routers)], h.Webhooks...), h.Workers...) {
		if p != nil {
			p.Stop(syscall.SIGTERM, 15*time.Second)
		}
	}
	if h.TC != nil {
		h.TC.Close()
	}
	if h.Temporal != nil {
		h.Temporal.Stop(syscall.SIGTERM, 15*time.Second)
	}
	if h.Emu != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = h.Emu.Close(ctx)
		cancel()
	}
	if h.GH != nil {
		h.GH.Close()
	}
	for _, f := range h.logs {
		_ = f.Close()
	}
}

// Deliver posts a signed webhook delivery to the webhook server, as GitHub
// does, and returns the status code.
func (h *Harness) Deliver(ctx context.Context, event, delivery string, body []byte) (int, error) {
	replica := next(&h.rrWebhook, len(h.WebhookURLs))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.WebhookURLs[replica]+"/webhooks/github", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/harness")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(Secret), body))
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 300 {
		h.accepted[replica].Add(1)
	}
	return resp.StatusCode, nil
}

// PullRequest is a pull_request delivery body (see ghfixture.PullRequest).
func (h *Harness) PullRequest(action string, pr ghfixture.PR) ([]byte, error) {
	return ghfixture.PullRequest(action, pr)
}

// WorkflowJob is a workflow_job delivery body (see ghfixture.WorkflowJob).
func (h *Harness) WorkflowJob(action string, job ghfixture.Job) ([]byte, error) {
	return ghfixture.WorkflowJob(action, job)
}

// PreviewHost is the router host name of a pull request's preview.
func PreviewHost(owner, repo string, number int) string {
	return fmt.Sprintf("pr-%d--%s--%s.%s", number, strings.ToLower(owner), strings.ToLower(repo), Domain)
}

// Get sends GET path to a preview through the router. With several
// routers it alternates between them, and a request a router cannot take
// (it is down) goes to the next one, as a load balancer does.
func (h *Harness) Get(ctx context.Context, owner, repo string, number int, path string) (code int, body []byte, err error) {
	first := next(&h.rrRouter, len(h.RouterURLs))
	for i := range len(h.RouterURLs) {
		code, body, err = h.getVia(ctx, h.RouterURLs[(first+i)%len(h.RouterURLs)], owner, repo, number, path)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return code, body, err
}

func (h *Harness) getVia(ctx context.Context, router, owner, repo string, number int, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, router+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Host = PreviewHost(owner, repo, number)
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// HTTPClient is the harness's pooled HTTP client.
func (h *Harness) HTTPClient() *http.Client { return h.http }

// PreviewStatus asks a PreviewLifecycle for its status (the status query),
// waiting at most timeout for a worker to answer.
func (h *Harness) PreviewStatus(ctx context.Context, id string, timeout time.Duration) (workflows.PreviewStatus, error) {
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st workflows.PreviewStatus
	v, err := h.TC.QueryWorkflow(qctx, id, "", workflows.QueryStatus)
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}
