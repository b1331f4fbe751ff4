package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/drydock-dev/drydock/workflows"
)

// count is the number of this run's previews in phase (from visibility).
func (s *scaleRun) count(ctx context.Context, phase workflows.PreviewPhase) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := s.h.TC.CountWorkflow(cctx, &workflowservice.CountWorkflowExecutionsRequest{
		Namespace: "default",
		Query:     scaleQuery(phase),
	})
	if err != nil {
		return 0, fmt.Errorf("count previews in phase %s: %w", phase, err)
	}
	return resp.GetCount(), nil
}

// scaleQuery selects the previews in phase: the stack's only workflows of
// that type.
func scaleQuery(phase workflows.PreviewPhase) string {
	return fmt.Sprintf("WorkflowType = %q AND %s = %q", workflows.PreviewLifecycleName, workflows.SearchAttrPhase.GetName(), phase)
}

// open delivers `opened` for PRs from..to, keeping at most scaleWindow of
// them provisioning, and returns when previews 1..to are all ready.
func (s *scaleRun) open(ctx context.Context, from, to int) (time.Duration, error) {
	began := time.Now()
	next := from
	var lastReady int64 = -1
	lastProgress, lastLog := time.Now(), time.Now()
	for {
		ready, err := s.count(ctx, workflows.PreviewReady)
		if err != nil {
			return 0, err
		}
		if err := s.checkFailed(ctx); err != nil {
			return 0, err
		}
		ready += int64(len(s.raced)) // failed because the app could not listen: done too
		if ready >= int64(to) {
			return time.Since(began), nil
		}
		if ready != lastReady {
			lastReady, lastProgress = ready, time.Now()
		} else if time.Since(lastProgress) > 3*time.Minute {
			return 0, fmt.Errorf("no preview became ready for 3 minutes (%d of %d ready, %d delivered)", ready, to, next-1)
		}
		// Previews below from are ready already (earlier phases).
		inFlight := int64(next-from) - (ready - int64(from-1))
		batch := min(int64(to-next+1), int64(scaleWindow)-inFlight)
		if batch > 0 {
			if err := s.deliverOpened(ctx, next, next+int(batch)-1); err != nil {
				return 0, err
			}
			next += int(batch)
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			s.e.Log.Info("opening", "delivered", next-from, "ready", ready-int64(from-1), "of", to-from+1, "elapsed", time.Since(began).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// deliverOpened sends `opened` for PRs from..to, a few at a time.
func (s *scaleRun) deliverOpened(ctx context.Context, from, to int) error {
	nums := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for num := range nums {
				body, err := s.h.PullRequest("opened", s.pr(num))
				if err == nil {
					var code int
					code, err = s.h.Deliver(ctx, "pull_request", fmt.Sprintf("scale-open-%d", num), body)
					if err == nil && code != http.StatusAccepted {
						err = fmt.Errorf("opened delivery for PR %d: HTTP %d", num, code)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for num := from; num <= to; num++ {
		s.head[num] = 0
	}
	for num := from; num <= to; num++ {
		nums <- num
	}
	close(nums)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// checkFailed looks at the previews that failed since the last look. A
// preview whose app could not listen on its machine's port (the emulator
// checks that a port is free when it hands it out, but does not hold it
// until the app binds: another process can take it meanwhile) is an
// emulator casualty: it is remembered in raced and left out of the rest of
// the run. Any other failure is an error.
func (s *scaleRun) checkFailed(ctx context.Context) error {
	failed, err := s.count(ctx, workflows.PreviewFailed)
	if err != nil || failed <= int64(len(s.raced)) {
		return err
	}
	q := scaleQuery(workflows.PreviewFailed)
	var token []byte
	for {
		resp, err := s.h.TC.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", Query: q, NextPageToken: token})
		if err != nil {
			return fmt.Errorf("list failed previews: %w", err)
		}
		for _, ex := range resp.GetExecutions() {
			id := ex.GetExecution().GetWorkflowId()
			st, err := s.h.PreviewStatus(ctx, id, 10*time.Second)
			if err != nil {
				return err
			}
			if s.raced[st.Number] {
				continue
			}
			if strings.Contains(st.LastError, "allocating machine port") {
				return fmt.Errorf("the emulator ran out of machine ports with %d machines live (preview %s: %s)",
					s.h.Emu.Stats().LiveMachines, id, st.LastError)
			}
			applog := appLog(s.e.Dir, st.MachineID)
			if !strings.Contains(applog, "Address already in use") {
				return fmt.Errorf("preview %s failed: %s\napp log: %s\nworker log:\n%s", id, st.LastError, applog, s.h.LogTail("worker", 2000))
			}
			s.e.Log.Warn("preview lost: its app could not listen on the machine's port", "preview", id, "machine_id", st.MachineID, "app_log", applog)
			s.raced[st.Number] = true
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return nil
		}
	}
}

// settle waits until previews 1..total are all ready again (the
// synchronize deliveries redeploy them).
func (s *scaleRun) settle(ctx context.Context, total int) error {
	deadline := time.Now().Add(5 * time.Minute)
	streak := 0
	for time.Now().Before(deadline) {
		ready, err := s.count(ctx, workflows.PreviewReady)
		if err != nil {
			return err
		}
		if err := s.checkFailed(ctx); err != nil {
			return err
		}
		if ready+int64(len(s.raced)) == int64(total) {
			if streak++; streak == 2 {
				return nil
			}
		} else {
			streak = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	var phases []string
	for _, ph := range []workflows.PreviewPhase{workflows.PreviewReady, workflows.PreviewDeploying, workflows.PreviewProvisioning, workflows.PreviewPending} {
		if c, err := s.count(ctx, ph); err == nil {
			phases = append(phases, fmt.Sprintf("%s %d", ph, c))
		}
	}
	return fmt.Errorf("previews not all ready again within 5 minutes of the synchronize burst (of %d: %s)", total, strings.Join(phases, ", "))
}
