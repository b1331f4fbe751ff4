package emulator

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// problemJSON is the exact body of a problem answer.
func problemJSON(status int, detail string) string {
	return fmt.Sprintf(`{"type":"about:blank","title":%q,"status":%d,"detail":%q}`+"\n", http.StatusText(status), status, detail)
}

// TestRoutingAnswers pins how requests are routed, and what the emulator
// answers when a request matches no route or not with its method: the
// emulator's own problem bodies (never ServeMux's plain-text 404/405 or its
// redirects to a cleaned path), Allow listing the route's methods in the
// order of the route table, and paths routed by their segments as the client
// sent them (a trailing slash, a doubled leading slash, a dot segment and an
// encoded slash included), case by case of routingCases.
func TestRoutingAnswers(t *testing.T) {
	t.Parallel()
	var log opLog
	cfg := testConfig()
	cfg.Observe = log.observe
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	for _, c := range routingCases {
		checkRouted(t, s, &log, c)
	}
}

// routingCase is a request to the emulator (its request line, its headers
// hdr, from remote: loopback when empty) and the answer it gets: status,
// Allow header and body; op is the operation the Observe hook sees, if any.
type routingCase struct {
	remote, hdr, line string
	status            int
	allow, body, op   string
}

const routingAuth = "Authorization: Bearer " + testKey + "\r\n"

func notAllowedJSON(method, path string) string {
	return problemJSON(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", method, path))
}

func noRouteJSON(method, path string) string {
	return problemJSON(http.StatusNotFound, fmt.Sprintf("no route for %s %s", method, path))
}

func noMachineJSON(id string) string {
	return problemJSON(http.StatusNotFound, "machine "+id+" not found")
}

var routingCases = []routingCase{
	{"", "", "GET / HTTP/1.1", 404, "", noRouteJSON("GET", "/"), ""},
	{"", "", "GET /nope HTTP/1.1", 404, "", noRouteJSON("GET", "/nope"), ""},
	{"", "", "PUT /v1/machines/dm-x HTTP/1.1", 405, "GET, PATCH, DELETE", notAllowedJSON("PUT", "/v1/machines/dm-x"), ""},
	{"", "", "HEAD /v1/machines HTTP/1.1", 405, "GET, POST", notAllowedJSON("HEAD", "/v1/machines"), ""},
	{"", "", "GET /v1/machines/dm-x/wake HTTP/1.1", 405, "POST", notAllowedJSON("GET", "/v1/machines/dm-x/wake"), ""},
	{"", "", "DELETE /v1/machines HTTP/1.1", 405, "GET, POST", notAllowedJSON("DELETE", "/v1/machines"), ""},
	{"", "", "POST /v1/machines/dm-x/executions/ex-1 HTTP/1.1", 405, "GET, DELETE", notAllowedJSON("POST", "/v1/machines/dm-x/executions/ex-1"), ""},
	{"", "", "HEAD /v1/machines/dm-x/status/stream HTTP/1.1", 405, "GET", notAllowedJSON("HEAD", "/v1/machines/dm-x/status/stream"), ""},
	{"", "", "GET /v1/machines/ HTTP/1.1", 401, "", `{"error_code":"AUTH_REQUIRED","message":"missing Dedalus API key","retryable":false}` + "\n", ""},
	{"", routingAuth, "GET /v1/machines/ HTTP/1.1", 200, "", `{"items":[]}` + "\n", "listMachines "},
	{"", routingAuth, "GET //v1/machines HTTP/1.1", 200, "", `{"items":[]}` + "\n", "listMachines "},
	{"", routingAuth, "GET /v1/machines/.. HTTP/1.1", 404, "", noMachineJSON(".."), "getMachine .."},
	{"", routingAuth, "GET /v1/machines/./executions HTTP/1.1", 404, "", noMachineJSON("."), "listMachineExecutions ."},
	{"", routingAuth, "GET /v1/machines/dm-x/../dm-y HTTP/1.1", 404, "", noRouteJSON("GET", "/v1/machines/dm-x/../dm-y"), ""},
	{"", routingAuth, "GET /v1/machines//executions HTTP/1.1", 404, "", noRouteJSON("GET", "/v1/machines//executions"), ""},
	{"", routingAuth, "GET /v1/machines/dm-x%2Fexecutions HTTP/1.1", 404, "", noMachineJSON("dm-x"), "listMachineExecutions dm-x"},
	{"", routingAuth, "GET /v1/machines/dm%20x HTTP/1.1", 404, "", noMachineJSON("dm x"), "getMachine dm x"},
	{"", routingAuth, "GET /v1/machines/dm%25x HTTP/1.1", 404, "", noMachineJSON("dm%x"), "getMachine dm%x"},
	{"", routingAuth, "GET /v1/machines/dm-x/status/stream/ HTTP/1.1", 404, "", noMachineJSON("dm-x"), "watchMachineStatus dm-x"},
	{"", routingAuth, "GET /v1/machines/dm-x/executions/ex-1/output/ HTTP/1.1", 404, "", noMachineJSON("dm-x"), "getMachineExecutionOutput dm-x"},
	{"", routingAuth, "POST /v1/machines/ HTTP/1.1", 400, "", `{"type":"about:blank","title":"Bad Request","status":400,"detail":"Idempotency-Key header is required","errors":[{"location":"header.Idempotency-Key","message":"required header is missing"}]}` + "\n", "createMachine "},
	{"", routingAuth, "OPTIONS * HTTP/1.1", 404, "", noRouteJSON("OPTIONS", "*"), ""},
	{"", routingAuth, "GET * HTTP/1.1", 404, "", noRouteJSON("GET", "*"), ""},
	{"", routingAuth, "CONNECT 127.0.0.1:80 HTTP/1.1", 404, "", noRouteJSON("CONNECT", ""), ""},
	{"", "", "GET /_local HTTP/1.1", 404, "", noRouteJSON("GET", "/_local"), ""},
	{"", "", "GET /_local/ HTTP/1.1", 404, "", noRouteJSON("GET", "/_local/"), ""},
	{"", "", "GET /_local/stats/ HTTP/1.1", 404, "", noRouteJSON("GET", "/_local/stats/"), ""},
	{"", "", "GET /_local/./stats HTTP/1.1", 404, "", noRouteJSON("GET", "/_local/./stats"), ""},
	{"", "", "GET /_local/faults/../stats HTTP/1.1", 404, "", noRouteJSON("GET", "/_local/faults/../stats"), ""},
	{"", "", "POST /_local/stats HTTP/1.1", 405, "", notAllowedJSON("POST", "/_local/stats"), ""},
	{"", "", "HEAD /_local/faults HTTP/1.1", 405, "", notAllowedJSON("HEAD", "/_local/faults"), ""},
	{"", "", "DELETE /_local/stats/reset HTTP/1.1", 405, "", notAllowedJSON("DELETE", "/_local/stats/reset"), ""},
	{"", routingAuth, "GET //_local/stats HTTP/1.1", 404, "", noRouteJSON("GET", "//_local/stats"), ""},
	{"", routingAuth, "GET /v1/../_local/faults HTTP/1.1", 404, "", noRouteJSON("GET", "/v1/../_local/faults"), ""},
	{"10.0.0.1:5", "", "GET /_local/stats HTTP/1.1", 403, "", problemJSON(403, "/_local is only served to loopback clients"), ""},
	{"10.0.0.1:5", "", "GET /_local/nope HTTP/1.1", 403, "", problemJSON(403, "/_local is only served to loopback clients"), ""},
	{"", "", "GET /_local/faults HTTP/1.1", 200, "", `{"routes":{},"boot_delay":"20ms","wake_delay":"20ms","sleep_delay":"10ms"}` + "\n", ""},
	{"", "", "GET /_local/%66aults HTTP/1.1", 200, "", `{"routes":{},"boot_delay":"20ms","wake_delay":"20ms","sleep_delay":"10ms"}` + "\n", ""},
}

// opLog records the operations an Observe hook sees.
type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) observe(op, machineID string, _ time.Time) {
	l.mu.Lock()
	l.ops = append(l.ops, op+" "+machineID)
	l.mu.Unlock()
}

// take returns the operations recorded since the last take.
func (l *opLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops := l.ops
	l.ops = nil
	return ops
}

// checkRouted serves c's request on s and checks the answer and the
// operation that log records.
func checkRouted(t *testing.T, s *Server, log *opLog, c routingCase) {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(c.line + "\r\nHost: 127.0.0.1\r\n" + c.hdr + "\r\n")))
	require.NoError(t, err, c.line)
	req.RemoteAddr = "127.0.0.1:4000"
	if c.remote != "" {
		req.RemoteAddr = c.remote
	}
	log.take()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	what := c.line + " from " + req.RemoteAddr
	assert.Equal(t, c.status, rec.Code, what)
	assert.Equal(t, c.allow, rec.Header().Get("Allow"), what)
	assert.Empty(t, rec.Header().Get("Location"), what)
	assert.Equal(t, c.body, rec.Body.String(), what)
	if ops := log.take(); c.op == "" {
		assert.Empty(t, ops, what)
	} else {
		assert.Equal(t, []string{c.op}, ops, what)
	}
}

// Over a real connection, a path the client did not clean reaches the
// route its segments name, not a redirect.
func TestRoutingOverHTTPKeepsTheClientsPath(t *testing.T) {
	t.Parallel()
	e := start(t)
	r := e.do("GET", "/v1/machines/..", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, "machine .. not found", r.problem(t).Detail)
	r = e.do("GET", "/v1/machines/", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.JSONEq(t, `{"items":[]}`, string(r.body))

	// An idempotency key is bound to the path as the client sent it.
	key := e.newKey()
	e.create(nil, "Idempotency-Key", key)
	r = e.do("POST", "/v1/machines/", map[string]any{"vcpu": 2, "memory_mib": 1024, "storage_gib": 10}, "Idempotency-Key", key)
	require.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	assert.Equal(t, "IDEMPOTENCY_KEY_REUSED", r.errBody(t).ErrorCode)
}
