package workflows

import (
	"fmt"
	"slices"
	"time"

	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// slotsState is the PreviewSlots coordinator's decisions: pure, no I/O.
type slotsState struct{ slotsapi.State }

func (s *slotsState) holderIndex(id string) int {
	return slices.IndexFunc(s.Holders, func(h slotsapi.Holder) bool { return h.WorkflowID == id })
}

func (s *slotsState) waiterIndex(id string) int {
	return slices.IndexFunc(s.Queue, func(w slotsapi.Waiter) bool { return w.WorkflowID == id })
}

// repoOpen counts the slots held in one repository.
func (s *slotsState) repoOpen(repo string) int {
	n := 0
	for _, h := range s.Holders {
		if h.Repo == repo {
			n++
		}
	}
	return n
}

// acquire records a request and answers it: granted when the preview holds
// a slot already (a repeated request) or is given one now, else queued.
// It also returns the other waiters this decision gave a slot to.
func (s *slotsState) acquire(req slotsapi.Request, now time.Time) (slotsapi.Answer, []slotsapi.Holder) {
	repo := RepoKey(req.Owner, req.Repo)
	if i := s.holderIndex(req.WorkflowID); i >= 0 {
		// A seeded holder asking itself now knows it holds a slot and
		// releases it: it is an ordinary holder from here on.
		s.Holders[i].Seeded = false
	} else if s.waiterIndex(req.WorkflowID) < 0 {
		s.Queue = append(s.Queue, slotsapi.Waiter{WorkflowID: req.WorkflowID, Repo: repo, Number: req.Number, Since: now})
	}
	var others []slotsapi.Holder
	for _, g := range s.dispatch(now) {
		if g.WorkflowID != req.WorkflowID {
			others = append(others, g)
		}
	}
	return s.answer(req.WorkflowID, repo), others
}

// answer says where one preview stands.
func (s *slotsState) answer(id, repo string) slotsapi.Answer {
	a := slotsapi.Answer{
		Open: len(s.Holders), RepoOpen: s.repoOpen(repo), MaxOpen: s.Caps.MaxOpen, MaxOpenPerRepo: s.Caps.MaxOpenPerRepo,
		Queued: len(s.Queue),
	}
	if s.holderIndex(id) >= 0 {
		a.Granted = true
		return a
	}
	a.Position = s.waiterIndex(id) + 1
	switch {
	case s.Caps.MaxOpen > 0 && a.Open >= s.Caps.MaxOpen:
		a.Reason = fmt.Sprintf("queued: %d previews open, limit %d", a.Open, s.Caps.MaxOpen)
	case s.Caps.MaxOpenPerRepo > 0 && a.RepoOpen >= s.Caps.MaxOpenPerRepo:
		a.Reason = fmt.Sprintf("queued: %d previews open in %s, limit %d per repository", a.RepoOpen, repo, s.Caps.MaxOpenPerRepo)
	default:
		a.Reason = fmt.Sprintf("queued: %d previews open, %d waiting ahead", a.Open, a.Position-1)
	}
	return a
}

// release frees a preview's slot, or its place in the queue; it reports
// whether the preview held either.
func (s *slotsState) release(id string) bool {
	if i := s.holderIndex(id); i >= 0 {
		s.Holders = slices.Delete(s.Holders, i, i+1)
		return true
	}
	if i := s.waiterIndex(id); i >= 0 {
		s.Queue = slices.Delete(s.Queue, i, i+1)
		return true
	}
	return false
}

// dispatch gives free slots to waiters and returns the new holders.
// Waiters are served in arrival order, except that a repository at its own
// cap is passed over (its waiters keep their places), and that the
// repository holding the fewest slots goes first: a flood of pull requests
// in one repository cannot take every slot that frees while another
// repository waits.
func (s *slotsState) dispatch(now time.Time) []slotsapi.Holder {
	var granted []slotsapi.Holder
	for len(s.Queue) > 0 {
		if s.Caps.MaxOpen > 0 && len(s.Holders) >= s.Caps.MaxOpen {
			break
		}
		best, bestOpen := -1, 0
		for i, w := range s.Queue {
			open := s.repoOpen(w.Repo)
			if s.Caps.MaxOpenPerRepo > 0 && open >= s.Caps.MaxOpenPerRepo {
				continue
			}
			if best < 0 || open < bestOpen {
				best, bestOpen = i, open
			}
		}
		if best < 0 {
			break
		}
		w := s.Queue[best]
		s.Queue = slices.Delete(s.Queue, best, best+1)
		h := slotsapi.Holder{WorkflowID: w.WorkflowID, Repo: w.Repo, Number: w.Number, Since: now}
		s.Holders = append(s.Holders, h)
		granted = append(granted, h)
	}
	return granted
}

// seed counts previews that have a machine but never asked for a slot
// (made before the coordinator ran, or while no cap was set).
func (s *slotsState) seed(found []slotsapi.Holder) {
	s.Seeded = true
	for _, h := range found {
		if s.holderIndex(h.WorkflowID) >= 0 || s.waiterIndex(h.WorkflowID) >= 0 {
			continue // it asked already: its own request counts
		}
		h.Seeded = true
		s.Holders = append(s.Holders, h)
	}
}
