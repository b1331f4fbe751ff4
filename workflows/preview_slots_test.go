package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// coord is a PreviewSlots run under test, with what its activities and
// signals did.
type coord struct {
	env *testsuite.TestWorkflowEnvironment

	mu      sync.Mutex
	caps    slotsapi.Caps
	seed    []slotsapi.Holder
	gone    map[string]bool // workflows CheckSlotHolders reports gone
	checks  int
	answers map[string]slotsapi.Answer
	errs    map[string]error
	grants  []string // workflow IDs told they hold a slot, in order
}

func newCoord(t *testing.T, caps slotsapi.Caps) *coord {
	c := &coord{caps: caps, gone: map[string]bool{}, answers: map[string]slotsapi.Answer{}, errs: map[string]error{}}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	c.env = env
	env.RegisterWorkflowWithOptions(PreviewSlots, workflow.RegisterOptions{Name: slotsapi.WorkflowName})
	env.RegisterActivity(&activities.Previews{})
	env.RegisterActivity(&activities.PreviewSlots{})
	env.OnActivity(previewActs.PreviewCaps, mock.Anything).Return(func(context.Context) (activities.PreviewCaps, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return activities.PreviewCaps{Slots: c.caps}, nil
	})
	env.OnActivity(slotActs.ListPreviewsWithMachines, mock.Anything).Return(func(context.Context) ([]slotsapi.Holder, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.seed, nil
	})
	env.OnActivity(slotActs.CheckSlotHolders, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in slotsapi.CheckInput) (slotsapi.CheckResult, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.checks++
			var out slotsapi.CheckResult
			for _, h := range in.Holders {
				if c.gone[h.WorkflowID] {
					out.Gone = append(out.Gone, h.WorkflowID)
				}
			}
			for _, id := range in.Waiters {
				if c.gone[id] {
					out.Gone = append(out.Gone, id)
				}
			}
			return out, nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", slotsapi.SignalGranted, mock.Anything).Return(
		func(_, id, _, _ string, _ any) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.grants = append(c.grants, id)
			return nil
		})
	return c
}

func (c *coord) acquire(owner, repo string, n int) {
	req := slotReq(owner, repo, n)
	c.env.UpdateWorkflow(slotsapi.UpdateAcquire, "u-"+req.WorkflowID+time.Duration(len(c.answers)).String(), &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(err error) { c.mu.Lock(); c.errs[req.WorkflowID] = err; c.mu.Unlock() },
		OnComplete: func(v any, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if err != nil {
				c.errs[req.WorkflowID] = err
				return
			}
			c.answers[req.WorkflowID] = v.(slotsapi.Answer)
		},
	}, req)
}

func (c *coord) answer(owner, repo string, n int) slotsapi.Answer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answers[PreviewWorkflowID(owner, repo, n)]
}

func (c *coord) granted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.grants...)
}

func (c *coord) state(t *testing.T) slotsapi.State {
	t.Helper()
	v, err := c.env.QueryWorkflow(slotsapi.QueryState)
	require.NoError(t, err)
	var st slotsapi.State
	require.NoError(t, v.Get(&st))
	return st
}

func (c *coord) run() { c.env.ExecuteWorkflow(slotsapi.WorkflowName, slotsapi.Input{}) }

// Past the global cap a preview is queued, told where it stands, and
// granted when a holder's close releases a slot; the coordinator
// completes once it counts nothing.
func TestSlotsCoordinatorQueuesThenGrantsOnRelease(t *testing.T) {
	c := newCoord(t, slotsapi.Caps{MaxOpen: 2})
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 1) }, 0*time.Second)
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 2) }, 1*time.Second)
	c.env.RegisterDelayedCallback(func() { c.acquire("acme", "web", 3) }, 2*time.Second)
	c.env.RegisterDelayedCallback(func() {
		assert.True(t, c.answer("octo", "app", 1).Granted)
		assert.True(t, c.answer("octo", "app", 2).Granted)
		q := c.answer("acme", "web", 3)
		assert.False(t, q.Granted)
		assert.Equal(t, 1, q.Position)
		assert.Equal(t, "queued: 2 previews open, limit 2", q.Reason)
		assert.Empty(t, c.granted())
		c.env.SignalWorkflow(slotsapi.SignalRelease, PreviewWorkflowID("octo", "app", 1))
	}, 5*time.Second)
	c.env.RegisterDelayedCallback(func() {
		assert.Equal(t, []string{PreviewWorkflowID("acme", "web", 3)}, c.granted(), "the queued preview is told at once")
		st := c.state(t)
		assert.Len(t, st.Holders, 2)
		assert.Empty(t, st.Queue)
		c.env.SignalWorkflow(slotsapi.SignalRelease, PreviewWorkflowID("octo", "app", 2))
		c.env.SignalWorkflow(slotsapi.SignalRelease, PreviewWorkflowID("acme", "web", 3))
	}, 10*time.Second)
	c.run()
	require.True(t, c.env.IsWorkflowCompleted())
	require.NoError(t, c.env.GetWorkflowError(), "it completes when nothing is held")
}

func TestSlotsCoordinatorPerRepoCap(t *testing.T) {
	c := newCoord(t, slotsapi.Caps{MaxOpenPerRepo: 1})
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 1) }, 0*time.Second)
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 2) }, 1*time.Second)
	c.env.RegisterDelayedCallback(func() { c.acquire("acme", "web", 1) }, 2*time.Second)
	c.env.RegisterDelayedCallback(func() {
		assert.True(t, c.answer("octo", "app", 1).Granted)
		q := c.answer("octo", "app", 2)
		assert.False(t, q.Granted)
		assert.Equal(t, "queued: 1 previews open in octo/app, limit 1 per repository", q.Reason)
		assert.True(t, c.answer("acme", "web", 1).Granted, "another repository is not held back")
		c.env.SignalWorkflow(slotsapi.SignalRelease, PreviewWorkflowID("octo", "app", 1))
	}, 5*time.Second)
	c.env.RegisterDelayedCallback(func() {
		assert.Equal(t, []string{PreviewWorkflowID("octo", "app", 2)}, c.granted())
		c.env.CancelWorkflow()
	}, 10*time.Second)
	c.run()
}

// A holder whose workflow was terminated never releases: the liveness
// check reclaims its slot and the queued preview gets it.
func TestSlotsTerminatedHolderReclaimed(t *testing.T) {
	c := newCoord(t, slotsapi.Caps{MaxOpen: 1})
	c.queueSecondThen(t, func() {
		c.gone[PreviewWorkflowID("octo", "app", 1)] = true // terminated by an operator
	})
	c.env.RegisterDelayedCallback(func() {
		assert.Equal(t, []string{PreviewWorkflowID("octo", "app", 2)}, c.granted(), "reclaimed within a check interval")
		st := c.state(t)
		require.Len(t, st.Holders, 1)
		assert.Equal(t, PreviewWorkflowID("octo", "app", 2), st.Holders[0].WorkflowID)
		c.env.CancelWorkflow()
	}, slotCheckEvery+30*time.Second)
	c.run()
}

// The caps are read before every decision: workers restarted with a
// higher cap let waiters in at the next check, without a release.
func TestSlotsRaisedCapLetsWaitersIn(t *testing.T) {
	c := newCoord(t, slotsapi.Caps{MaxOpen: 1})
	c.queueSecondThen(t, func() {
		c.caps = slotsapi.Caps{MaxOpen: 5}
	})
	c.runUntilGrantedAfterCheck(t, PreviewWorkflowID("octo", "app", 2))
}

// Previews that had a machine before the coordinator ran count against
// the cap; a seeded one whose workflow ended is reclaimed like any other.
func TestSlotsExistingPreviewsCounted(t *testing.T) {
	c := newCoord(t, slotsapi.Caps{MaxOpen: 1})
	old := PreviewWorkflowID("octo", "old", 9)
	c.seed = []slotsapi.Holder{{WorkflowID: old, Repo: "octo/old", Number: 9}}
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 1) }, 0*time.Second)
	c.env.RegisterDelayedCallback(func() {
		q := c.answer("octo", "app", 1)
		assert.False(t, q.Granted)
		assert.Equal(t, "queued: 1 previews open, limit 1", q.Reason)
		c.mu.Lock()
		c.gone[old] = true
		c.mu.Unlock()
	}, 5*time.Second)
	c.runUntilGrantedAfterCheck(t, PreviewWorkflowID("octo", "app", 1))
}

func TestSlotsInvalidRequestRejected(t *testing.T) {
	c := newCoord(t, slotsapi.Caps{MaxOpen: 1})
	c.env.RegisterDelayedCallback(func() {
		c.env.UpdateWorkflow(slotsapi.UpdateAcquire, "bad", &testsuite.TestUpdateCallback{
			OnAccept:   func() { t.Error("an invalid request was accepted") },
			OnReject:   func(err error) { c.mu.Lock(); c.errs["bad"] = err; c.mu.Unlock() },
			OnComplete: func(any, error) {},
		}, slotsapi.Request{Owner: "octo"})
	}, 0)
	c.env.RegisterDelayedCallback(func() {
		c.mu.Lock()
		assert.ErrorContains(t, c.errs["bad"], "needs the preview's workflow ID")
		c.mu.Unlock()
		assert.Empty(t, c.state(t).Queue)
		c.env.CancelWorkflow()
	}, time.Second)
	c.run()
}

// The coordinator continues as new with its holders and queue, and the
// next run decides from them without counting from visibility again.
func TestSlotsContinueAsNewCarriesState(t *testing.T) {
	c := newCoord(t, slotsapi.Caps{MaxOpen: 1})
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 1) }, 0)
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 2) }, time.Second)
	c.env.RegisterDelayedCallback(func() {
		c.env.SetContinueAsNewSuggested(true)
		c.env.SignalWorkflow(slotsapi.SignalRelease, "preview:nobody/none:1") // wakes the loop, frees nothing
	}, 5*time.Second)
	c.run()
	next := continuedAsNew[slotsapi.Input](t, c.env, slotsapi.WorkflowName)
	require.NotNil(t, next.Carry)
	require.Len(t, next.Carry.Holders, 1)
	assert.Equal(t, PreviewWorkflowID("octo", "app", 1), next.Carry.Holders[0].WorkflowID)
	require.Len(t, next.Carry.Queue, 1)
	assert.Equal(t, PreviewWorkflowID("octo", "app", 2), next.Carry.Queue[0].WorkflowID)
	assert.True(t, next.Carry.Seeded)

	c2 := newCoord(t, slotsapi.Caps{MaxOpen: 1})
	c2.seed = []slotsapi.Holder{{WorkflowID: "preview:would/double:1", Repo: "would/double"}}
	c2.env.RegisterDelayedCallback(func() {
		c2.env.SignalWorkflow(slotsapi.SignalRelease, PreviewWorkflowID("octo", "app", 1))
	}, time.Second)
	c2.env.RegisterDelayedCallback(func() {
		assert.Equal(t, []string{PreviewWorkflowID("octo", "app", 2)}, c2.granted(), "the carried waiter gets the freed slot")
		st := c2.state(t)
		require.Len(t, st.Holders, 1, "no second count from visibility")
		c2.env.CancelWorkflow()
	}, 5*time.Second)
	c2.env.ExecuteWorkflow(slotsapi.WorkflowName, next)
}

// runUntilGrantedAfterCheck runs the coordinator until after its first
// liveness check, by which id, and only id, was granted a slot.
func (c *coord) runUntilGrantedAfterCheck(t *testing.T, id string) {
	t.Helper()
	c.env.RegisterDelayedCallback(func() {
		assert.Equal(t, []string{id}, c.granted())
		c.env.CancelWorkflow()
	}, slotCheckEvery+30*time.Second)
	c.run()
}

// queueSecondThen: octo/app#1 takes the only slot, #2 queues; at 5s,
// change (made under c.mu) changes the coordinator's world.
func (c *coord) queueSecondThen(t *testing.T, change func()) {
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 1) }, 0*time.Second)
	c.env.RegisterDelayedCallback(func() { c.acquire("octo", "app", 2) }, 1*time.Second)
	c.env.RegisterDelayedCallback(func() {
		require.False(t, c.answer("octo", "app", 2).Granted)
		c.mu.Lock()
		change()
		c.mu.Unlock()
	}, 5*time.Second)
}
