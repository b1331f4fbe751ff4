package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
)

// claim polls the double until it hands this runner a job (ok), wait
// passes (!ok), or it refuses the runner (err).
func (r *runner) claim(ctx context.Context, wait time.Duration) (claim, bool, error) {
	body, _ := json.Marshal(map[string]string{"jit_config": r.jit, "machine_id": r.machineID})
	deadline := time.Now().Add(wait)
	var failing error // the last claim's failure, if it failed
	for {
		status, resp, err := r.post(ctx, r.o.github+"/_test/runners/claim", nil, body)
		failing = nil
		switch {
		case err != nil || status >= 500:
			failing = fmt.Errorf("claim: %d %s %v", status, bytes.TrimSpace(resp), err)
			r.log.Warn("claim failed; retrying", "status", status, "err", err)
		case status == http.StatusOK:
			var c claim
			if err := json.Unmarshal(resp, &c); err != nil || c.Job.ID == 0 {
				return claim{}, false, fmt.Errorf("claim answer %q: no job", resp)
			}
			return c, true, nil
		case status == http.StatusNoContent:
		default:
			return claim{}, false, fmt.Errorf("%w: %d %s", errRefused, status, bytes.TrimSpace(resp))
		}
		if !time.Now().Add(r.o.poll).Before(deadline) {
			// An unreachable double is a failure, not an idle runner.
			return claim{}, false, failing
		}
		select {
		case <-time.After(r.o.poll):
		case <-ctx.Done():
			return claim{}, false, nil
		}
	}
}

// complete tells the double the job finished.
func (r *runner) complete(ctx context.Context, jobID int64, conclusion string) error {
	body, _ := json.Marshal(map[string]string{"conclusion": conclusion})
	return r.retry(ctx, "complete job", func() (int, []byte, error) {
		return r.post(ctx, fmt.Sprintf("%s/_test/jobs/%d/complete", r.o.github, jobID), nil, body)
	})
}

// deliver sends one signed workflow_job delivery, with a fresh delivery ID
// (retries of it keep the ID, as GitHub's redeliveries do).
func (r *runner) deliver(ctx context.Context, action string, job ghfixture.Job) error {
	body, err := ghfixture.WorkflowJob(action, job)
	if err != nil {
		return err
	}
	id := deliveryID()
	hdr := http.Header{}
	hdr.Set("X-GitHub-Event", "workflow_job")
	hdr.Set("X-GitHub-Delivery", id)
	if r.o.secret != "" {
		hdr.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(r.o.secret), body))
	}
	err = r.retry(ctx, "workflow_job "+action, func() (int, []byte, error) {
		return r.post(ctx, r.o.webhook, hdr, body)
	})
	if err == nil {
		r.log.Info("delivered", "action", action, "delivery", id)
	}
	return err
}

// retry makes a call up to -retries times while it fails on the way or
// answers 5xx. Any other answer >= 300 is final.
func (r *runner) retry(ctx context.Context, what string, call func() (int, []byte, error)) error {
	backoff := 100 * time.Millisecond
	var last error
	for attempt := 1; attempt <= r.o.retries; attempt++ {
		status, body, err := call()
		switch {
		case err == nil && status < 300:
			return nil
		case err == nil && status < 500:
			return fmt.Errorf("%s: %d %s", what, status, bytes.TrimSpace(body))
		case err != nil:
			last = fmt.Errorf("%s: %w", what, err)
		default:
			last = fmt.Errorf("%s: %d %s", what, status, bytes.TrimSpace(body))
		}
		if attempt < r.o.retries {
			r.log.Warn("retrying", "what", what, "attempt", attempt, "err", last)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return errors.Join(last, ctx.Err())
			}
			backoff *= 2
		}
	}
	return last
}

func (r *runner) post(ctx context.Context, target string, hdr http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// deliveryID looks like GitHub's (a UUID).
func deliveryID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
