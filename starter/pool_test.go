package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const poolsJSON = `[{"name":"ci","labels":["self-hosted","linux"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":2,"min_idle":1}]`

func intp(n int) *int { return &n }

func TestParsePoolCommands(t *testing.T) {
	cfg := Config{RunnerPools: poolsJSON}
	for _, tc := range []struct {
		verb string
		args []string
		want poolCommand
		err  string
	}{
		{"inventory", []string{"ci"}, poolCommand{verb: "inventory", name: "ci"}, ""},
		{"inventory", nil, poolCommand{}, "pool inventory: want a pool NAME"},
		{"inventory", []string{"-x"}, poolCommand{}, "want a pool NAME"},
		{"inventory", []string{"ci", "extra"}, poolCommand{}, `unexpected arguments ["extra"]`},
		{"resize", []string{"ci", "-min-idle", "0"}, poolCommand{verb: "resize", name: "ci", resize: runnerapi.ResizeRequest{MinIdle: intp(0)}}, ""},
		{"resize", []string{"ci", "-max", "8"}, poolCommand{verb: "resize", name: "ci", resize: runnerapi.ResizeRequest{MaxMachines: intp(8)}}, ""},
		{"resize", []string{"ci", "-min-idle", "2", "-max", "8"}, poolCommand{verb: "resize", name: "ci", resize: runnerapi.ResizeRequest{MinIdle: intp(2), MaxMachines: intp(8)}}, ""},
		{"resize", []string{"ci"}, poolCommand{}, "give -min-idle N, -max N or both"},
		{"resize", []string{"ci", "-min-idle", "-1"}, poolCommand{}, "-min-idle -1 is negative"},
		{"resize", []string{"ci", "-max", "0"}, poolCommand{}, "needs at least one machine"},
		{"resize", []string{"ci", "-min-idle", "5", "-max", "4"}, poolCommand{}, "-min-idle 5 exceeds -max 4"},
		{"resize", []string{"ci", "-min-idle", "many"}, poolCommand{}, "invalid value"},
		{"drain", []string{"ci"}, poolCommand{verb: "drain", name: "ci"}, ""},
		{"drain", []string{"ci", "-machine", "dm-1"}, poolCommand{verb: "drain", name: "ci", drain: runnerapi.DrainRequest{MachineID: "dm-1"}}, ""},
		{"drain", []string{"ci", "-max", "1"}, poolCommand{}, "flag provided but not defined: -max"},
		{"create", []string{"nope"}, poolCommand{}, `no pool "nope" in the configuration (pools: ci)`},
		{"explode", []string{"ci"}, poolCommand{}, "usage:"},
	} {
		got, err := parsePoolCommand(cfg, tc.verb, tc.args)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, "%s %v", tc.verb, tc.args)
			continue
		}
		require.NoError(t, err, "%s %v", tc.verb, tc.args)
		assert.Equal(t, tc.want, got, "%s %v", tc.verb, tc.args)
	}

	c, err := parsePoolCommand(cfg, "create", []string{"ci"})
	require.NoError(t, err)
	require.NotNil(t, c.pool)
	assert.Equal(t, 1, c.pool.MinIdle)
	assert.Equal(t, "jit", c.pool.Mode, "defaults applied")

	_, err = parsePoolCommand(Config{}, "create", []string{"ci"})
	assert.ErrorContains(t, err, "no pools are configured (set RUNNER_POOLS_FILE or RUNNER_POOLS)")
	_, err = parsePoolCommand(Config{RunnerPools: `[{"name":"ci"}]`}, "create", []string{"ci"})
	assert.ErrorContains(t, err, "RUNNER_POOLS: invalid runner pools configuration")
	file := filepath.Join(t.TempDir(), "pools.json")
	require.NoError(t, os.WriteFile(file, []byte(poolsJSON), 0o600))
	_, err = parsePoolCommand(Config{RunnerPoolsFile: file}, "create", []string{"ci"})
	require.NoError(t, err)
	_, err = parsePoolCommand(Config{RunnerPoolsFile: file, RunnerPools: poolsJSON}, "create", []string{"ci"})
	assert.ErrorContains(t, err, "not both")
}

// Usage and parse errors come before any Temporal connection.
func TestPoolUsageErrorsNeedNoTemporal(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
	for _, args := range [][]string{{"pool", "inventory"}, {"pool", "resize", "ci"}, {"pool", "bogus", "ci"}, {"pool"}} {
		err := run(context.Background(), Config{}, args, io.Discard)
		require.Error(t, err, "%v", args)
		assert.NotContains(t, err.Error(), "Temporal", "%v", args)
	}
}

// fakePools records what the pool commands ask of Temporal.
type fakePools struct {
	inv     runnerapi.Inventory
	signals []signalled
	starts  []started
}

type signalled struct {
	id, name string
	arg      any
}

type started struct {
	opts client.StartWorkflowOptions
	wf   any
	args []any
}

type value struct{ v any }

func (v value) HasValue() bool { return true }
func (v value) Get(ptr any) error {
	p, err := converter.GetDefaultDataConverter().ToPayload(v.v)
	if err != nil {
		return err
	}
	return converter.GetDefaultDataConverter().FromPayload(p, ptr)
}

type run1 struct{ client.WorkflowRun }

func (run1) GetRunID() string { return "run-1" }

func (f *fakePools) QueryWorkflow(_ context.Context, id, _, query string, _ ...any) (converter.EncodedValue, error) {
	if id != runnerapi.PoolWorkflowID(f.inv.Pool) || query != runnerapi.QueryInventory {
		return nil, io.ErrUnexpectedEOF
	}
	return value{f.inv}, nil
}

func (f *fakePools) SignalWorkflow(_ context.Context, id, _, name string, arg any) error {
	f.signals = append(f.signals, signalled{id, name, arg})
	return nil
}

func (f *fakePools) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	f.starts = append(f.starts, started{o, wf, args})
	return run1{}, nil
}

func TestPoolCommandsAgainstAFakeTemporal(t *testing.T) {
	since := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	f := &fakePools{inv: runnerapi.Inventory{
		Pool: "ci", MinIdle: 1, MaxMachines: 4,
		Machines: []runnerapi.PoolMachine{
			{MachineID: "dm-1", State: runnerapi.MachineIdle, Jobs: 3, Since: since, AwakeSeconds: 754.4},
			{MachineID: "dm-2", State: runnerapi.MachineBusy, JobID: 42, RunnerName: "drydock-ci-42-1", Jobs: 1, Since: since},
		},
		Queue:        []int64{43, 44},
		Counts:       map[runnerapi.MachineState]int{runnerapi.MachineIdle: 1, runnerapi.MachineBusy: 1, "hibernating": 2},
		AwakeSeconds: 3600.2, AwakeAsOf: since,
	}}
	cfg := Config{RunnerPools: poolsJSON}
	exec := func(verb string, args ...string) string {
		t.Helper()
		c, err := parsePoolCommand(cfg, verb, args)
		require.NoError(t, err)
		var out bytes.Buffer
		require.NoError(t, c.run(context.Background(), f, &out))
		return out.String()
	}

	out := exec("inventory", "ci")
	assert.Contains(t, out, "pool ci: min_idle 1, max_machines 4, 2 machine(s)")
	assert.Regexp(t, `dm-1\s+idle\s+-\s+-\s+3\s+12m34s\s+2026-11-22T09:00:00Z`, out)
	assert.Regexp(t, `dm-2\s+busy\s+42\s+drydock-ci-42-1\s+1\s+0s`, out)
	assert.Contains(t, out, "awake: 1h0m0s in all, deleted machines included (as of 2026-11-22T09:00:00Z)")
	assert.Contains(t, out, "counts: idle 1, busy 1, hibernating 2")
	assert.Contains(t, out, "queue: 2 job(s) waiting for a machine, oldest first: 43, 44")
	f.inv.Queue = nil
	assert.Contains(t, exec("inventory", "ci"), "queue: empty")

	assert.Contains(t, exec("resize", "ci", "-max", "6"), "resize requested for runner-pool:ci: max_machines 6")
	assert.Contains(t, exec("drain", "ci", "-machine", "dm-1"), "machine dm-1")
	assert.Contains(t, exec("drain", "ci"), "every machine")
	require.Len(t, f.signals, 3)
	assert.Equal(t, signalled{"runner-pool:ci", runnerapi.SignalResize, runnerapi.ResizeRequest{MaxMachines: intp(6)}}, f.signals[0])
	assert.Equal(t, signalled{"runner-pool:ci", runnerapi.SignalDrain, runnerapi.DrainRequest{MachineID: "dm-1"}}, f.signals[1])
	assert.Equal(t, signalled{"runner-pool:ci", runnerapi.SignalDrain, runnerapi.DrainRequest{}}, f.signals[2])

	assert.Contains(t, exec("create", "ci"), "runner-pool:ci is running (run run-1)")
	require.Len(t, f.starts, 1)
	s := f.starts[0]
	assert.Equal(t, "runner-pool:ci", s.opts.ID)
	assert.Equal(t, workflows.TaskQueue, s.opts.TaskQueue)
	assert.Equal(t, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, s.opts.WorkflowIDConflictPolicy)
	pool, _ := s.opts.TypedSearchAttributes.GetKeyword(workflows.SearchAttrPool)
	assert.Equal(t, "ci", pool)
	assert.Equal(t, runnerapi.RunnerPoolName, s.wf)
	require.Len(t, s.args, 1)
	in := s.args[0].(runnerapi.PoolInput)
	assert.Equal(t, "ci", in.Pool.Name)
	assert.Equal(t, []string{"self-hosted", "linux"}, in.Pool.Labels)
	assert.Nil(t, in.Carry)
}

func TestParseSendJob(t *testing.T) {
	cfg := Config{WebhookURL: "http://127.0.0.1:8080/webhooks/github"}
	d, err := parseSendJob(cfg, []string{"-labels", "self-hosted, linux", "-job-id", "42"})
	require.NoError(t, err)
	assert.Equal(t, "queued", d.action)
	assert.Equal(t, []string{"self-hosted", "linux"}, d.job.Labels)
	assert.EqualValues(t, 42, d.job.ID)
	assert.EqualValues(t, 1, d.job.RunID)
	assert.Equal(t, "drydock-demo", d.job.Owner)
	assert.Equal(t, cfg.WebhookURL, d.url)
	assert.Len(t, d.delivery, 32, "a random delivery ID")

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-job-id", "42"}, "-labels is required"},
		{[]string{"-labels", " , ", "-job-id", "42"}, "-labels is required"},
		{[]string{"-labels", "self-hosted"}, "-job-id N is required"},
		{[]string{"-labels", "self-hosted", "-job-id", "-3"}, "-job-id N is required"},
		{[]string{"-labels", "self-hosted", "-job-id", "1", "-run-id", "0"}, "-run-id must be positive"},
		{[]string{"-labels", "self-hosted", "-job-id", "1", "-action", "requested"}, `-action "requested"`},
		{[]string{"-labels", "self-hosted", "-job-id", "1", "-owner", ""}, "-owner and -repo"},
		{[]string{"-labels", "self-hosted", "-job-id", "1", "stray"}, "unexpected arguments"},
		{[]string{"-labels", "self-hosted", "-job-id", "x"}, "invalid value"},
	} {
		_, err := parseSendJob(cfg, tc.args)
		assert.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}

func TestSendJobPostsASignedDelivery(t *testing.T) {
	var got []intake.Event
	h, err := intake.New(intake.Options{Secret: "s3cret", Allowed: intake.AllowEveryone(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Router: intake.RouterFunc(func(_ context.Context, ev intake.Event) (intake.Result, error) {
			got = append(got, ev)
			return intake.Result{Status: http.StatusAccepted, Reason: "runner requested", WorkflowID: "runner-job:42"}, nil
		})})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	cfg := Config{WebhookURL: srv.URL + "/webhooks/github", WebhookSecret: "s3cret"}

	var out bytes.Buffer
	require.NoError(t, sendJob(context.Background(), cfg, []string{"-labels", "self-hosted,linux", "-job-id", "42", "-action", "completed",
		"-runner", "drydock-ci-42-1", "-org", "drydock-demo", "-delivery", "d-1"}, &out))
	assert.Contains(t, out.String(), "202 Accepted workflow_job completed job 42 (delivery d-1)")
	require.Len(t, got, 1)
	assert.Equal(t, "workflow_job", got[0].Name)
	assert.Equal(t, "d-1", got[0].DeliveryID)
	ev, err := intake.DecodeWorkflowJob(got[0].Payload, "d-1")
	require.NoError(t, err)
	assert.Equal(t, "completed", ev.Action)
	assert.EqualValues(t, 42, ev.JobID)
	assert.Equal(t, []string{"self-hosted", "linux"}, ev.Labels)
	assert.Equal(t, "drydock-ci-42-1", ev.RunnerName)
	assert.Equal(t, "success", ev.Conclusion)
	assert.Equal(t, "drydock-demo", ev.Org)

	// A refusal is an error.
	cfg.WebhookSecret = "wrong"
	err = sendJob(context.Background(), cfg, []string{"-labels", "self-hosted", "-job-id", "1"}, io.Discard)
	assert.ErrorContains(t, err, "401")
}
