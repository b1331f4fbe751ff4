package emulator

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// MaxMachines: a create past the quota is refused (403 QUOTA_EXCEEDED,
// not retryable) and creates nothing; a destroyed machine frees its place.
func TestMachineQuota(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxMachines = 1 })
	m := e.running(nil)
	r := e.do("POST", "/v1/machines", map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 2})
	require.Equal(t, http.StatusForbidden, r.status, "body: %s", r.body)
	eb := r.errBody(t)
	assert.Equal(t, "QUOTA_EXCEEDED", eb.ErrorCode)
	assert.False(t, eb.Retryable)
	assert.Equal(t, "1", eb.Details["limit"])
	assert.Equal(t, 1, e.stats().LiveMachines, "nothing created")

	require.Equal(t, http.StatusAccepted, e.do("DELETE", "/v1/machines/"+m.MachineID, nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseDestroyed)
	e.create(nil)
}
