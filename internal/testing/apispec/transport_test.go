package apispec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeService answers like the real service, with canned responses.
func fakeService(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	var mu sync.Mutex
	var bodies []string
	mux.HandleFunc("POST /v1/machines", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if !json.Valid(b) || !bytes.Contains(b, []byte("vcpu")) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(422)
			fmt.Fprint(w, `{"title":"Unprocessable Entity","status":422}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", "7")
		w.Header().Set("X-Dedalus-Storage-Operation-Id", "op-1") // declared type: [string, null]
		w.WriteHeader(202)
		w.Write(lifecycle(map[string]any{"autosleep_seconds": 300}))
	})
	mux.HandleFunc("GET /v1/machines/{id}", fakeGetMachine)
	mux.HandleFunc("GET /v1/machines/{id}/status/stream", fakeStatusStream)
	mux.HandleFunc("GET /_local/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"anything":"goes"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			if b != "" && !json.Valid([]byte(b)) {
				t.Errorf("server received a mangled body %q", b)
			}
		}
	})
	return srv
}

// fakeGetMachine answers a machine's lifecycle: 404 for "missing", one
// without status for "broken", an undeclared 418 for "teapot".
func fakeGetMachine(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("id") {
	case "missing":
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(404)
		fmt.Fprint(w, `{"title":"Not Found","status":404,"detail":"no such machine"}`)
	case "broken": // no status
		w.Header().Set("Content-Type", "application/json")
		w.Write(lifecycle(nil, "status"))
	case "teapot": // status the operation does not declare, no default for it
		w.WriteHeader(http.StatusTeapot)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(lifecycle(nil))
	}
}

// fakeStatusStream streams three status events, the third not a
// LifecycleResponse, and for "truncated" an unterminated fourth; 404 for
// "gone".
func fakeStatusStream(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") == "gone" {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(404)
		fmt.Fprint(w, `{"title":"Not Found","status":404}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	fmt.Fprint(w, ": keep-alive\n\n")
	fmt.Fprintf(w, "id: 1\nevent: status\ndata: %s\n\n", lifecycle(nil))
	fl.Flush()
	fmt.Fprintf(w, "id: 2\r\nevent: status\r\ndata: %s\r\n\r\n", lifecycle(map[string]any{"autosleep_seconds": 60}))
	fl.Flush()
	// Not a LifecycleResponse: missing status, split across data lines.
	fmt.Fprintf(w, "id: 3\nevent: status\ndata: {\"machine_id\":\"dm-123\",\ndata: \"vcpu\":4}\n\n")
	fl.Flush()
	if r.PathValue("id") == "truncated" {
		fmt.Fprintf(w, "id: 4\nevent: status\ndata: {\"partial\":") // never terminated: not dispatched
	}
}

// validatingClient is a client of srv through a validating Transport of s.
func validatingClient(s *Spec, srv *httptest.Server) (*Transport, *http.Client) {
	tr := s.Transport(srv.Client().Transport)
	return tr, &http.Client{Transport: tr}
}

func do(t *testing.T, c *http.Client, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer dsk-test")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func TestTransportCleanTraffic(t *testing.T) {
	s := mustSpec(t)
	srv := fakeService(t)
	tr, c := validatingClient(s, srv)

	resp, body := do(t, c, "POST", srv.URL+"/v1/machines", `{"vcpu":4,"memory_mib":8192,"storage_gib":40,"autosleep":"30m"}`, "Idempotency-Key", "k1")
	assert.Equal(t, 202, resp.StatusCode)
	assert.JSONEq(t, string(lifecycle(map[string]any{"autosleep_seconds": 300})), string(body), "the caller reads the body unchanged")

	resp, _ = do(t, c, "GET", srv.URL+"/v1/machines/dm-123", "")
	assert.Equal(t, 200, resp.StatusCode)
	resp, body = do(t, c, "GET", srv.URL+"/v1/machines/missing", "")
	assert.Equal(t, 404, resp.StatusCode)
	assert.Contains(t, string(body), "no such machine")
	resp, body = do(t, c, "GET", srv.URL+"/_local/stats", "")
	assert.Equal(t, 200, resp.StatusCode)
	assert.JSONEq(t, `{"anything":"goes"}`, string(body))

	assert.Empty(t, tr.Violations())
	assert.Equal(t, 3, tr.Exchanges())
	assert.Equal(t, 1, tr.Ignored())
}

func TestTransportRecordsViolations(t *testing.T) {
	s := mustSpec(t)
	srv := fakeService(t)
	tr, c := validatingClient(s, srv)

	// Request violations: unknown field, missing Idempotency-Key. The caller
	// still gets the service's answer; nothing is turned into an error.
	resp, _ := do(t, c, "POST", srv.URL+"/v1/machines", `{"vcpu":4,"memory_mib":8192,"storage_gib":40,"name":"x"}`, "Idempotency-Key", "k1")
	assert.Equal(t, 202, resp.StatusCode)
	resp, _ = do(t, c, "POST", srv.URL+"/v1/machines", validCreate)
	assert.Equal(t, 202, resp.StatusCode)
	// Response violations: missing status; undeclared status code.
	resp, body := do(t, c, "GET", srv.URL+"/v1/machines/broken", "")
	assert.Equal(t, 200, resp.StatusCode)
	assert.JSONEq(t, string(lifecycle(nil, "status")), string(body))
	resp, _ = do(t, c, "GET", srv.URL+"/v1/machines/gone/status/stream", "")
	assert.Equal(t, 404, resp.StatusCode)

	v := tr.Violations()
	require.Len(t, v, 4, "%v", v)
	assert.Equal(t, KindRequest, v[0].Kind)
	assert.Equal(t, "POST", v[0].Method)
	assert.Equal(t, "/v1/machines", v[0].Path)
	assert.Equal(t, 202, v[0].Status)
	assert.Contains(t, strings.Join(v[0].Messages, " "), "name")
	assert.Equal(t, KindRequest, v[1].Kind)
	assert.Contains(t, v[1].String(), "Idempotency-Key")
	assert.Equal(t, KindResponse, v[2].Kind)
	assert.Equal(t, "/v1/machines/broken", v[2].Path)
	assert.Contains(t, v[2].String(), "status")
	assert.Equal(t, KindResponse, v[3].Kind)
	assert.Equal(t, 404, v[3].Status)
	assert.Equal(t, 4, tr.Exchanges())
}

func TestTransportStatusStream(t *testing.T) {
	s := mustSpec(t)
	srv := fakeService(t)
	for _, id := range []string{"dm-123", "truncated"} {
		t.Run(id, func(t *testing.T) {
			tr := s.Transport(srv.Client().Transport)
			c := &http.Client{Transport: tr}
			resp, body := do(t, c, "GET", srv.URL+"/v1/machines/"+id+"/status/stream", "", "Accept", "text/event-stream")
			assert.Equal(t, 200, resp.StatusCode)

			// The caller reads the stream byte for byte.
			want := fmt.Sprintf(": keep-alive\n\nid: 1\nevent: status\ndata: %s\n\nid: 2\r\nevent: status\r\ndata: %s\r\n\r\nid: 3\nevent: status\ndata: {\"machine_id\":\"dm-123\",\ndata: \"vcpu\":4}\n\n",
				lifecycle(nil), lifecycle(map[string]any{"autosleep_seconds": 60}))
			if id == "truncated" {
				want += "id: 4\nevent: status\ndata: {\"partial\":"
			}
			assert.Equal(t, want, string(body))

			assert.Equal(t, 3, tr.Events(), "three complete events; an unterminated one is not dispatched")
			v := tr.Violations()
			require.Len(t, v, 1, "%v", v)
			assert.Equal(t, KindEvent, v[0].Kind)
			assert.Equal(t, 200, v[0].Status)
			assert.Contains(t, v[0].String(), `(id "3") is not a LifecycleResponse`)
			assert.Contains(t, v[0].String(), "status")
		})
	}
}

func TestTransportUndeclaredStatusWithoutBody(t *testing.T) {
	s := mustSpec(t)
	srv := fakeService(t)
	tr, c := validatingClient(s, srv)
	resp, _ := do(t, c, "GET", srv.URL+"/v1/machines/teapot", "")
	assert.Equal(t, http.StatusTeapot, resp.StatusCode)
	// getMachine has a `default` response (problem+json), so 418 is declared
	// through it, but then the body must be problem+json.
	v := tr.Violations()
	require.Len(t, v, 1, "%v", v)
	assert.Equal(t, KindResponse, v[0].Kind)
}

func TestTransportUnknownV1Path(t *testing.T) {
	s := mustSpec(t)
	srv := fakeService(t)
	tr, c := validatingClient(s, srv)
	resp, _ := do(t, c, "GET", srv.URL+"/v1/machinez", "")
	assert.Equal(t, 404, resp.StatusCode)
	v := tr.Violations()
	require.Len(t, v, 1)
	assert.Contains(t, v[0].String(), "not in the contract")
	assert.Equal(t, 0, tr.Ignored())
}

// A body without GetBody (a plain io.Reader) reaches the server intact.
func TestTransportNonReplayableBody(t *testing.T) {
	s := mustSpec(t)
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(lifecycle(nil))
	}))
	defer srv.Close()
	tr := s.Transport(srv.Client().Transport)
	req, err := http.NewRequest("POST", srv.URL+"/v1/machines", io.MultiReader(strings.NewReader(validCreate)))
	require.NoError(t, err)
	require.Nil(t, req.GetBody)
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "k")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, validCreate, string(got))
	assert.Same(t, req, resp.Request)
	assert.Empty(t, tr.Violations())
}

func TestTransportConcurrent(t *testing.T) {
	s := mustSpec(t)
	srv := fakeService(t)
	tr, c := validatingClient(s, srv)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 4 {
			case 0:
				do(t, c, "POST", srv.URL+"/v1/machines", validCreate, "Idempotency-Key", fmt.Sprint("k", i))
			case 1:
				do(t, c, "GET", srv.URL+"/v1/machines/dm-123", "")
			case 2:
				do(t, c, "GET", srv.URL+"/v1/machines/broken", "")
			case 3:
				do(t, c, "GET", srv.URL+"/v1/machines/dm-1/status/stream", "")
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, n, tr.Exchanges())
	var resp, ev int
	for _, v := range tr.Violations() {
		switch v.Kind {
		case KindResponse:
			resp++
		case KindEvent:
			ev++
		default:
			t.Errorf("unexpected violation %v", v)
		}
	}
	assert.Equal(t, n/4, resp)
	assert.Equal(t, n/4, ev)
	assert.Equal(t, 3*n/4, tr.Events())
}

func BenchmarkValidateExchange(b *testing.B) {
	s, err := Contract()
	if err != nil {
		b.Fatal(err)
	}
	body := lifecycle(nil)
	for b.Loop() {
		req := request("POST", "/v1/machines", validCreate, "Idempotency-Key", "k1")
		if err := s.ValidateRequest(req); err != nil {
			b.Fatal(err)
		}
		if err := s.ValidateResponse(req, response(202, "application/json", body)); err != nil {
			b.Fatal(err)
		}
	}
}
