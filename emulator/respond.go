package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/drydock-dev/drydock/dedalus"
)

// Error codes the emulator puts in executions' and previews' error_code. The
// spec does not enumerate them.
const (
	ExecErrTimeout          = "EXECUTION_TIMEOUT"
	ExecErrCwdNotFound      = "CWD_NOT_FOUND"
	ExecErrCommandNotFound  = "COMMAND_NOT_FOUND"
	ExecErrStartFailed      = "EXECUTION_START_FAILED"
	ExecErrCancelled        = "EXECUTION_CANCELLED"
	ExecErrMachineDestroyed = "MACHINE_DESTROYED"
)

const (
	contentTypeJSON    = "application/json"
	contentTypeProblem = "application/problem+json"
)

// apiError is an error the handlers answer with: either an ErrorBody (401,
// 403, 409, 429, 503) or a Problem (everything else).
type apiError struct {
	status  int
	body    *dedalus.ErrorBody
	problem *dedalus.Problem
}

func (e *apiError) Error() string {
	if e.body != nil {
		return fmt.Sprintf("%d %s: %s", e.status, e.body.ErrorCode, e.body.Message)
	}
	return fmt.Sprintf("%d %s", e.status, e.problem.Detail)
}

func errBody(status int, code, msg string, retryable bool, retryAfterMS int64, details map[string]string) *apiError {
	return &apiError{status: status, body: &dedalus.ErrorBody{
		ErrorCode: code, Message: msg, Retryable: retryable, RetryAfterMS: retryAfterMS, Details: details,
	}}
}

func problem(status int, detail string, errs ...dedalus.ProblemDetail) *apiError {
	return &apiError{status: status, problem: &dedalus.Problem{
		Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Errors: errs,
	}}
}

func notFound(kind, id string) *apiError {
	return problem(http.StatusNotFound, fmt.Sprintf("%s %s not found", kind, id))
}

func validation(location, msg string, value any) *apiError {
	return problem(http.StatusBadRequest, "validation failed: "+location+": "+msg,
		dedalus.ProblemDetail{Location: location, Message: msg, Value: value})
}

func revisionMismatch(expected, provided string) *apiError {
	return errBody(http.StatusConflict, dedalus.CodeRevisionMismatch, "revision mismatch", true, 0,
		map[string]string{"expected_revision": expected, "provided_revision": provided})
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	if e.body != nil {
		writeJSONType(w, e.status, contentTypeJSON, e.body)
		return
	}
	writeJSONType(w, e.status, contentTypeProblem, e.problem)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONType(w, status, contentTypeJSON, v)
}

func writeJSONType(w http.ResponseWriter, status int, ctype string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, ctype = http.StatusInternalServerError, contentTypeProblem
		b, _ = json.Marshal(dedalus.Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: "encoding response: " + err.Error()})
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeBody decodes a JSON request body strictly into v: unknown fields,
// trailing data and a missing body are 400 problems; over MaxBodyBytes is 413.
func decodeBody(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return problem(http.StatusBadRequest, "request body is required",
			dedalus.ProblemDetail{Location: "body", Message: "request body is required"})
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return problem(http.StatusBadRequest, "invalid JSON body: unexpected data after the JSON value",
			dedalus.ProblemDetail{Location: "body", Message: "unexpected data after the JSON value"})
	}
	return nil
}

func jsonProblem(err error) *apiError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		loc := "body"
		if te.Field != "" {
			loc = "body." + te.Field
		}
		msg := fmt.Sprintf("expected %s, got %s", jsonTypeName(te.Type.Kind().String()), te.Value)
		return problem(http.StatusBadRequest, "validation failed: "+loc+": "+msg,
			dedalus.ProblemDetail{Location: loc, Message: msg})
	case errors.As(err, &se):
		return problem(http.StatusBadRequest, "invalid JSON body: "+se.Error(),
			dedalus.ProblemDetail{Location: "body", Message: se.Error()})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return problem(http.StatusBadRequest, "validation failed: unknown property "+field,
			dedalus.ProblemDetail{Location: "body." + field, Message: "unexpected property"})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem(http.StatusBadRequest, "invalid JSON body: unexpected end of input",
			dedalus.ProblemDetail{Location: "body", Message: "unexpected end of JSON input"})
	default:
		return problem(http.StatusBadRequest, "invalid JSON body: "+err.Error(),
			dedalus.ProblemDetail{Location: "body", Message: err.Error()})
	}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "float64", "float32":
		return "number"
	case "int", "int64", "int32", "uint", "uint64", "uint32":
		return "integer"
	case "slice", "array":
		return "array"
	case "map", "struct":
		return "object"
	case "bool":
		return "boolean"
	}
	return kind
}

// recorder buffers a handler's response so that it can be recorded for
// idempotent replay and, with reset_after injection, dropped.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

// storedResponse is a recorded response.
type storedResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r *recorder) stored() *storedResponse {
	st := r.status
	if st == 0 {
		st = http.StatusOK
	}
	return &storedResponse{status: st, header: r.header.Clone(), body: bytes.Clone(r.body.Bytes())}
}

func (sr *storedResponse) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range sr.header {
		h[k] = append([]string(nil), v...)
	}
	w.WriteHeader(sr.status)
	_, _ = w.Write(sr.body)
}
