package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

var errNotYet = errors.New("not yet")

// poll calls check every 250ms until it returns nil or the deadline passes.
func poll(ctx context.Context, deadline time.Time, check func() error) error {
	for {
		err := check()
		if err == nil || !errors.Is(err, errNotYet) {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitPreviews waits until every open PR's preview is ready at its newest
// head and every closed PR's workflow has completed.
func (c *chaos) waitPreviews(ctx context.Context, deadline time.Time) error {
	return poll(ctx, deadline, func() error {
		var pending []string
		for _, p := range c.prs {
			id := workflows.PreviewWorkflowID(owner, repoName, p.number)
			desc, err := c.h.TC.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				pending = append(pending, fmt.Sprintf("#%d: %v", p.number, err))
				continue
			}
			running := desc.GetWorkflowExecutionInfo().GetStatus().String() == "Running"
			if !p.open {
				if running {
					pending = append(pending, fmt.Sprintf("#%d: still running after close", p.number))
				} else if st := desc.GetWorkflowExecutionInfo().GetStatus().String(); st != "Completed" {
					return fmt.Errorf("preview #%d ended %s, want Completed", p.number, st)
				}
				continue
			}
			if !running {
				return fmt.Errorf("preview #%d is open on GitHub but its workflow ended (%s)", p.number, desc.GetWorkflowExecutionInfo().GetStatus())
			}
			st, err := c.h.PreviewStatus(ctx, id, 5*time.Second)
			want := p.shas[len(p.shas)-1]
			switch {
			case err != nil:
				pending = append(pending, fmt.Sprintf("#%d: %v", p.number, err))
			case st.Phase == workflows.PreviewFailed:
				return fmt.Errorf("preview #%d failed: %s", p.number, st.LastError)
			case st.Phase != workflows.PreviewReady || st.DeployedSHA != want:
				pending = append(pending, fmt.Sprintf("#%d: %s at %.7s, want ready at %.7s", p.number, st.Phase, st.DeployedSHA, want))
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("%w: previews not settled: %s", errNotYet, strings.Join(pending, "; "))
		}
		return nil
	})
}

// checkOpenPreviews fetches every open preview through the router: it must
// answer 200 with the newest head SHA.
func (c *chaos) checkOpenPreviews(ctx context.Context) {
	served := 0
	for _, p := range c.prs {
		if !p.open {
			continue
		}
		want := p.shas[len(p.shas)-1]
		code, body, err := c.h.Get(ctx, owner, repoName, p.number, "/")
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), want) {
			c.fail("preview #%d through the router: HTTP %d, err %v, want the page of %.7s", p.number, code, err, want)
			continue
		}
		served++
	}
	c.count("open previews served at their newest head through the router", served)
}

// waitJobs waits for every RunnerJob workflow and checks GitHub's side:
// every job completed there (cancelled ones as cancelled), and every
// RunnerJob completed, but the ones terminated on purpose.
func (c *chaos) waitJobs(ctx context.Context, deadline time.Time) {
	done := 0
	for _, j := range c.jobs {
		// Once the deadline has passed, every job still gets a short look,
		// so that one stuck job is not reported as many.
		wctx, cancel := context.WithDeadline(ctx, later(deadline, time.Now().Add(5*time.Second)))
		err := c.h.TC.GetWorkflow(wctx, runnerapi.JobWorkflowID(j.id), "").Get(wctx, nil)
		cancel()
		var terminated *temporal.TerminatedError
		switch {
		case err != nil && !(j.fate == fateTerminated && errors.As(err, &terminated)):
			c.fail("job %d (%s): RunnerJob did not complete: %v", j.id, j.fate, err)
			continue
		}
		wantConclusion := ""
		if j.fate == fateCancelQueued || j.fate == fateCancelPickup {
			wantConclusion = "cancelled"
		}
		if err := poll(ctx, deadline, func() error {
			got, ok := c.h.GH.Job(j.id)
			if !ok || got.Status != githubtest.JobCompleted {
				return fmt.Errorf("%w: job %d (%s): GitHub says %q, want completed", errNotYet, j.id, j.fate, got.Status)
			}
			if wantConclusion != "" && got.Conclusion != wantConclusion {
				return fmt.Errorf("job %d (%s): GitHub says %s, want %s", j.id, j.fate, got.Conclusion, wantConclusion)
			}
			return nil
		}); err != nil {
			c.fail("%v", err)
			continue
		}
		done++
	}
	c.count("jobs settled as scripted (RunnerJob and GitHub)", fmt.Sprintf("%d/%d", done, len(c.jobs)))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitPoolsDrained waits until both pools' inventories are empty.
func (c *chaos) waitPoolsDrained(ctx context.Context, deadline time.Time) {
	err := poll(ctx, deadline, func() error {
		for _, name := range []string{pool, persistentPool} {
			inv, err := c.inventory(ctx, name)
			if err != nil {
				return fmt.Errorf("%w: pool %s: %v", errNotYet, name, err)
			}
			if len(inv.Machines) > 0 {
				return fmt.Errorf("%w: pool %s still has %d machines", errNotYet, name, len(inv.Machines))
			}
		}
		return nil
	})
	if err != nil {
		c.fail("pools not drained: %v", err)
	}
}

// waitNoMachines waits until the emulator has no machine and no preview.
func (c *chaos) waitNoMachines(ctx context.Context, deadline time.Time) {
	err := poll(ctx, deadline, func() error {
		st := c.h.Emu.Stats()
		if st.LiveMachines > 0 || st.PreviewsLive > 0 {
			return fmt.Errorf("%w: %d machines and %d previews left", errNotYet, st.LiveMachines, st.PreviewsLive)
		}
		return nil
	})
	if err != nil {
		c.fail("after every PR closed and the pool drained: %v", err)
	}
	st := c.h.Emu.Stats()
	c.count("machines left after all PRs closed and the pool drained", st.LiveMachines)
	c.count("previews left", st.PreviewsLive)
}
