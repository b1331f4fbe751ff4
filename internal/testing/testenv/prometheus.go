package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Prometheus returns the Prometheus server and promtool binaries: $PROMETHEUS
// and $PROMTOOL (set by `make test`), else whatever scripts/prometheus.sh
// finds or installs (Debian's prometheus package).
func Prometheus() (server, promtool string, err error) {
	server, promtool = os.Getenv("PROMETHEUS"), os.Getenv("PROMTOOL")
	if server != "" && promtool != "" {
		return server, promtool, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", "", err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "prometheus.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("scripts/prometheus.sh: %w", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 {
		return "", "", fmt.Errorf("scripts/prometheus.sh printed %q, want the server's and promtool's paths", out)
	}
	return lines[0], lines[1], nil
}

// PromServer is a running Prometheus server (StartPrometheus).
type PromServer struct {
	// URL is its HTTP API's base, http://127.0.0.1:PORT.
	URL  string
	cmd  *exec.Cmd
	done chan error
	log  *syncBuffer
}

// syncBuffer is the server's output, written by exec's copying goroutine
// and read by Log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartPrometheus runs the Prometheus server binary on a free loopback port
// with config (the text of a prometheus.yml) and its database in dir, and
// waits until it is ready. Stop it when done.
func StartPrometheus(ctx context.Context, server, dir, config string) (*PromServer, error) {
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("prometheus config: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &PromServer{URL: "http://" + addr, done: make(chan error, 1), log: &syncBuffer{}}
	p.cmd = exec.Command(server, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	for {
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("prometheus exited before it was ready (%v):\n%s", err, p.log)
		case <-ctx.Done():
			p.Stop()
			return nil, fmt.Errorf("prometheus not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
	}
}

// Log is what the server wrote so far.
func (p *PromServer) Log() string { return p.log.String() }

// Stop ends the server.
func (p *PromServer) Stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
