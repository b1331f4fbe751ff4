package emulator

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Close kills every machine's processes in rounds of one /proc scan for
// all machines: scanning once per machine made a server with thousands of
// machines (the scale benchmark's 5,000) take more than ten minutes to shut
// down. Not parallel: the scan counter is the package's.
func TestCloseScansProcOnceARoundForAllMachines(t *testing.T) {
	e := start(t)
	const n = 10
	var ids []string
	for range n {
		id := e.running(nil).MachineID
		e.exec(id, map[string]any{"command": []string{"sh", "-c", "nohup sleep 300 >/dev/null 2>&1 & echo started"}})
		ids = append(ids, id)
	}
	for _, id := range ids {
		eventually(t, 10*time.Second, "the machine's sleep runs", func() bool { return len(procsOf(id)) > 0 })
	}
	before := procScans.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, e.s.Close(ctx))
	scans := procScans.Load() - before
	assert.Less(t, scans, int64(n), "scans of /proc while closing %d machines", n)
	for _, id := range ids {
		assert.Empty(t, procsOf(id), "machine %s has processes left", id)
	}
}
