package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

// killWorker SIGKILLs the worker at random moments and restarts it.
func (c *chaos) killWorker(ctx context.Context) {
	for c.kills.Load() < int64(c.o.kills) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.jitter(c.o.killEvery)):
		}
		c.workerMu.Lock()
		c.h.Worker.Kill()
		c.kills.Add(1)
		time.Sleep(time.Duration(100+c.intn(900)) * time.Millisecond)
		if err := c.h.Worker.Start(); err != nil {
			c.log.Error("restart the worker", "err", err)
		}
		c.workerMu.Unlock()
	}
}

// deliver plays GitHub: the delivery is sent three times at once, and each
// copy is redelivered until it gets a 2xx.
func (c *chaos) deliver(ctx context.Context, event, delivery string, body []byte, copies int) {
	var wg sync.WaitGroup
	for range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.deliverOnce(ctx, event, delivery, body)
		}()
	}
	wg.Wait()
}

func (c *chaos) deliverOnce(ctx context.Context, event, delivery string, body []byte) bool {
	backoff := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt == 0 {
			c.deliveries.Add(1)
		} else {
			c.redeliveries.Add(1)
		}
		code, err := c.h.Deliver(ctx, event, delivery, body)
		if err == nil && code < 300 {
			return true
		}
		c.non2xx.Add(1)
		if err == nil && code < 500 {
			c.log.Error("delivery refused", "event", event, "delivery", delivery, "status", code)
			c.fail("delivery %s (%s) refused with HTTP %d", delivery, event, code)
			return false
		}
		if ctx.Err() != nil || attempt > 40 {
			c.fail("delivery %s (%s) never accepted: %v / HTTP %d", delivery, event, err, code)
			return false
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 3*time.Second)
	}
}

func (c *chaos) prBody(p *pr, action string, shaIndex int) ([]byte, error) {
	// Label is what a labeled delivery is about: one the preview policy
	// ignores.
	return c.h.PullRequest(action, ghfixture.PR{Owner: owner, Repo: repoName, Number: p.number,
		HeadSHA: p.shas[shaIndex], HeadRef: fmt.Sprintf("feature-%d", p.number), CloneURL: c.repo.Dir, Label: "chaos-noise"})
}

func (c *chaos) prEvent(ctx context.Context, p *pr, action string, shaIndex int) {
	body, err := c.prBody(p, action, shaIndex)
	if err != nil {
		c.fail("pull_request %s fixture: %v", action, err)
		return
	}
	// GitHub's own state changes first; the delivery follows.
	p.open = action != "closed"
	state := "open"
	if !p.open {
		state = "closed"
	}
	c.h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: p.number, State: state,
		HeadSHA: p.shas[shaIndex], HeadRef: fmt.Sprintf("feature-%d", p.number)})
	c.deliver(ctx, "pull_request", fmt.Sprintf("pr-%d-%s-%d", p.number, action, shaIndex), body, 3)
}

func (c *chaos) jobBody(j *job, action string) ([]byte, error) {
	return c.h.WorkflowJob(action, ghfixture.Job{ID: j.id, RunID: j.id * 10, Name: fmt.Sprintf("build-%d", j.id),
		Owner: owner, Repo: j.repo, Org: owner, Labels: j.labels})
}

func (c *chaos) jobEvent(ctx context.Context, j *job, action, delivery string) {
	body, err := c.jobBody(j, action)
	if err != nil {
		c.fail("workflow_job fixture: %v", err)
		return
	}
	c.deliver(ctx, "workflow_job", delivery, body, 3)
}

// burst sends c.o.burst distinct deliveries spread over one second: pushes
// that repeat an open PR's current head, edits and label changes Drydock
// ignores, GitHub's retries of queued jobs under new delivery IDs, pings.
func (c *chaos) burst(ctx context.Context) {
	type delivery struct {
		event, id string
		body      []byte
	}
	var ds []delivery
	ping := ghfixture.Ping(owner, repoName, 1)
	for i := 0; len(ds) < c.o.burst; i++ {
		id := fmt.Sprintf("burst-%d", i)
		switch i % 4 {
		case 0, 1:
			p := c.prs[c.intn(len(c.prs))]
			action := []string{"synchronize", "labeled"}[i%2]
			if !p.open || p.group == "closed-later" {
				action = "edited"
			}
			b, err := c.prBody(p, action, len(p.shas)-1)
			if err != nil {
				c.fail("burst fixture: %v", err)
				return
			}
			ds = append(ds, delivery{"pull_request", id, b})
		case 2:
			b, err := c.jobBody(c.jobs[c.intn(len(c.jobs))], "queued")
			if err != nil {
				c.fail("burst fixture: %v", err)
				return
			}
			ds = append(ds, delivery{"workflow_job", id, b})
		case 3:
			ds = append(ds, delivery{"ping", id, ping})
		}
	}
	began := time.Now()
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok := c.deliverOnce(ctx, d.event, d.id, d.body); ok {
				accepted.Add(1)
			}
		}()
		// Spread over one second.
		if next := began.Add(time.Duration(i+1) * time.Second / time.Duration(len(ds))); time.Until(next) > 0 {
			time.Sleep(time.Until(next))
		}
	}
	sent := time.Since(began)
	wg.Wait()
	c.burstAccepted.Store(accepted.Load())
	c.burstElapsed.Store(int64(sent))
	c.log.Info("burst sent", "deliveries", len(ds), "in", sent.Round(time.Millisecond), "all answered after", time.Since(began).Round(time.Millisecond))
}
