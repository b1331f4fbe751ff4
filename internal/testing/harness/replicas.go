package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// startTemporal is the stack's Temporal: a namespace of its own on the
// cluster of Options.Cluster or $DRYDOCK_CLUSTER_DIR, else a dev server.
func (h *Harness) startTemporal(ctx context.Context, cli string) (*Temporal, error) {
	c := h.opts.Cluster
	if c == nil {
		if dir := os.Getenv(ClusterDirEnv); dir != "" {
			var err error
			if c, err = AttachCluster(dir); err != nil {
				return nil, fmt.Errorf("%s: %w", ClusterDirEnv, err)
			}
		}
	}
	if c != nil {
		return OnCluster(ctx, c, cli)
	}
	db := ""
	if h.opts.PersistTemporal {
		db = filepath.Join(h.opts.Dir, "temporal.db")
	}
	return StartTemporal(ctx, cli, db, h.logFile("temporal"))
}

// addReplicas fills Workers, Webhooks and Routers (and their URLs) with
// the first replica of each, which startServers configured, and n-1 more
// alike but for their listeners. The workers' PREVIEW_PUBLIC_URL stays the
// first router's, as one load balancer's name.
func (h *Harness) addReplicas(n int) error {
	h.Workers, h.Webhooks, h.Routers = []*Proc{h.Worker}, []*Proc{h.Webhook}, []*Proc{h.Router}
	h.WebhookURLs, h.RouterURLs = []string{h.WebhookURL}, []string{h.RouterURL}
	h.accepted = make([]atomic.Int64, n)
	if n > 1 && h.opts.Login {
		return errors.New("harness: Options.Login takes one router (Replicas <= 1)")
	}
	for i := 2; i <= n; i++ {
		addr, err := freeAddrs(5) // webhook, router, and the worker's, webhook's and router's admin listeners
		if err != nil {
			return err
		}
		suffix := fmt.Sprintf("-%d", i)
		h.Workers = append(h.Workers, h.procOf("worker"+suffix, "worker",
			withEnv(h.Worker.Env, "WORKER_METRICS_ADDR="+addr[2])))
		h.Webhooks = append(h.Webhooks, h.procOf("webhook"+suffix, "webhook",
			withEnv(h.Webhook.Env, "WEBHOOK_ADDR="+addr[0], "WEBHOOK_METRICS_ADDR="+addr[3])))
		h.Routers = append(h.Routers, h.procOf("router"+suffix, "router",
			withEnv(h.Router.Env, "ROUTER_ADDR="+addr[1], "ROUTER_METRICS_ADDR="+addr[4])))
		h.WebhookURLs = append(h.WebhookURLs, "http://"+addr[0])
		h.RouterURLs = append(h.RouterURLs, "http://"+addr[1])
	}
	return nil
}

// withEnv is a copy of env with each KEY=value of set replacing KEY's
// entries.
func withEnv(env []string, set ...string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		keep := true
		for _, s := range set {
			if strings.HasPrefix(kv, s[:strings.IndexByte(s, '=')+1]) {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

// next is the index of the next of n replicas, round-robin on the counter
// rr (0 when there is one).
func next(rr *atomic.Uint64, n int) int {
	if n <= 1 {
		return 0
	}
	return int((rr.Add(1) - 1) % uint64(n))
}

// AcceptedByReplica is how many deliveries each webhook replica answered
// with a 2xx.
func (h *Harness) AcceptedByReplica() []int64 {
	out := make([]int64, len(h.accepted))
	for i := range h.accepted {
		out[i] = h.accepted[i].Load()
	}
	return out
}
