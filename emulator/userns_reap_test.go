package emulator

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// A machine's namespace holder lives as long as the machine without costing
// the emulator a file descriptor (a pidfd) or an OS thread (one blocked
// waiting for it): with thousands of machines, one of each per machine ran
// the process out of its descriptor limit and toward Go's 10,000 threads.
// A deleted machine's holder is reaped, not left a zombie, and so are the
// holders of the machines still there when the emulator closes.
//
// Not parallel: it counts the process's descriptors and threads.
func TestNamespaceHoldersHoldNothingAndAreReaped(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("machines have a namespace holder only when the emulator runs as root (as on these machines)")
	}
	s, err := New(testConfig())
	require.NoError(t, err)
	require.NoError(t, s.Start())
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close(context.Background())
		}
	})
	e := &env{t: t, s: s, url: s.URL(), http: &http.Client{Timeout: 20 * time.Second}}

	const n = 24
	pidfds0, threads0 := countPidfds(t), countThreads(t)
	var ids []string
	for range n {
		m := e.running(nil)
		x, out := e.run(m.MachineID, map[string]any{"command": []string{"true"}})
		require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
		ids = append(ids, m.MachineID)
	}
	holders := holderPids(t, s, ids)
	require.Len(t, holders, n, "every machine that ran a command has a namespace holder")
	assert.Less(t, countPidfds(t)-pidfds0, n/4, "pidfds held for %d running holders", n)
	assert.Less(t, countThreads(t)-threads0, n/4, "threads added for %d running holders", n)

	half := n / 2
	for _, id := range ids[:half] {
		require.Equal(t, http.StatusAccepted, e.do("DELETE", "/v1/machines/"+id, nil).status)
	}
	for _, id := range ids[:half] {
		e.waitPhase(id, dedalus.PhaseDestroyed)
	}
	eventually(t, 10*time.Second, "the deleted machines' holders reaped", func() bool {
		return len(remaining(holders[:half])) == 0
	})
	assert.Empty(t, remaining(holders[:half]), "processes (zombies included) left by deleted machines")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, s.Close(ctx))
	closed = true
	assert.Empty(t, remaining(holders[half:]), "processes (zombies included) left by the machines of a closed emulator")
}

// holderPids are the namespace holders of machines ids, in order.
func holderPids(t *testing.T, s *Server, ids []string) []int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var pids []int
	for _, id := range ids {
		if m := s.machines[id]; m != nil && m.nsPid > 0 {
			pids = append(pids, m.nsPid)
		}
	}
	return pids
}

// remaining are the pids that still exist as this process's children,
// zombies included.
func remaining(pids []int) []int {
	var left []int
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			left = append(left, pid)
		}
	}
	return left
}

// countPidfds is how many process file descriptors this process holds.
func countPidfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.Contains(target, "pidfd") {
			n++
		}
	}
	return n
}

// countThreads is how many OS threads this process has.
func countThreads(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	return len(ents)
}
