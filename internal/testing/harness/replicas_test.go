package harness

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A replica's environment is its first replica's with its own listeners:
// the old values are gone, not merely shadowed.
func TestWithEnvReplacesListeners(t *testing.T) {
	env := []string{"TEMPORAL_ADDRESS=t:1", "WEBHOOK_ADDR=a:1", "WEBHOOK_METRICS_ADDR=a:2", "WEBHOOK_ADDRX=keep"}
	got := withEnv(env, "WEBHOOK_ADDR=b:1", "WEBHOOK_METRICS_ADDR=b:2")
	assert.Equal(t, []string{"TEMPORAL_ADDRESS=t:1", "WEBHOOK_ADDRX=keep", "WEBHOOK_ADDR=b:1", "WEBHOOK_METRICS_ADDR=b:2"}, got)
	assert.Equal(t, "WEBHOOK_ADDR=a:1", env[1], "the first replica's environment is unchanged")
}

// Deliveries and router requests alternate between the replicas, each on
// its own turn; with one replica every call goes to it.
func TestNextAlternatesBetweenReplicas(t *testing.T) {
	var webhooks, routers atomic.Uint64
	var got []int
	for range 2 {
		got = append(got, next(&webhooks, 2), next(&routers, 2))
	}
	assert.Equal(t, []int{0, 0, 1, 1}, got)
	assert.Equal(t, 0, next(&webhooks, 1))
	assert.Equal(t, 0, next(&webhooks, 1))
}
