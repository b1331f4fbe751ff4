package activities_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
)

// LoadSpec heartbeats while it reads the default spec: here a FIFO whose
// writer only writes once the activity has heartbeat (or after 5s, a miss).
func TestLoadSpecHeartbeatsWhileReading(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "preview.yml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	beat := make(chan struct{}, 1)
	missed := make(chan bool, 1)
	go func() {
		select {
		case <-beat:
			missed <- false
		case <-time.After(5 * time.Second):
			missed <- true
		}
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		_, _ = f.WriteString("start: {run: make serve}\n")
		_ = f.Close()
	}()

	p := &activities.Previews{DefaultSpecPath: fifo, HeartbeatEvery: 20 * time.Millisecond}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(p)
	env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) {
		select {
		case beat <- struct{}{}:
		default:
		}
	})
	_, err := env.ExecuteActivity(p.LoadSpec, activities.LoadSpecInput{})
	require.NoError(t, err)
	assert.False(t, <-missed, "LoadSpec did not heartbeat while it read the spec")
}
