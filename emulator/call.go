package emulator

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/drydock-dev/drydock/dedalus"
)

// call is one API call being answered.
type call struct {
	r      *http.Request
	op     string
	apiKey string
	body   []byte
	header http.Header // extra response headers
}

func (c *call) param(n string) string { return c.r.PathValue(n) }

// handlerFunc answers a call with a status and a JSON body, or an error
// (an *apiError is answered as it is, any other error 500).
type handlerFunc func(s *Server, c *call) (int, any, error)

// streamFunc writes a streamed answer itself.
type streamFunc func(s *Server, w http.ResponseWriter, c *call)

// answerer answers a call that passed serveCall's steps; f is the fault
// rolled for it.
type answerer func(s *Server, w http.ResponseWriter, c *call, f rolled)

// answer answers with h: a read, or a delete the API does not make
// idempotent.
func answer(h handlerFunc) answerer {
	return func(s *Server, w http.ResponseWriter, c *call, f rolled) {
		s.deliver(w, c, s.run(c, h, f), f)
	}
}

// idempotent answers a mutation with h: the Idempotency-Key header is
// required, and a successful answer is replayed to a retry with the same
// key and request.
func idempotent(h handlerFunc) answerer {
	return func(s *Server, w http.ResponseWriter, c *call, f rolled) { s.answerIdempotent(w, c, h, f) }
}

// stream answers with h, which writes as it goes: a reset_after fault
// resets before it starts.
func stream(h streamFunc) answerer {
	return func(s *Server, w http.ResponseWriter, c *call, f rolled) {
		if !s.sleepCtx(c.r.Context(), f.latency) {
			return
		}
		if f.resetAfter {
			resetConn(w)
			return
		}
		h(s, w, c)
	}
}

// serveCall takes an API call through the steps every call goes through,
// in the provider's order: authentication, the Observe hook, fault
// injection and reading the body; then the route answers it.
func (s *Server) serveCall(rt route, w http.ResponseWriter, r *http.Request) {
	apiKey, aerr := s.authenticate(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(rt.op, r.PathValue("machine_id"), arrivedAt(r))
	}
	f := s.roll(rt.op)
	if f.reset {
		s.log.Debug("fault: reset before processing", "op", rt.op)
		resetConn(w)
		return
	}
	if f.err != nil {
		s.log.Debug("fault: injected error", "op", rt.op, "status", f.err.status)
		writeAPIError(w, f.err)
		return
	}
	body, berr := readBody(w, r)
	if berr != nil {
		writeAPIError(w, berr)
		return
	}
	rt.serve(s, w, &call{r: r, op: rt.op, apiKey: apiKey, body: body, header: http.Header{}}, f)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err == nil {
		return body, nil
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", MaxBodyBytes))
	}
	return nil, problem(http.StatusBadRequest, "reading request body: "+err.Error())
}

func (s *Server) answerIdempotent(w http.ResponseWriter, c *call, h handlerFunc, f rolled) {
	key := c.r.Header.Get(dedalus.HeaderIdempotencyKey)
	if strings.TrimSpace(key) == "" {
		writeAPIError(w, problem(http.StatusBadRequest, "Idempotency-Key header is required",
			dedalus.ProblemDetail{Location: "header.Idempotency-Key", Message: "required header is missing"}))
		return
	}
	ik := idemKey{scope: scopeOf(c.apiKey), key: key}
	replay, ierr := s.idemBegin(ik, fingerprint(c.r.Method, c.r.URL.Path, c.body))
	if ierr != nil {
		writeAPIError(w, ierr)
		return
	}
	if replay != nil {
		s.log.Debug("idempotent replay", "op", c.op)
		s.deliver(w, c, replay, f)
		return
	}
	settled := false
	defer func() {
		if !settled { // the handler panicked: release the key
			s.idemFinish(ik, nil)
		}
	}()
	resp := s.run(c, h, f)
	if resp.status >= 200 && resp.status < 300 {
		s.idemFinish(ik, resp)
	} else {
		s.idemFinish(ik, nil)
	}
	settled = true
	s.deliver(w, c, resp, f)
}

// run calls h after the injected latency and records its answer.
func (s *Server) run(c *call, h handlerFunc, f rolled) *storedResponse {
	rec := newRecorder()
	if !s.sleepCtx(c.r.Context(), f.latency) {
		writeAPIError(rec, errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "request cancelled", true, 0, nil))
		return rec.stored()
	}
	status, v, err := h(s, c)
	for k, vs := range c.header {
		rec.Header()[k] = vs
	}
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			s.log.Error("handler failed", "op", c.op, "err", err)
			ae = problem(http.StatusInternalServerError, err.Error())
		}
		writeAPIError(rec, ae)
	} else {
		writeJSON(rec, status, v)
	}
	return rec.stored()
}

// deliver sends a recorded answer, or resets the connection instead when
// a reset_after fault was rolled.
func (s *Server) deliver(w http.ResponseWriter, c *call, resp *storedResponse, f rolled) {
	if f.resetAfter {
		s.log.Debug("fault: reset after processing", "op", c.op)
		resetConn(w)
		return
	}
	resp.writeTo(w)
}

// resetConn aborts the connection with a TCP RST (or, without a hijackable
// connection, aborts the handler).
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// loopbackClient reports whether r comes from a loopback address (or from
// an address that is not an IP, as in-process callers have).
func loopbackClient(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return true
	}
	ip := net.ParseIP(host)
	return ip == nil || ip.IsLoopback()
}

func (s *Server) authenticate(r *http.Request) (string, *apiError) {
	key := ""
	authz := strings.TrimSpace(r.Header.Get("Authorization"))
	badScheme := false
	if authz != "" {
		if len(authz) > 7 && strings.EqualFold(authz[:7], "bearer ") {
			key = strings.TrimSpace(authz[7:])
		} else {
			badScheme = true
		}
	}
	if key == "" {
		key = strings.TrimSpace(r.Header.Get(dedalus.HeaderAPIKey))
	}
	if key == "" {
		if badScheme {
			return "", errBody(http.StatusUnauthorized, dedalus.CodeAuthInvalid, "invalid Dedalus API key", false, 0, nil)
		}
		return "", errBody(http.StatusUnauthorized, dedalus.CodeAuthRequired, "missing Dedalus API key", false, 0, nil)
	}
	if subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) != 1 {
		return "", errBody(http.StatusUnauthorized, dedalus.CodeAuthInvalid, "invalid Dedalus API key", false, 0, nil)
	}
	if org := r.Header.Get(dedalus.HeaderOrgID); s.cfg.OrgID != "" && org != "" && org != s.cfg.OrgID {
		return "", errBody(http.StatusForbidden, dedalus.CodeAuthOrgMismatch, "org scope does not match API key ownership", false, 0, nil)
	}
	return key, nil
}
