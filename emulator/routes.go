package emulator

import (
	"net/http"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/loopback"
)

// route is one operation of the emulated Dedalus Machines API: its
// ServeMux pattern, its operationId in the OpenAPI document (what fault
// rules and the Observe hook call it) and how it is answered.
type route struct {
	pattern string
	op      string
	serve   answerer
}

// routes is the emulated API. Every call goes through serveCall
// (authentication, Observe, fault injection, the body) before its answerer.
var routes = []route{
	{"GET /v1/machines", "listMachines", answer((*Server).listMachines)},
	{"POST /v1/machines", "createMachine", idempotent((*Server).createMachine)},
	{"GET /v1/machines/{machine_id}", "getMachine", answer((*Server).getMachine)},
	{"PATCH /v1/machines/{machine_id}", "patchMachine", idempotent((*Server).patchMachine)},
	{"DELETE /v1/machines/{machine_id}", "deleteMachine", idempotent((*Server).deleteMachine)},
	{"POST /v1/machines/{machine_id}/sleep", "sleepMachine", idempotent((*Server).sleepMachine)},
	{"POST /v1/machines/{machine_id}/wake", "wakeMachine", idempotent((*Server).wakeMachine)},
	{"GET /v1/machines/{machine_id}/status/stream", "watchMachineStatus", stream((*Server).watchStatus)},
	{"GET /v1/machines/{machine_id}/executions", "listMachineExecutions", answer((*Server).listExecutions)},
	{"POST /v1/machines/{machine_id}/executions", "createMachineExecution", idempotent((*Server).createExecution)},
	{"GET /v1/machines/{machine_id}/executions/{execution_id}", "getMachineExecution", answer((*Server).getExecution)},
	{"DELETE /v1/machines/{machine_id}/executions/{execution_id}", "deleteMachineExecution", answer((*Server).deleteExecution)},
	{"GET /v1/machines/{machine_id}/executions/{execution_id}/output", "getMachineExecutionOutput", answer((*Server).getExecutionOutput)},
	{"GET /v1/machines/{machine_id}/executions/{execution_id}/events", "listMachineExecutionEvents", answer((*Server).listExecutionEvents)},
	{"GET /v1/machines/{machine_id}/previews", "listMachinePreviews", answer((*Server).listPreviews)},
	{"POST /v1/machines/{machine_id}/previews", "createMachinePreview", idempotent((*Server).createPreview)},
	{"GET /v1/machines/{machine_id}/previews/{preview_id}", "getMachinePreview", answer((*Server).getPreview)},
	{"DELETE /v1/machines/{machine_id}/previews/{preview_id}", "deleteMachinePreview", answer((*Server).deletePreview)},
}

// apiRouter routes the API: paths by their segments as sent, wrong
// methods answered 405 with Allow.
func (s *Server) apiRouter() *router {
	rt := newRouter(true, false)
	for _, r := range routes {
		rt.handle(r.pattern, func(w http.ResponseWriter, req *http.Request) { s.serveCall(r, w, req) })
	}
	return rt
}

// localRouter routes the control endpoints (see the package comment). They
// match their exact path only and answer a wrong method 405 without Allow,
// as they always have.
func (s *Server) localRouter() *router {
	rt := newRouter(false, true)
	rt.handle("GET /_local/stats", s.localStats)
	rt.handle("POST /_local/stats/reset", s.localResetStats)
	rt.handle("GET /_local/faults", s.localFaults)
	rt.handle("PUT /_local/faults", s.localSetFaults)
	return rt
}

// Operations lists the operationIds fault rules can name.
func Operations() []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = r.op
	}
	return out
}

func knownOperation(op string) bool {
	for _, r := range routes {
		if r.op == op {
			return true
		}
	}
	return false
}

// ServeHTTP implements http.Handler. Requests whose Host is not a loopback
// name or address (DNS rebinding) are answered 421 and do nothing.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	// DNS rebinding: a page on evil.example whose name now resolves to
	// 127.0.0.1 reaches this port, but still says Host: evil.example.
	if !loopback.HostAllowed(r.Host, s.cfg.Addr) {
		writeAPIError(w, problem(http.StatusMisdirectedRequest, loopback.Refusal))
		return
	}
	if r.URL.Path == "/_local" || strings.HasPrefix(r.URL.Path, "/_local/") {
		if !loopbackClient(r) {
			writeAPIError(w, problem(http.StatusForbidden, "/_local is only served to loopback clients"))
			return
		}
		s.local.serve(w, r, arrived)
		return
	}
	s.api.serve(w, r, arrived)
}
