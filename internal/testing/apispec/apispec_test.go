package apispec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus/openapi"
)

// mustSpec loads the vendored contract (embedded, so always present).
func mustSpec(t *testing.T) *Spec {
	t.Helper()
	s, err := Contract()
	require.NoError(t, err)
	return s
}

const (
	validCreate = `{"vcpu":4,"memory_mib":8192,"storage_gib":40}`
	ts          = "2025-01-02T03:04:05Z"
)

func lifecycle(extra map[string]any, drop ...string) []byte {
	m := map[string]any{
		"machine_id":    "dm-123",
		"vcpu":          4,
		"memory_mib":    8192,
		"storage_gib":   40,
		"desired_state": "running",
		"status": map[string]any{
			"phase": "running", "reason": "ready", "retryable": false, "revision": "7",
			"last_transition_at": ts, "last_progress_at": ts,
		},
	}
	for k, v := range extra {
		m[k] = v
	}
	for _, k := range drop {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// request builds an authenticated request to the contract's server.
func request(method, path, body string, hdr ...string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, "http://dcs.example"+path, rd)
	r.Header.Set("Authorization", "Bearer dsk-test")
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return r
}

func response(status int, contentType string, body []byte) *http.Response {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body))}
}

func TestContractIsBuiltOnce(t *testing.T) {
	a, err := Contract()
	require.NoError(t, err)
	b, err := Contract()
	require.NoError(t, err)
	assert.Same(t, a, b, "Contract must be built once per process")
}

func TestVendoredContractIsThePublishedDocumentUnchanged(t *testing.T) {
	sum := sha256.Sum256(openapi.Published)
	assert.Equal(t, openapi.PublishedSHA256, hex.EncodeToString(sum[:]), "machines-openapi.json differs from the published copy whose checksum dedalus/openapi/README.md records")
	note, err := os.ReadFile("../../../dedalus/openapi/README.md")
	require.NoError(t, err)
	assert.Contains(t, string(note), openapi.PublishedSHA256, "the origin note records the checksum of the vendored file")
}

// TestLocalPatchOnlyAddsTheMarkedAutosleepFields proves that the validated
// contract is the published document plus exactly the four marked autosleep
// properties: nothing else added, changed or removed.
func TestLocalPatchOnlyAddsTheMarkedAutosleepFields(t *testing.T) {
	var published, patched map[string]any
	require.NoError(t, json.Unmarshal(openapi.Published, &published))
	require.NoError(t, json.Unmarshal(openapi.Published, &patched))
	var patch map[string]any
	require.NoError(t, json.Unmarshal(openapi.LocalPatch, &patch))
	require.NoError(t, mergeAdditions(patched, patch, ""))

	var added []string
	var diff func(at string, a, b any)
	diff = func(at string, a, b any) {
		am, aok := a.(map[string]any)
		bm, bok := b.(map[string]any)
		if !aok || !bok {
			assert.Equal(t, a, b, "the patch changed %s", at)
			return
		}
		for k := range am {
			_, ok := bm[k]
			assert.True(t, ok, "the patch removed %s/%s", at, k)
		}
		for k, bv := range bm {
			av, ok := am[k]
			if !ok {
				added = append(added, at+"/"+k)
				prop, _ := bv.(map[string]any)
				assert.NotEmpty(t, prop["x-drydock-local-patch"], "%s/%s is not marked as a local patch", at, k)
				continue
			}
			diff(at+"/"+k, av, bv)
		}
	}
	diff("", published, patched)
	assert.ElementsMatch(t, []string{
		"/components/schemas/CreateMachineRequest/properties/autosleep",
		"/components/schemas/UpdateMachineRequest/properties/autosleep",
		"/components/schemas/LifecycleResponse/properties/autosleep_seconds",
		"/components/schemas/MachineListItem/properties/autosleep_seconds",
	}, added)
}

func TestLocalPatchMayOnlyAdd(t *testing.T) {
	published := []byte(`{"components":{"schemas":{"A":{"type":"object","additionalProperties":false,"properties":{"x":{"type":"string"}}}}}}`)
	for _, tc := range []struct{ name, patch, want string }{
		{"replaces a published property", `{"components":{"schemas":{"A":{"properties":{"x":{"type":"integer"}}}}}}`, "property /components/schemas/A/properties/x is already in the published contract"},
		{"loosens a schema", `{"components":{"schemas":{"A":{"additionalProperties":true}}}}`, "/components/schemas/A/additionalProperties is already in the published contract"},
		{"adds a constraint", `{"components":{"schemas":{"A":{"minProperties":1}}}}`, "/components/schemas/A/minProperties is not in the published contract"},
		{"invents a schema", `{"components":{"schemas":{"B":{"properties":{"y":{"type":"string"}}}}}}`, "/components/schemas/B is not in the published contract"},
		{"deletes a property", `{"components":{"schemas":{"A":{"properties":{"z":null}}}}}`, "cannot delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc, patch map[string]any
			require.NoError(t, json.Unmarshal(published, &doc))
			require.NoError(t, json.Unmarshal([]byte(tc.patch), &patch))
			assert.ErrorContains(t, mergeAdditions(doc, patch, ""), tc.want)
		})
	}
}

func TestParseRejectsContractWithoutPatchedSchemas(t *testing.T) {
	_, err := Parse([]byte(`{"openapi":"3.1.0","info":{"title":"x","version":"1"},"paths":{},"components":{"schemas":{}}}`), openapi.LocalPatch)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CreateMachineRequest")
	_, err = Parse([]byte(`not json`), nil)
	assert.ErrorContains(t, err, "parse contract")
}

func TestValidateRequest(t *testing.T) {
	s := mustSpec(t)
	cases := []struct {
		name    string
		req     *http.Request
		wantErr string // "" = must pass
	}{
		{"valid create", request("POST", "/v1/machines", validCreate, "Idempotency-Key", "k1"), ""},
		{"create with autosleep", request("POST", "/v1/machines", `{"vcpu":2,"memory_mib":4096,"storage_gib":20,"autosleep":"5m"}`, "Idempotency-Key", "k1"), ""},
		{"create with x-api-key auth", request("POST", "/v1/machines", validCreate, "Idempotency-Key", "k1", "Authorization", "", "x-api-key", "dsk-test"), ""},
		{"create unknown field", request("POST", "/v1/machines", `{"vcpu":4,"memory_mib":8192,"storage_gib":40,"gpu":1}`, "Idempotency-Key", "k1"), "gpu"},
		{"create autosleep_seconds is not a request field", request("POST", "/v1/machines", `{"vcpu":4,"memory_mib":8192,"storage_gib":40,"autosleep_seconds":60}`, "Idempotency-Key", "k1"), "autosleep_seconds"},
		{"create autosleep must be a string", request("POST", "/v1/machines", `{"vcpu":4,"memory_mib":8192,"storage_gib":40,"autosleep":300}`, "Idempotency-Key", "k1"), "autosleep"},
		{"create missing required field", request("POST", "/v1/machines", `{"vcpu":4,"memory_mib":8192}`, "Idempotency-Key", "k1"), "storage_gib"},
		{"create missing Idempotency-Key", request("POST", "/v1/machines", validCreate), "Idempotency-Key"},
		{"create without auth", request("POST", "/v1/machines", validCreate, "Idempotency-Key", "k1", "Authorization", ""), "Authorization"},
		{"create without body", request("POST", "/v1/machines", "", "Idempotency-Key", "k1", "Content-Type", "application/json"), "empty"},
		{"patch autosleep", request("PATCH", "/v1/machines/dm-1", `{"autosleep":"never"}`, "Idempotency-Key", "k", "If-Match", "7"), ""},
		{"patch unknown field", request("PATCH", "/v1/machines/dm-1", `{"autosleep":"1h","name":"x"}`, "Idempotency-Key", "k", "If-Match", "7"), "name"},
		{"wake", request("POST", "/v1/machines/dm-1/wake", "", "Idempotency-Key", "k", "If-Match", "7"), ""},
		{"wake without If-Match", request("POST", "/v1/machines/dm-1/wake", "", "Idempotency-Key", "k"), "If-Match"},
		{"sleep with a body", request("POST", "/v1/machines/dm-1/sleep", `{}`, "Idempotency-Key", "k", "If-Match", "7"), "not declared"},
		{"delete without Idempotency-Key", request("DELETE", "/v1/machines/dm-1", "", "If-Match", "7"), "Idempotency-Key"},
		{"list with paging", request("GET", "/v1/machines?limit=10&cursor=abc", ""), ""},
		{"list with bad limit", request("GET", "/v1/machines?limit=ten", ""), "limit"},
		{"org id uuid", request("GET", "/v1/machines/dm-1/status/stream", "", "X-Dedalus-Org-Id", "3f2c7b1e-9d4a-4c8e-8f1a-2b3c4d5e6f70"), ""},
		{"org id not a uuid", request("GET", "/v1/machines/dm-1/status/stream", "", "X-Dedalus-Org-Id", "acme"), "uuid"},
		{"undeclared method", request("PUT", "/v1/machines/dm-1", validCreate), "PUT"},
		{"unknown /v1 path", request("GET", "/v1/machines/dm-1/bogus", ""), "not in the contract"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before []byte
			if c.req.Body != nil {
				before, _ = io.ReadAll(c.req.Body)
				c.req.Body = io.NopCloser(bytes.NewReader(before))
			}
			err := s.ValidateRequest(c.req)
			if c.wantErr == "" {
				assert.NoError(t, err)
			} else if assert.Error(t, err) {
				assert.Contains(t, err.Error(), c.wantErr)
			}
			// The body is still readable, unchanged.
			if c.req.Body != nil {
				after, err := io.ReadAll(c.req.Body)
				require.NoError(t, err)
				assert.Equal(t, string(before), string(after))
			}
		})
	}
}

func TestValidateResponse(t *testing.T) {
	s := mustSpec(t)
	get := func() *http.Request { return request("GET", "/v1/machines/dm-123", "") }
	wake := func() *http.Request {
		return request("POST", "/v1/machines/dm-123/wake", "", "Idempotency-Key", "k", "If-Match", "7")
	}
	listBody := func(item map[string]any) []byte {
		it := map[string]any{}
		require.NoError(t, json.Unmarshal(lifecycle(nil), &it))
		it["created_at"] = ts
		for k, v := range item {
			it[k] = v
		}
		b, _ := json.Marshal(map[string]any{"items": []any{it}})
		return b
	}
	cases := []struct {
		name    string
		req     *http.Request
		resp    *http.Response
		wantErr string
	}{
		{"lifecycle 200", get(), response(200, "application/json", lifecycle(nil)), ""},
		{"lifecycle with autosleep_seconds", get(), response(200, "application/json", lifecycle(map[string]any{"autosleep_seconds": 300})), ""},
		{"lifecycle autosleep_seconds must be integer", get(), response(200, "application/json", lifecycle(map[string]any{"autosleep_seconds": "300"})), "autosleep_seconds"},
		{"lifecycle unknown field", get(), response(200, "application/json", lifecycle(map[string]any{"autosleep": "5m"})), "autosleep"},
		{"lifecycle missing status", get(), response(200, "application/json", lifecycle(nil, "status")), "status"},
		{"lifecycle bad enum", get(), response(200, "application/json", lifecycle(map[string]any{"desired_state": "awake"})), "desired_state"},
		{"lifecycle bad timestamp", get(), response(200, "application/json", bytes.ReplaceAll(lifecycle(nil), []byte(ts), []byte("yesterday"))), "date-time"},
		{"empty JSON body", get(), response(200, "application/json", nil), "empty or null"},
		{"null JSON body", get(), response(200, "application/json", []byte("null")), "empty or null"},
		{"wrong content type", get(), response(200, "text/plain", lifecycle(nil)), "text/plain"},
		{"202 accepted wake", wake(), response(202, "application/json", lifecycle(nil)), ""},
		{"undeclared status on stream", request("GET", "/v1/machines/dm-123/status/stream", ""), response(404, "application/problem+json", []byte(`{"title":"Not Found","status":404}`)), "404"},
		{"problem+json 404 via default", get(), response(404, "application/problem+json", []byte(`{"type":"about:blank","title":"Not Found","status":404,"detail":"machine dm-123 not found","errors":null}`)), ""},
		{"problem+json with unknown field", get(), response(404, "application/problem+json", []byte(`{"title":"Not Found","status":404,"code":"x"}`)), "code"},
		{"404 as plain json", get(), response(404, "application/json", []byte(`{"title":"Not Found","status":404}`)), "application/json"},
		{"409 envelope", wake(), response(409, "application/json", []byte(`{"error_code":"REVISION_MISMATCH","message":"stale","retryable":true}`)), ""},
		{"429 envelope", wake(), response(429, "application/json", []byte(`{"error_code":"RATE_LIMITED","message":"slow down","retryable":true,"retry_after_ms":250}`)), ""},
		{"409 envelope without retryable", wake(), response(409, "application/json", []byte(`{"error_code":"REVISION_MISMATCH","message":"stale"}`)), "retryable"},
		{"401 envelope as problem+json", get(), response(401, "application/problem+json", []byte(`{"title":"Unauthorized","status":401}`)), "problem+json"},
		{"list with autosleep_seconds", request("GET", "/v1/machines", ""), response(200, "application/json", listBody(map[string]any{"autosleep_seconds": 0})), ""},
		{"list item unknown field", request("GET", "/v1/machines", ""), response(200, "application/json", listBody(map[string]any{"autosleep": "5m"})), "autosleep"},
		{"event stream body is not read", request("GET", "/v1/machines/dm-123/status/stream", ""), response(200, "text/event-stream", []byte("data: not json\n\n")), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkValidateResponse(t, s, c.req, c.resp, c.wantErr) })
	}
}

// checkValidateResponse validates resp: an error containing wantErr ("":
// none), and the body restored for the caller.
func checkValidateResponse(t *testing.T, s *Spec, req *http.Request, resp *http.Response, wantErr string) {
	t.Helper()
	var before []byte
	before, _ = io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(before))
	err := s.ValidateResponse(req, resp)
	if wantErr == "" {
		assert.NoError(t, err)
	} else if assert.Error(t, err) {
		assert.Contains(t, err.Error(), wantErr)
	}
	after, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "body must be restored")
}

func TestValidateSchema(t *testing.T) {
	s := mustSpec(t)
	assert.NoError(t, s.ValidateSchema("LifecycleResponse", lifecycle(nil)))
	assert.NoError(t, s.ValidateSchema("LifecycleResponse", lifecycle(map[string]any{"autosleep_seconds": 0})))
	for name, doc := range map[string][]byte{
		"missing status": lifecycle(nil, "status"),
		"extra field":    lifecycle(map[string]any{"extra": true}),
		"null":           []byte("null"),
		"empty":          nil,
		"not json":       []byte("{"),
		"array":          []byte("[]"),
	} {
		assert.Error(t, s.ValidateSchema("LifecycleResponse", doc), name)
	}
	assert.NoError(t, s.ValidateSchema("ErrorModel", []byte(`{"errors":null}`)), "type: [array, null] admits null")
	assert.NoError(t, s.ValidateSchema("ErrorModel", []byte(`{"errors":[{"message":"m","location":"body.x"}]}`)))
	err := s.ValidateSchema("NoSuchSchema", []byte(`{}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NoSuchSchema")
}
