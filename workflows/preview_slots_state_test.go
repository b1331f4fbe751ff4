package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

func slotReq(owner, repo string, n int) slotsapi.Request {
	return slotsapi.Request{WorkflowID: PreviewWorkflowID(owner, repo, n), Owner: owner, Repo: repo, Number: n}
}

func holderIDs(s *slotsState) []string {
	var out []string
	for _, h := range s.Holders {
		out = append(out, h.WorkflowID)
	}
	return out
}

var slotNow = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func TestSlotsGlobalCapQueuesAndReleaseGrants(t *testing.T) {
	s := &slotsState{State: slotsapi.State{Caps: slotsapi.Caps{MaxOpen: 2}}}
	for n := 1; n <= 2; n++ {
		ans, others := s.acquire(slotReq("octo", "app", n), slotNow)
		assert.True(t, ans.Granted, n)
		assert.Empty(t, others)
	}
	ans, _ := s.acquire(slotReq("octo", "app", 3), slotNow)
	assert.False(t, ans.Granted)
	assert.Equal(t, 1, ans.Position)
	assert.Equal(t, "queued: 2 previews open, limit 2", ans.Reason)
	ans, _ = s.acquire(slotReq("acme", "web", 1), slotNow)
	assert.Equal(t, 2, ans.Position, "the global cap holds every repository back")

	// A repeated request keeps its place and changes nothing.
	again, _ := s.acquire(slotReq("octo", "app", 3), slotNow)
	assert.Equal(t, 1, again.Position)
	assert.Len(t, s.Queue, 2)
	again, _ = s.acquire(slotReq("octo", "app", 1), slotNow)
	assert.True(t, again.Granted, "a holder asking again holds its slot")
	assert.Len(t, s.Holders, 2)

	require.True(t, s.release(PreviewWorkflowID("octo", "app", 1)))
	granted := s.dispatch(slotNow)
	require.Len(t, granted, 1)
	// acme/web holds nothing and octo/app holds one: acme goes first.
	assert.Equal(t, PreviewWorkflowID("acme", "web", 1), granted[0].WorkflowID)
	assert.False(t, s.release("preview:nobody/none:1"), "releasing what is not held changes nothing")
	assert.Len(t, s.Holders, 2)
	assert.Len(t, s.Queue, 1)

	// A queued preview that closes gives its place back.
	require.True(t, s.release(PreviewWorkflowID("octo", "app", 3)))
	assert.Empty(t, s.Queue)
}

func TestSlotsPerRepoCapPassesOtherRepositories(t *testing.T) {
	s := &slotsState{State: slotsapi.State{Caps: slotsapi.Caps{MaxOpen: 10, MaxOpenPerRepo: 1}}}
	ans, _ := s.acquire(slotReq("octo", "app", 1), slotNow)
	require.True(t, ans.Granted)
	ans, _ = s.acquire(slotReq("octo", "app", 2), slotNow)
	assert.False(t, ans.Granted)
	assert.Equal(t, "queued: 1 previews open in octo/app, limit 1 per repository", ans.Reason)
	ans, _ = s.acquire(slotReq("Acme", "Web", 7), slotNow)
	assert.True(t, ans.Granted, "another repository is below its cap: it passes the queued octo/app")
	assert.Equal(t, 1, ans.RepoOpen)
	assert.Equal(t, 2, ans.Open)

	require.True(t, s.release(PreviewWorkflowID("octo", "app", 1)))
	granted := s.dispatch(slotNow)
	require.Len(t, granted, 1)
	assert.Equal(t, PreviewWorkflowID("octo", "app", 2), granted[0].WorkflowID)
	assert.Equal(t, "octo/app", granted[0].Repo)
}

// A flood in one repository does not take every slot that frees.
func TestSlotsFairAcrossRepositories(t *testing.T) {
	s := &slotsState{State: slotsapi.State{Caps: slotsapi.Caps{MaxOpen: 3}}}
	for n := 1; n <= 5; n++ {
		s.acquire(slotReq("bots", "deps", n), slotNow)
	}
	s.acquire(slotReq("octo", "app", 1), slotNow)
	assert.Equal(t, []string{PreviewWorkflowID("bots", "deps", 1), PreviewWorkflowID("bots", "deps", 2), PreviewWorkflowID("bots", "deps", 3)}, holderIDs(s))
	ans := s.answer(PreviewWorkflowID("octo", "app", 1), "octo/app")
	assert.Equal(t, 3, ans.Position, "arrival order for the position")

	s.release(PreviewWorkflowID("bots", "deps", 1))
	granted := s.dispatch(slotNow)
	require.Len(t, granted, 1)
	assert.Equal(t, PreviewWorkflowID("octo", "app", 1), granted[0].WorkflowID, "the repository holding nothing goes before the flood")
}

func TestSlotsCapsChange(t *testing.T) {
	s := &slotsState{State: slotsapi.State{Caps: slotsapi.Caps{MaxOpen: 1}}}
	s.acquire(slotReq("octo", "app", 1), slotNow)
	s.acquire(slotReq("octo", "app", 2), slotNow)
	s.acquire(slotReq("octo", "app", 3), slotNow)
	s.Caps = slotsapi.Caps{MaxOpen: 2}
	assert.Len(t, s.dispatch(slotNow), 1, "a raised cap lets one more in")
	s.Caps = slotsapi.Caps{}
	assert.Len(t, s.dispatch(slotNow), 1, "no cap: everyone waiting is let in")
	assert.Empty(t, s.Queue)
	s.Caps = slotsapi.Caps{MaxOpen: 1}
	assert.Empty(t, s.dispatch(slotNow), "a lowered cap stops nobody")
	assert.Len(t, s.Holders, 3)
	ans, _ := s.acquire(slotReq("octo", "app", 4), slotNow)
	assert.Equal(t, "queued: 3 previews open, limit 1", ans.Reason)
}

func TestSlotsSeedCountsExistingMachines(t *testing.T) {
	s := &slotsState{State: slotsapi.State{Caps: slotsapi.Caps{MaxOpen: 2}}}
	s.acquire(slotReq("octo", "app", 1), slotNow)
	s.seed([]slotsapi.Holder{
		{WorkflowID: PreviewWorkflowID("octo", "app", 1), Repo: "octo/app", Number: 1},
		{WorkflowID: PreviewWorkflowID("octo", "old", 9), Repo: "octo/old", Number: 9},
	})
	assert.True(t, s.Seeded)
	require.Len(t, s.Holders, 2, "a preview that asked already is not counted twice")
	assert.False(t, s.Holders[0].Seeded)
	assert.True(t, s.Holders[1].Seeded)
	ans, _ := s.acquire(slotReq("octo", "app", 2), slotNow)
	assert.False(t, ans.Granted, "the preview made before the caps counts")

	// The seeded preview's next machine asks: it keeps its slot, now as a
	// holder that releases it (no longer judged by its search attributes).
	ans, _ = s.acquire(slotReq("octo", "old", 9), slotNow)
	assert.True(t, ans.Granted)
	assert.False(t, s.Holders[1].Seeded)
	assert.Len(t, s.Holders, 2)
}
