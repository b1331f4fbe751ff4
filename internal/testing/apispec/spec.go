// Package apispec proves that HTTP traffic conforms to the Dedalus Machines
// (DCS) API contract: the provider's published OpenAPI 3.1 document plus
// Drydock's marked local patch, both vendored in dedalus/openapi.
//
// It is test support: wrap the http.RoundTripper of the Go client (or of a
// client talking to the emulator) with Spec.Transport and every request sent
// and every response received is validated against the contract, and the
// violations are recorded for the test to assert on.
//
// Validation is done by github.com/pb33f/libopenapi-validator. The quirks of
// that library that matter here, and the narrow workarounds for them, are
// documented where they are handled (see validateBody and ValidateSchema).
package apispec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/radix"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/drydock-dev/drydock/dedalus/openapi"
)

// Spec is a loaded, validated-ready copy of the contract. It is immutable after
// Parse and safe for concurrent use.
type Spec struct {
	model   *v3.Document
	v       validator.Validator
	schemas schema_validation.SchemaValidator
	version float32
	// routing is used only to decide whether a request targets the contract
	// at all, and to look up declared schemas; it holds the path tree (with
	// the library's regex fallback) and nothing else.
	routing *config.ValidationOptions
	// prefixes are the first segments of the contract's paths ("/v1/").
	prefixes []string
}

// Contract returns the vendored contract (dedalus/openapi: the published
// document plus Drydock's marked local patch), built once per process:
// building the model of the ~490 KB document is the expensive part.
func Contract() (*Spec, error) { return contract() }

var contract = sync.OnceValues(func() (*Spec, error) {
	return Parse(openapi.Published, openapi.LocalPatch)
})

// Parse builds a Spec from a published contract and a local patch (an RFC
// 7396 JSON Merge Patch that may only add properties to schemas the contract
// already has; see mergeAdditions). It is not memoized: use Contract.
func Parse(published, patch []byte) (*Spec, error) {
	doc, err := decodeObject(published)
	if err != nil {
		return nil, fmt.Errorf("apispec: parse contract: %w", err)
	}
	if len(bytes.TrimSpace(patch)) > 0 {
		p, err := decodeObject(patch)
		if err != nil {
			return nil, fmt.Errorf("apispec: parse local patch: %w", err)
		}
		if err := mergeAdditions(doc, p, ""); err != nil {
			return nil, fmt.Errorf("apispec: local patch: %w", err)
		}
	}
	patched, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("apispec: re-encode contract: %w", err)
	}
	document, err := libopenapi.NewDocument(patched)
	if err != nil {
		return nil, fmt.Errorf("apispec: load contract: %w", err)
	}
	built, err := document.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("apispec: build model of the contract: %w", err)
	}
	opts := []config.Option{
		// Assert `format` (date-time, uuid, uri, int64, ...): the emulator
		// must produce RFC 3339 timestamps like the real service.
		config.WithFormatAssertions(),
		// Operations without a requestBody (wake, sleep, delete, ...) must be
		// sent without one: "send nothing the schema does not list".
		config.WithRejectUndeclaredRequestBody(),
	}
	v := validator.NewValidatorFromV3Model(&built.Model, opts...)
	var prefixes []string
	for pair := built.Model.Paths.PathItems.First(); pair != nil; pair = pair.Next() {
		first, _, _ := strings.Cut(strings.TrimPrefix(pair.Key(), "/"), "/")
		if p := "/" + first + "/"; !slices.Contains(prefixes, p) && !strings.Contains(first, "{") {
			prefixes = append(prefixes, p)
		}
	}
	return &Spec{
		prefixes: prefixes,
		model:    &built.Model,
		v:        v,
		schemas:  schema_validation.NewSchemaValidatorWithLogger(slog.New(slog.DiscardHandler), opts...),
		version:  helpers.VersionToFloat(built.Model.Version),
		routing:  &config.ValidationOptions{PathTree: radix.BuildPathTree(&built.Model), RegexCache: &sync.Map{}},
	}, nil
}

func decodeObject(raw []byte) (map[string]any, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // re-encode numbers (limits, examples) exactly as written
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, errors.New("not a JSON object")
	}
	return doc, nil
}

// mergeAdditions applies patch to doc as an RFC 7396 merge patch restricted
// to additions: objects are merged, and a key may be added only directly
// under a "properties" object (a new property of an existing schema). A patch
// that would replace or delete anything the published contract says, or
// invent a schema it lacks, is refused with the JSON pointer it names, so the
// local patch can never silently change the provider's contract, and a newer
// contract that carries a patched field makes the patch fail loudly (drop it
// from local-patch.json then).
func mergeAdditions(doc, patch map[string]any, at string) error {
	for _, k := range slices.Sorted(maps.Keys(patch)) {
		pv, ptr := patch[k], at+"/"+k
		dv, exists := doc[k]
		switch {
		case !exists && strings.HasSuffix(at, "/properties"):
			if pv == nil {
				return fmt.Errorf("%s: a patch cannot delete", ptr)
			}
			doc[k] = pv
		case !exists:
			return fmt.Errorf("%s is not in the published contract; the patch may only add properties to existing schemas", ptr)
		default:
			dm, dok := dv.(map[string]any)
			pm, pok := pv.(map[string]any)
			if !dok || !pok {
				return fmt.Errorf("%s is already in the published contract; the patch may only add what it lacks", ptr)
			}
			if strings.HasSuffix(at, "/properties") {
				return fmt.Errorf("property %s is already in the published contract; drop it from the local patch", ptr)
			}
			if err := mergeAdditions(dm, pm, ptr); err != nil {
				return err
			}
		}
	}
	return nil
}

// ValidationError is returned by the Validate* helpers; Problems holds one
// line per violation.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "contract violation: " + strings.Join(e.Problems, "; ")
}

// errNotInSpec marks a request whose path is not in the contract at all.
var errNotInSpec = errors.New("path is not in the contract")

// ValidateRequest validates method + path, path/query/header parameters
// (Idempotency-Key, If-Match, X-Dedalus-Org-Id, ...), security (API key or
// bearer) and the body. The body is buffered and restored, so req can still be
// sent afterwards. A path not in the contract is an error here (the Transport
// ignores such paths instead).
func (s *Spec) ValidateRequest(req *http.Request) error {
	body, err := bufferRequestBody(req)
	if err != nil {
		return err
	}
	return s.validateRequest(req, body)
}

// bufferRequestBody reads req's body (if any) and restores it, with GetBody,
// so it can be read again.
func bufferRequestBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if err != nil {
		return nil, fmt.Errorf("apispec: read request body: %w", err)
	}
	return body, nil
}

// validationCopy returns a clone of req carrying body: the validator replaces
// the body (and GetBody, ContentLength) of the request it is given, and must
// never do that to a request the caller or the transport still owns.
func validationCopy(req *http.Request, body []byte) *http.Request {
	c := req.Clone(req.Context())
	if body == nil {
		c.Body = http.NoBody
		c.GetBody = nil
	} else {
		c.Body = io.NopCloser(bytes.NewReader(body))
		c.GetBody = nil
		c.ContentLength = int64(len(body))
	}
	return c
}

func (s *Spec) validateRequest(req *http.Request, body []byte) error {
	// The Sync variant: no goroutines per request, cheaper under load.
	ok, errs := s.v.ValidateHttpRequestSync(validationCopy(req, body))
	if ok {
		return nil
	}
	for _, e := range errs {
		if e.IsPathMissingError() {
			return fmt.Errorf("apispec: %s %s: %w", req.Method, req.URL.Path, errNotInSpec)
		}
	}
	return &ValidationError{Problems: describe(errs)}
}

// ValidateResponse validates resp against the operation that req matches: the
// status must be declared (or covered by `default`), the Content-Type must be
// one declared for it, and the body must match its schema. The body is
// buffered and restored. A text/event-stream body is not read (it is a
// stream); the Transport validates each event as the caller reads it.
func (s *Spec) ValidateResponse(req *http.Request, resp *http.Response) error {
	var body []byte
	if !skipBody(req, resp) && resp.Body != nil && resp.Body != http.NoBody {
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("apispec: read response body: %w", err)
		}
		body = b
	}
	return s.validateResponse(req, resp, body)
}

// skipBody reports whether the response body must not be read for validation:
// an event stream (read incrementally by the caller), a protocol switch (the
// body is the upgraded connection) or a HEAD response.
func skipBody(req *http.Request, resp *http.Response) bool {
	return isEventStream(resp) || resp.StatusCode == http.StatusSwitchingProtocols || req.Method == http.MethodHead
}

func isEventStream(resp *http.Response) bool {
	ct := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Type")))
	return strings.HasPrefix(ct, "text/event-stream")
}

func (s *Spec) validateResponse(req *http.Request, resp *http.Response, body []byte) error {
	// Validate copies: the library reads and replaces the response body and
	// may attach state to the request.
	vreq := validationCopy(req, nil)
	vresp := new(http.Response)
	*vresp = *resp
	vresp.Request = vreq
	if body == nil {
		vresp.Body = http.NoBody
	} else {
		vresp.Body = io.NopCloser(bytes.NewReader(body))
	}
	var problems []string
	ok, errs := s.v.ValidateHttpResponse(vreq, vresp)
	if !ok {
		for _, e := range errs {
			if e.IsPathMissingError() {
				return fmt.Errorf("apispec: %s %s: %w", req.Method, req.URL.Path, errNotInSpec)
			}
		}
		problems = describe(errs)
	}
	problems = append(problems, s.checkEmptyBody(req, resp, body)...)
	if len(problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: problems}
}

// checkEmptyBody works around a libopenapi-validator v0.16 gap: a JSON
// response with an empty body (or the literal `null`) decodes to nil, and the
// library then skips schema validation entirely, so `200 application/json` with
// no body would pass for an operation that declares a required object. Every
// JSON body in this contract is an object schema, so an empty or null JSON body
// for a status that declares JSON content is reported here.
func (s *Spec) checkEmptyBody(req *http.Request, resp *http.Response, body []byte) []string {
	if skipBody(req, resp) {
		return nil
	}
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	if !strings.Contains(ct, "json") {
		return nil
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) != 0 && !bytes.Equal(trimmed, []byte("null")) {
		return nil
	}
	sch := s.responseSchema(req, resp, isJSONMediaType)
	if sch == nil || allowsNull(sch) {
		return nil
	}
	return []string{fmt.Sprintf("%d %s response body is empty or null, but the contract declares a schema for it", resp.StatusCode, ct)}
}

// ownsPath reports whether path is under one of the contract's top-level
// segments (e.g. /v1/), whether or not the contract has that exact path.
func (s *Spec) ownsPath(path string) bool {
	for _, p := range s.prefixes {
		if strings.HasPrefix(path, p) || path+"/" == p {
			return true
		}
	}
	return false
}

// route returns the path item and template that req's path matches, ignoring
// the method, or nil if the path is not in the contract.
func (s *Spec) route(req *http.Request) (*v3.PathItem, string) {
	pathItem, _, template := paths.FindPath(req, s.model, s.routing)
	return pathItem, template
}

// operation returns the operation req targets, or nil.
func (s *Spec) operation(req *http.Request) *v3.Operation {
	pathItem, _ := s.route(req)
	if pathItem == nil {
		return nil
	}
	return pathItem.GetOperations().GetOrZero(strings.ToLower(req.Method))
}

// responseMedia returns the media type the contract declares for resp's
// status (or default) whose name matches pred, or nil.
func (s *Spec) responseMedia(req *http.Request, resp *http.Response, pred func(mediaType string) bool) *v3.MediaType {
	op := s.operation(req)
	if op == nil || op.Responses == nil {
		return nil
	}
	r := op.Responses.Codes.GetOrZero(fmt.Sprint(resp.StatusCode))
	if r == nil {
		r = op.Responses.Default
	}
	if r == nil || r.Content == nil {
		return nil
	}
	for pair := r.Content.First(); pair != nil; pair = pair.Next() {
		if pred(strings.ToLower(pair.Key())) && pair.Value().Schema != nil {
			return pair.Value()
		}
	}
	return nil
}

// responseSchema is the schema of responseMedia, or nil.
func (s *Spec) responseSchema(req *http.Request, resp *http.Response, pred func(mediaType string) bool) *base.Schema {
	if mt := s.responseMedia(req, resp, pred); mt != nil {
		return mt.Schema.Schema()
	}
	return nil
}

func isJSONMediaType(mt string) bool { return strings.Contains(mt, "json") }

func allowsNull(s *base.Schema) bool {
	for _, t := range s.Type {
		if t == "null" {
			return true
		}
	}
	return false
}

// ValidateSchema validates a JSON document against components/schemas/<name>
// (used for the SSE payloads of the status stream, each a LifecycleResponse).
func (s *Spec) ValidateSchema(name string, jsonBody []byte) error {
	if s.model.Components == nil || s.model.Components.Schemas == nil {
		return fmt.Errorf("apispec: contract has no components/schemas")
	}
	proxy := s.model.Components.Schemas.GetOrZero(name)
	if proxy == nil {
		return fmt.Errorf("apispec: contract has no components/schemas/%s", name)
	}
	sch := proxy.Schema()
	if sch == nil {
		return fmt.Errorf("apispec: components/schemas/%s cannot be built: %v", name, proxy.GetBuildError())
	}
	return s.validateAgainst(sch, name, jsonBody)
}

// validateAgainst validates a JSON document against sch; name is used in
// messages.
func (s *Spec) validateAgainst(sch *base.Schema, name string, jsonBody []byte) error {
	// Workaround: the library's schema validator skips validation when the
	// payload is empty or decodes to nil (JSON null) and reports success.
	trimmed := bytes.TrimSpace(jsonBody)
	if len(trimmed) == 0 {
		return &ValidationError{Problems: []string{fmt.Sprintf("empty document is not a %s", name)}}
	}
	if bytes.Equal(trimmed, []byte("null")) && !allowsNull(sch) {
		return &ValidationError{Problems: []string{fmt.Sprintf("null is not a %s", name)}}
	}
	ok, errs := s.schemas.ValidateSchemaBytesWithVersion(sch, trimmed, s.version)
	if ok {
		return nil
	}
	if len(errs) == 0 {
		return &ValidationError{Problems: []string{fmt.Sprintf("document does not validate against %s", name)}}
	}
	return &ValidationError{Problems: describe(errs)}
}

// describe flattens library errors into one readable line each, without the
// rendered schema the library attaches as context.
func describe(errs []*verrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		if e == nil {
			continue
		}
		msg := e.Message
		if e.Reason != "" && e.Reason != e.Message {
			msg += ": " + e.Reason
		}
		if len(e.SchemaValidationErrors) > 0 {
			var details []string
			for _, f := range e.SchemaValidationErrors {
				if f == nil {
					continue
				}
				if f.FieldPath != "" {
					details = append(details, f.FieldPath+": "+f.Reason)
				} else {
					details = append(details, f.Reason)
				}
			}
			msg += " [" + strings.Join(details, "; ") + "]"
		}
		out = append(out, msg)
	}
	return out
}
