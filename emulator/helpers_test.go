package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// appBin is a tiny HTTP app compiled once in TestMain. It listens on
// 127.0.0.1:$PORT and serves:
//
//	/      an in-memory counter, incremented on each request
//	/pid   its pid
//	/ws    a raw Upgrade handshake followed by a byte echo
//	/sse   three server-sent events, 50ms apart
var appBin string

const appSource = `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, n.Add(1)) })
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, os.Getpid()) })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "emulator-test-app-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	src := filepath.Join(dir, "main.go")
	appBin = filepath.Join(dir, "app")
	if err := os.WriteFile(src, []byte(appSource), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", appBin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GO111MODULE=on", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building test app: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testKey = "test-key"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// tiny delays for tests
func testConfig() Config {
	return Config{
		Addr:       "127.0.0.1:0",
		APIKey:     testKey,
		BootDelay:  20 * time.Millisecond,
		WakeDelay:  20 * time.Millisecond,
		SleepDelay: 10 * time.Millisecond,
		Seed:       42,
		Logger:     quiet,
	}
}

type env struct {
	t    *testing.T
	s    *Server
	url  string
	http *http.Client
	keys atomic.Int64
}

func start(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	cfg := testConfig()
	for _, m := range mods {
		m(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	return &env{t: t, s: s, url: s.URL(), http: &http.Client{Timeout: 20 * time.Second}}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r *resp) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

func (r *resp) errBody(t *testing.T) dedalus.ErrorBody {
	t.Helper()
	require.Equal(t, "application/json", r.header.Get("Content-Type"), "body: %s", r.body)
	var e dedalus.ErrorBody
	r.json(t, &e)
	return e
}

func (r *resp) problem(t *testing.T) dedalus.Problem {
	t.Helper()
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "body: %s", r.body)
	var p dedalus.Problem
	r.json(t, &p)
	require.Equal(t, "about:blank", p.Type)
	require.Equal(t, r.status, p.Status)
	require.Equal(t, http.StatusText(r.status), p.Title)
	return p
}

// h is a header list: "Name", "value", ...
type h []string

func (e *env) newKey() string { return fmt.Sprintf("key-%d-%d", time.Now().UnixNano(), e.keys.Add(1)) }

// raw sends a request; headers are exactly those given (plus auth unless noAuth).
func (e *env) raw(method, path string, body any, hdr h) (*resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		bs, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(bs)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	return &resp{status: res.StatusCode, header: res.Header, body: b}, nil
}

// do sends an authenticated request, adding an Idempotency-Key to mutations
// unless hdr names one.
func (e *env) do(method, path string, body any, hdr ...string) *resp {
	e.t.Helper()
	hs := h{"Authorization", "Bearer " + testKey}
	hasKey := false
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Idempotency-Key") {
			hasKey = true
		}
	}
	if !hasKey && method != http.MethodGet {
		hs = append(hs, "Idempotency-Key", e.newKey())
	}
	if body != nil {
		hs = append(hs, "Content-Type", "application/json")
	}
	hs = append(hs, hdr...)
	r, err := e.raw(method, path, body, hs)
	require.NoError(e.t, err)
	return r
}

func (e *env) create(body any, hdr ...string) dedalus.Machine {
	e.t.Helper()
	if body == nil {
		body = map[string]any{"vcpu": 2, "memory_mib": 1024, "storage_gib": 10}
	}
	r := e.do("POST", "/v1/machines", body, hdr...)
	require.Equal(e.t, http.StatusAccepted, r.status, "body: %s", r.body)
	var m dedalus.Machine
	r.json(e.t, &m)
	return m
}

func (e *env) get(id string) (dedalus.Machine, *resp) {
	e.t.Helper()
	r := e.do("GET", "/v1/machines/"+id, nil)
	require.Equal(e.t, http.StatusOK, r.status, "body: %s", r.body)
	var m dedalus.Machine
	r.json(e.t, &m)
	return m, r
}

func (e *env) waitPhase(id string, phase dedalus.MachinePhase) dedalus.Machine {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ := e.get(id)
		if m.Status.Phase == phase {
			return m
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("machine %s: phase %s, want %s", id, m.Status.Phase, phase)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// running creates a machine and waits until it runs.
func (e *env) running(body any) dedalus.Machine {
	e.t.Helper()
	m := e.create(body)
	return e.waitPhase(m.MachineID, dedalus.PhaseRunning)
}

func (e *env) exec(id string, body any) dedalus.Execution {
	e.t.Helper()
	r := e.do("POST", "/v1/machines/"+id+"/executions", body)
	require.Equal(e.t, http.StatusOK, r.status, "body: %s", r.body)
	var x dedalus.Execution
	r.json(e.t, &x)
	return x
}

func (e *env) waitExec(id, eid string) dedalus.Execution {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do("GET", "/v1/machines/"+id+"/executions/"+eid, nil)
		require.Equal(e.t, http.StatusOK, r.status, "body: %s", r.body)
		var x dedalus.Execution
		r.json(e.t, &x)
		if x.Status.Terminal() {
			return x
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("execution %s still %s", eid, x.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run executes argv to completion and returns the execution and its output.
func (e *env) run(id string, body map[string]any) (dedalus.Execution, dedalus.ExecutionOutput) {
	e.t.Helper()
	x := e.exec(id, body)
	x = e.waitExec(id, x.ExecutionID)
	r := e.do("GET", "/v1/machines/"+id+"/executions/"+x.ExecutionID+"/output", nil)
	require.Equal(e.t, http.StatusOK, r.status)
	var out dedalus.ExecutionOutput
	r.json(e.t, &out)
	return x, out
}

func (e *env) stats() Stats {
	e.t.Helper()
	r, err := e.raw("GET", "/_local/stats", nil, nil)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusOK, r.status)
	var st Stats
	r.json(e.t, &st)
	return st
}

// procsOf lists the live processes whose environment names machine id,
// but the machine's namespace holder (userns.go), which lives as long as
// the machine.
func procsOf(id string) []int {
	var pids []int
	for _, p := range machineProcs(id, map[int]bool{}) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid)); string(b) == "sleep\x00"+holderSleep+"\x00" {
			continue
		}
		pids = append(pids, p.pid)
	}
	return pids
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keys(t *testing.T, body []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m))
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// pageAll reads the list at path (whose query sets the limit) page by
// page, by cursor, to the last page, which names no next cursor; more than
// maxPages pages fail the test. It returns the items and how many pages
// held them.
func pageAll[T any](t *testing.T, e *env, path string, maxPages int) ([]T, int) {
	t.Helper()
	var all []T
	cursor := ""
	for pages := 1; ; pages++ {
		p := path
		if cursor != "" {
			p += "&cursor=" + cursor
		}
		r := e.do("GET", p, nil)
		require.Equal(t, http.StatusOK, r.status)
		var page dedalus.Page[T]
		r.json(t, &page)
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			assert.NotContains(t, string(r.body), "next_cursor")
			return all, pages
		}
		require.Less(t, pages, maxPages, "more than %d pages", maxPages)
		cursor = page.NextCursor
	}
}
