package harness

import (
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/workflows"
)

// Temporal is a `temporal server start-dev` child process on a fixed
// loopback port. With a database file it keeps its state across Restart,
// as a real cluster does across a frontend/history restart.
//
// On a cluster (Options.Cluster), it is the stack's namespace on that
// cluster instead, and Restart restarts the history and frontend services.
type Temporal struct {
	Proc
	addr      string
	namespace string
	cluster   *Cluster // nil: the dev server
}

// StartTemporal starts the dev server from the CLI at cli. dbFile "" keeps
// everything in memory (and Restart loses it).
func StartTemporal(ctx context.Context, cli, dbFile string, out io.Writer) (*Temporal, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", port, "--headless",
		"--namespace", "default", "--log-level", "error",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false"}
	if dbFile != "" {
		args = append(args, "--db-filename", dbFile)
	}
	args = append(args, workflows.SearchAttributeFlags()...)
	args = append(args, workflows.DevServerFlags()...)
	t := &Temporal{Proc: Proc{Name: "temporal", Path: cli, Args: args, Env: os.Environ(), out: out}, addr: addr, namespace: "default"}
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Temporal) start(ctx context.Context) error {
	if err := t.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return WaitFor(ctx, "Temporal dev server at "+t.addr, func(ctx context.Context) error {
		c, err := client.Dial(client.Options{HostPort: t.addr, Logger: quiet{}})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
}

// OnCluster is a fresh namespace of the cluster c.
func OnCluster(ctx context.Context, c *Cluster, cli string) (*Temporal, error) {
	ns, err := c.NewNamespace(ctx, cli)
	if err != nil {
		return nil, err
	}
	return &Temporal{Proc: Proc{Name: "temporal"}, addr: c.Address(), namespace: ns, cluster: c}, nil
}

// Address is the frontend's host:port.
func (t *Temporal) Address() string { return t.addr }

// Namespace is the stack's namespace: default on the dev server.
func (t *Temporal) Namespace() string { return t.namespace }

// Cluster is the cluster the stack runs on (nil: the dev server).
func (t *Temporal) Cluster() *Cluster { return t.cluster }

// Restart stops the server (SIGTERM, as an orchestrator would) and starts
// it again on the same port and database. On a cluster it restarts the
// history service (every shard moves) and then the frontend.
func (t *Temporal) Restart(ctx context.Context) error {
	if t.cluster != nil {
		if err := t.cluster.Restart(ctx, "history"); err != nil {
			return err
		}
		return t.cluster.Restart(ctx, "frontend")
	}
	t.Stop(syscall.SIGTERM, 30*time.Second)
	return t.start(ctx)
}

// Dial returns a client of the stack's namespace.
func (t *Temporal) Dial() (client.Client, error) {
	return client.Dial(client.Options{HostPort: t.addr, Namespace: t.namespace, Logger: quiet{}})
}

// quiet drops the SDK's connection-retry logging.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
