package harness

import (
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
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

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
	if err = h.prepareBins(ctx); err != nil {
		return h, err
	}
	if err = h.connectTemporal(ctx); err != nil {
		return h, err
	}
	if err = h.startEmulator(); err != nil {
		return h, err
	}
	h.GH = githubtest.NewServer()
	h.GH.AddToken(GHToken, "drydock-bot")
	ghEnv, err := h.githubEnv()
	if err != nil {
		return h, err
	}
	if err = h.startServersRetrying(ctx, ghEnv); err != nil {
		return h, err
	}
	if !opts.NoWorker {
		err = h.startWorkers()
	}
	return h, err
}

// prepareBins finds the repository, builds the binaries into Dir/bin
// unless Options.Bins holds them, and lets the machines run them.
func (h *Harness) prepareBins(ctx context.Context) (err error) {
	if h.Root, err = RepoRoot(); err != nil {
		return err
	}
	h.Bins = h.opts.Bins
	if h.Bins == "" {
		h.Bins = filepath.Join(h.opts.Dir, "bin")
		if err := Build(ctx, h.Root, h.Bins); err != nil {
			return err
		}
	}
	// The fakerunner runs as a pool machine's runner user.
	return ShareWithMachines(h.Bins)
}

// connectTemporal starts the stack's Temporal (startTemporal) with the CLI
// of Options.TemporalCLI or $TEMPORAL_CLI, and dials it.
func (h *Harness) connectTemporal(ctx context.Context) (err error) {
	cli := cmp.Or(h.opts.TemporalCLI, os.Getenv("TEMPORAL_CLI"))
	if cli == "" {
		return errors.New("harness: set TEMPORAL_CLI to the temporal binary (the Makefile does)")
	}
	if h.Temporal, err = h.startTemporal(ctx, cli); err != nil {
		return err
	}
	h.TC, err = h.Temporal.Dial()
	return err
}

// startEmulator starts the Dedalus emulator of Options.Emulator on a free
// loopback port, its data in Dir/emulator, its log discarded.
func (h *Harness) startEmulator() (err error) {
	ecfg := h.opts.Emulator
	ecfg.Addr = "127.0.0.1:0"
	ecfg.DataDir = filepath.Join(h.opts.Dir, "emulator")
	ecfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if h.Emu, err = emulator.New(ecfg); err != nil {
		return err
	}
	return h.Emu.Start()
}

// startServersRetrying runs startServers up to three times.
//
// The webhook server and the router listen on ports picked a moment
// before they start; another process may take one in between (the
// kernel hands the same ephemeral ports to everyone). A server that
// exits before it is ready is started again, on new ports.
func (h *Harness) startServersRetrying(ctx context.Context, ghEnv []string) error {
	var serveErr error
	for attempt := 0; attempt < 3; attempt++ {
		if serveErr = h.startServers(ctx, ghEnv); serveErr == nil || !errors.Is(serveErr, errExitedEarly) {
			break
		}
		for _, p := range append(h.Routers, h.Webhooks...) {
			p.Stop(syscall.SIGKILL, 15*time.Second)
		}
	}
	return serveErr
}

// startWorkers starts every worker replica.
func (h *Harness) startWorkers() error {
	for _, w := range h.Workers {
		if err := w.Start(); err != nil {
			return err
		}
	}
	return nil
}

// errExitedEarly: a server exited before it answered /readyz.
var errExitedEarly = errors.New("exited before it was ready")

// startServers picks the listeners' addresses, configures the worker,
// webhook server and router for them and starts the webhook server and
// the router (not the worker), waiting until both are ready.
func (h *Harness) startServers(ctx context.Context, ghEnv []string) error {
	addr, err := freeAddrs(5) // webhook, router, and the three admin listeners
	if err != nil {
		return err
	}
	h.WebhookURL, h.RouterURL = "http://"+addr[0], "http://"+addr[1]
	h.WorkerAdminURL, h.WebhookAdminURL, h.RouterAdminURL = "http://"+addr[2], "http://"+addr[3], "http://"+addr[4]
	if h.opts.Pools != nil {
		if h.RunnerPools, err = h.opts.Pools(h); err != nil {
			return err
		}
	}
	h.configureProcs(addr, ghEnv)
	if err := h.addReplicas(max(1, h.opts.Replicas)); err != nil {
		return err
	}
	return h.startAndWaitServers(ctx)
}

// freeAddrs is n loopback addresses that were free a moment ago.
func freeAddrs(n int) ([]string, error) {
	addr := make([]string, n)
	for i := range addr {
		var err error
		if addr[i], err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	return addr, nil
}

// configureProcs sets up (does not start) the first worker, webhook
// server and router on the listeners addr: webhook, router, and the
// worker's, webhook's and router's admin listeners.
func (h *Harness) configureProcs(addr []string, ghEnv []string) {
	opts := h.opts
	webhookAddr, routerAddr := addr[0], addr[1]
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
	routerEnv := h.routerEnv(append(base[:len(base):len(base)], "ROUTER_ADDR="+routerAddr,
		"PREVIEW_DOMAIN="+Domain, "ROUTER_METRICS_ADDR="+addr[4]), routerPort)
	h.Router = h.proc("router", append(routerEnv, opts.RouterEnv...))
}

// routerEnv is env plus, with Options.Login, the router's GitHub login:
// the auth host on routerPort, an OAuth App the GitHub double learns, and
// a random session key.
func (h *Harness) routerEnv(env []string, routerPort string) []string {
	if !h.opts.Login {
		return env
	}
	h.AuthURL = "http://auth." + Domain + ":" + routerPort
	h.GH.AddOAuthApp(LoginClientID, LoginClientSecret, h.AuthURL+"/callback")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return append(env, "ROUTER_AUTH_URL="+h.AuthURL, "ROUTER_GITHUB_CLIENT_ID="+LoginClientID,
		"ROUTER_GITHUB_CLIENT_SECRET="+LoginClientSecret, "ROUTER_GITHUB_URL="+h.GH.WebURL(),
		"ROUTER_GITHUB_API_URL="+h.GH.URL(), "ROUTER_SESSION_KEY="+hex.EncodeToString(key))
}

// startAndWaitServers starts every webhook server and router replica and
// waits (a minute at most) until each answers /readyz.
func (h *Harness) startAndWaitServers(ctx context.Context) error {
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
