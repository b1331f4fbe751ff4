package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	return h.DeliverSigned(ctx, event, delivery, body, intake.SignatureHeader([]byte(Secret), body))
}

// DeliverSigned is Deliver with the X-Hub-Signature-256 header computed
// beforehand (intake.SignatureHeader with Secret), as a load generator
// prepares its deliveries outside its timed loop: signing is GitHub's work.
func (h *Harness) DeliverSigned(ctx context.Context, event, delivery string, body []byte, signature string) (int, error) {
	replica := next(&h.rrWebhook, len(h.WebhookURLs))
	code, err := PostDelivery(ctx, h.http, h.WebhookURLs[replica]+"/webhooks/github", event, delivery, body, signature)
	if err == nil && code < 300 {
		h.accepted[replica].Add(1)
	}
	return code, err
}

// PostDelivery POSTs a signed delivery to url with hc, with the headers
// GitHub sends, and returns the answer's status (its body read and
// dropped).
func PostDelivery(ctx context.Context, hc *http.Client, url, event, delivery string, body []byte, signature string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/harness")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", signature)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
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
