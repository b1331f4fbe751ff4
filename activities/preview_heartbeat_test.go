package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
)

// The preview workflow gives CreatePreview and DeletePreview a heartbeat
// timeout: they must heartbeat while Dedalus answers, or a slow answer
// times them out although the worker is alive.
func TestPreviewActivitiesHeartbeatWhileDedalusIsSlow(t *testing.T) {
	emu, direct := startEmulator(t, nil)
	m, err := direct.CreateMachine(context.Background(), dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 1}, "hb-create")
	require.NoError(t, err)
	gate, gatedURL := newBeatGate(t, emu.URL())
	c, err := dedalus.New(dedalus.Options{BaseURL: gatedURL, APIKey: emu.APIKey(), MinBackoff: 5 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	a := &activities.Machines{Client: c, HeartbeatEvery: 20 * time.Millisecond}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	env.SetOnActivityHeartbeatListener(gate.heartbeat)

	gate.arm()
	v, err := env.ExecuteActivity(a.CreatePreview, m.MachineID, int64(3000), "private")
	require.NoError(t, err)
	assert.Zero(t, gate.missed.Swap(0), "CreatePreview did not heartbeat while Dedalus was answering")
	var ref activities.PreviewRef
	require.NoError(t, v.Get(&ref))
	require.NotEmpty(t, ref.PreviewID)

	gate.arm()
	_, err = env.ExecuteActivity(a.DeletePreview, m.MachineID, ref.PreviewID)
	require.NoError(t, err)
	assert.Zero(t, gate.missed.Swap(0), "DeletePreview did not heartbeat while Dedalus was answering")
}
