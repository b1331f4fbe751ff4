package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/workflows"
)

// ClusterDirEnv names a running `make cluster` state directory
// (scripts/cluster.sh start); when it is set, every harness stack runs
// against that cluster, each in a namespace of its own, instead of starting
// `temporal server start-dev` (make test-cluster sets it).
const ClusterDirEnv = "DRYDOCK_CLUSTER_DIR"

// Cluster is a production-shaped Temporal run by scripts/cluster.sh:
// PostgreSQL and the frontend, history, matching and worker services as
// separate processes, which a test can restart or crash one at a time.
type Cluster struct {
	Dir  string // CLUSTER_DIR
	root string // the repository (scripts/cluster.sh)
	addr string
	out  io.Writer
}

// StartCluster starts a cluster in dir on free loopback ports (the server
// is built on first use; see scripts/cluster.sh). Stop it when done.
func StartCluster(ctx context.Context, dir string, out io.Writer) (*Cluster, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	port, err := freePortBlock()
	if err != nil {
		return nil, err
	}
	pg, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	ui, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, root: root, out: out}
	_, pgPort, _ := net.SplitHostPort(pg)
	_, uiPort, _ := net.SplitHostPort(ui)
	if _, err := c.script(ctx, []string{"CLUSTER_PORT=" + strconv.Itoa(port), "CLUSTER_PG_PORT=" + pgPort,
		"CLUSTER_UI_PORT=" + uiPort}, "start"); err != nil {
		return nil, err
	}
	c.addr = fmt.Sprintf("127.0.0.1:%d", port)
	return c, nil
}

// AttachCluster uses the cluster already running in dir.
func AttachCluster(dir string) (*Cluster, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, root: root, out: io.Discard}
	env, err := c.script(context.Background(), nil, "env")
	if err != nil {
		return nil, err
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(env), "TEMPORAL_ADDRESS=")
	if !ok {
		return nil, fmt.Errorf("cluster %s: unexpected `cluster.sh env` output %q", dir, env)
	}
	c.addr = addr
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.waitHealthy(ctx); err != nil {
		return nil, fmt.Errorf("cluster %s (is it started?): %w", dir, err)
	}
	return c, nil
}

// Address is the frontend's host:port.
func (c *Cluster) Address() string { return c.addr }

// Restart stops one service cleanly (frontend, history, matching, worker,
// or postgres) and starts it again; the cluster answers again before it
// returns.
func (c *Cluster) Restart(ctx context.Context, service string) error {
	if _, err := c.script(ctx, nil, "restart", service); err != nil {
		return err
	}
	return c.waitHealthy(ctx)
}

// Kill crashes one service (SIGKILL; PostgreSQL: an immediate shutdown)
// and starts it again, as an orchestrator restarts a crashed pod.
func (c *Cluster) Kill(ctx context.Context, service string) error {
	if _, err := c.script(ctx, nil, "kill", service); err != nil {
		return err
	}
	return c.waitHealthy(ctx)
}

// Stop stops every service and PostgreSQL.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.script(ctx, nil, "stop")
	return err
}

// NewNamespace registers a fresh namespace with Drydock's search
// attributes (deploy/temporal/namespace.sh, as the cluster's own `default`)
// and returns its name: stacks that share a cluster never see each other's
// workflows, schedules or machines.
func (c *Cluster) NewNamespace(ctx context.Context, cli string) (string, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	ns := "harness-" + hex.EncodeToString(b)
	env := append(os.Environ(), "TEMPORAL_CLI="+cli, "TEMPORAL_ADDRESS="+c.addr, "TEMPORAL_NAMESPACE="+ns)
	script := filepath.Join(c.root, "deploy", "temporal", "namespace.sh")
	var last []byte
	// A new namespace reaches the frontend's cache within seconds: the
	// search attributes are added on a later attempt.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		cmd := exec.CommandContext(ctx, "sh", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err == nil {
			return ns, c.waitSearchAttributes(ctx, ns)
		}
		last = out
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return "", fmt.Errorf("register namespace %s on the cluster: %s", ns, lastLines(last))
}

// waitSearchAttributes waits until the services have caught up with a new
// namespace's search attributes: until then a start that sets them fails
// with "no mapping defined for search attribute" (the frontend and history
// refresh their namespace caches every few seconds). It starts a workflow
// that sets each of them, on a task queue nobody polls, and terminates it.
func (c *Cluster) waitSearchAttributes(ctx context.Context, ns string) error {
	tc, err := client.Dial(client.Options{HostPort: c.addr, Namespace: ns, Logger: quiet{}})
	if err != nil {
		return err
	}
	defer tc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return WaitFor(ctx, "search attributes of namespace "+ns, func(ctx context.Context) error {
		run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: "harness-search-attributes-probe", TaskQueue: "harness-probe",
			TypedSearchAttributes: workflows.SearchAttributes(),
		}, "HarnessProbe")
		if err != nil {
			return err
		}
		return tc.TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "search attributes probe")
	})
}

func (c *Cluster) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return WaitFor(ctx, "Temporal cluster at "+c.addr, func(ctx context.Context) error {
		tc, err := client.Dial(client.Options{HostPort: c.addr, Logger: quiet{}})
		if err != nil {
			return err
		}
		defer tc.Close()
		_, err = tc.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
}

// script runs scripts/cluster.sh with CLUSTER_DIR set and returns its
// standard output; its standard error goes to c.out.
func (c *Cluster) script(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.root, "scripts", "cluster.sh"), args...)
	cmd.Env = append(append(os.Environ(), "CLUSTER_DIR="+c.Dir), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, io.MultiWriter(&stderr, c.out)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/cluster.sh %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// freePortBlock picks a frontend port P such that the ports the cluster
// derives from it (P, +1, +2, +6, +10 and each of the first four -300) are
// free a moment ago. P stays below 32768: Temporal's SQL schema keeps the
// membership ports in a smallint (a higher one fails every service with
// "value ... is out of range for type smallint").
func freePortBlock() (int, error) {
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(32000-20000))
		if err != nil {
			return 0, err
		}
		p := 20000 + int(n.Int64())
		if portsFree(p, p+1, p+2, p+6, p+10, p-300, p-299, p-298, p-294) {
			return p, nil
		}
	}
	return 0, errors.New("no free block of ports for a cluster")
}

func portsFree(ports ...int) bool {
	for _, p := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// lastLines is the end of a command's output, for an error message.
func lastLines(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "..." + s[len(s)-1500:]
	}
	return s
}
