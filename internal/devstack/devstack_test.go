package devstack

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A service that records its own shutdown in a shared file.
func svc(name, log string) Service {
	return Service{Name: name, Path: "sh", Args: []string{"-c",
		`trap 'echo "$NAME stopped" >> "$LOG"; exit 0' TERM; echo "$NAME up"; while :; do sleep 0.05; done`},
		Env: []string{"NAME=" + name, "LOG=" + log}}
}

func TestStartsInOrderAndStopsNewestFirst(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	out := &syncBuf{}
	s := New(out)
	ready := filepath.Join(dir, "ready")
	b := svc("b", log)
	b.Args[1] = `touch "$READY"; ` + b.Args[1]
	b.Env = append(b.Env, "READY="+ready)
	b.Ready = func(context.Context) error {
		if _, err := os.Stat(ready); err != nil {
			return errors.New("not yet")
		}
		return nil
	}
	ctx := context.Background()
	require.NoError(t, s.Start(ctx, svc("a", log)))
	require.NoError(t, s.Start(ctx, b))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "b        | b up") }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, s.Stop(5*time.Second))
	got, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "b stopped\na stopped\n", string(got))
}

func TestReportsAServiceThatDies(t *testing.T) {
	s := New(&syncBuf{})
	require.NoError(t, s.Start(context.Background(), Service{Name: "short", Path: "sh", Args: []string{"-c", "exit 3"}}))
	err := s.Wait(context.Background())
	assert.ErrorContains(t, err, "short exited")
	require.NoError(t, s.Stop(time.Second))
}

func TestNotReadyBeforeExitIsAnError(t *testing.T) {
	s := New(&syncBuf{})
	err := s.Start(context.Background(), Service{Name: "bad", Path: "sh", Args: []string{"-c", "exit 1"},
		Ready: func(context.Context) error { return errors.New("never") }})
	assert.ErrorContains(t, err, "bad exited before it was ready")
	require.NoError(t, s.Stop(time.Second))
}

func TestStubbornServiceIsKilled(t *testing.T) {
	s := New(&syncBuf{})
	armed := filepath.Join(t.TempDir(), "armed")
	require.NoError(t, s.Start(context.Background(), Service{Name: "stubborn", Path: "sh",
		Args: []string{"-c", `trap '' TERM; touch "$ARMED"; while :; do sleep 0.05; done`}, Env: []string{"ARMED=" + armed},
		Ready: func(context.Context) error { _, err := os.Stat(armed); return err }}))
	err := s.Stop(200 * time.Millisecond)
	assert.ErrorContains(t, err, "stubborn did not stop")
}
