package emulator

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

func TestStatusStream(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = 100 * time.Millisecond })
	m := e.create(nil)
	evs, comments := readStream(t, e, m.MachineID, "")
	require.Len(t, evs, 3, "events: %+v", evs)
	for i, want := range []dedalus.MachinePhase{dedalus.PhaseAccepted, dedalus.PhaseStarting, dedalus.PhaseRunning} {
		assert.Equal(t, want, evs[i].m.Status.Phase)
		assert.Equal(t, evs[i].m.Status.Revision, evs[i].id)
		assert.Equal(t, "status", evs[i].event)
	}
	assert.Equal(t, 0, comments)

	// Converged: one event, then the stream closes.
	evs, _ = readStream(t, e, m.MachineID, "")
	require.Len(t, evs, 1)
	assert.Equal(t, "3", evs[0].id)

	// Resuming at the current revision of a converged machine: no event, closed.
	evs, _ = readStream(t, e, m.MachineID, "3")
	assert.Len(t, evs, 0)

	// Resuming mid-way replays the missed transitions.
	evs, _ = readStream(t, e, m.MachineID, "1")
	require.Len(t, evs, 2)
	assert.Equal(t, "2", evs[0].id)

	// A sleep in progress: stopping then sleeping.
	r := e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil)
	require.Equal(t, http.StatusAccepted, r.status)
	evs, _ = readStream(t, e, m.MachineID, "")
	require.NotEmpty(t, evs)
	assert.Equal(t, dedalus.PhaseSleeping, evs[len(evs)-1].m.Status.Phase)
}

type sse struct {
	id, event string
	m         dedalus.Machine
}

func readStream(t *testing.T, e *env, id, lastEventID string) ([]sse, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/machines/"+id+"/status/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	b, err := readAll(res)
	require.NoError(t, err, "the stream must close by itself")
	var out []sse
	comments := 0
	for _, block := range strings.Split(string(b), "\n\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		var ev sse
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				comments++
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				(&resp{body: []byte(strings.TrimPrefix(line, "data: "))}).json(t, &ev.m)
			}
		}
		if ev.id != "" {
			out = append(out, ev)
		}
	}
	return out, comments
}

func readAll(res *http.Response) ([]byte, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			if err.Error() == "EOF" {
				return []byte(b.String()), nil
			}
			return []byte(b.String()), err
		}
	}
}

func TestStatusStreamKeepalive(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = 250 * time.Millisecond; c.keepalive = 30 * time.Millisecond })
	m := e.create(nil)
	evs, comments := readStream(t, e, m.MachineID, "")
	assert.Len(t, evs, 3)
	assert.GreaterOrEqual(t, comments, 2)
}
