package emulator

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A DNS-rebinding request (a page on evil.example whose name now resolves to
// 127.0.0.1) reaches the emulator's port with Host: evil.example: it is
// answered 421 and creates, changes and reveals nothing, API key or not.
func TestRebindingHostIsRefused(t *testing.T) {
	e := start(t)
	send := func(method, path, host string, body []byte) (int, string) {
		req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Idempotency-Key", e.newKey())
		req.Header.Set("Content-Type", "application/json")
		res, err := e.http.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	machine := []byte(`{"vcpu":1,"memory_mib":512,"storage_gib":2}`)
	for _, host := range []string{"evil.example", "evil.example:8788", "127.0.0.1.nip.io"} {
		code, body := send("POST", "/v1/machines", host, machine)
		assert.Equal(t, http.StatusMisdirectedRequest, code, host)
		assert.Contains(t, body, "loopback")
		code, _ = send("PUT", "/_local/faults", host, []byte(`{"routes":{"*":{"error_503":1}}}`))
		assert.Equal(t, http.StatusMisdirectedRequest, code, host)
		code, _ = send("GET", "/_local/stats", host, nil)
		assert.Equal(t, http.StatusMisdirectedRequest, code, host)
	}
	st := e.s.Stats()
	assert.Zero(t, st.Creates, "no machine created: %+v", st)
	assert.Empty(t, e.s.Faults().Routes, "no fault installed")

	// The same requests addressed to the emulator's own address work.
	code, body := send("POST", "/v1/machines", "", machine) // Host from the URL: 127.0.0.1:port
	assert.Equal(t, http.StatusAccepted, code, body)
	code, _ = send("GET", "/_local/stats", "localhost", nil)
	assert.Equal(t, http.StatusOK, code)
}
