package intake_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/pools"
)

// The handler's own CPU per delivery, from the signed body to the answer,
// as the webhook server runs it (signature, allow-list, Dedupe, Mux and
// the router), against Temporal doubles (fake) or the package's dev server
// (temporal, which adds the client's encoding and gRPC). Profile with
//
//	go test ./internal/intake/ -run '^$' -bench Handler -cpuprofile cpu.out
//
// and `go tool pprof -top`. make bench measures the same path end to end.
func BenchmarkHandler(b *testing.B) {
	for _, kind := range []string{"pull_request", "workflow_job"} {
		for _, backend := range []string{"fake", "temporal", "temporal-nogzip"} {
			b.Run(kind+"/"+backend, func(b *testing.B) {
				var tc client.Client
				switch backend {
				case "temporal":
					tc = devServer.Client()
				case "temporal-nogzip":
					c, err := client.Dial(client.Options{HostPort: devServer.FrontendHostPort(), Namespace: "default",
						ConnectionOptions: client.ConnectionOptions{GrpcCompression: &client.GrpcCompressionNone{}}})
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					tc = c
				}
				benchDeliveries(b, kind, tc)
			})
		}
	}
}

// benchPools takes the jobs benchJob builds.
const benchPools = `{"pools":[{"name":"bench","labels":["self-hosted","linux","bench"],"scope":{"kind":"org","org":"bench-org"},
"repositories":["bench-org/intake"],"runner_group_id":2,"machine":{"vcpu":1,"memory_mib":512,"storage_gib":2,"autosleep":"10m"},"max_machines":5}]}`

func benchDeliveries(b *testing.B, kind string, tc client.Client) {
	pc, err := pools.LoadFrom("", benchPools)
	if err != nil {
		b.Fatal(err)
	}
	var prT intake.Temporal = &fakeTemporal{}
	var jobT intake.JobTemporal = &fakeJobs{}
	if tc != nil {
		prT, jobT = tc, tc
	}
	prs, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: prT, Policy: intake.PreviewPolicy{Label: "preview", SkipBots: true}, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: jobT, Pools: pc, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	mux := intake.NewMux()
	mux.Handle("pull_request", prs)
	mux.Handle("workflow_job", jobs)
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowOwners("bench", "bench-org"),
		Router: intake.Dedupe(mux, intake.NewRecentDeliveries(intake.DefaultRecentDeliveries)), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	reqs := benchRequests(b, kind, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := range b.N {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, reqs[i])
		if rec.Code != http.StatusAccepted {
			b.Fatalf("delivery %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	// The process's CPU (the Temporal client's goroutines included), which
	// wall time per delivery does not show when Temporal answers slowly.
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRun numbers the benchmark runs, so no two build the same IDs.
var benchRun atomic.Int64

// benchRequests builds n signed deliveries, each about a pull request or
// job never seen before (fresh numbers and delivery IDs).
func benchRequests(b *testing.B, kind string, n int) []*http.Request {
	b.Helper()
	run := benchRun.Add(1)
	out := make([]*http.Request, n)
	for i := range out {
		id := run*10_000_000 + int64(i) + 1
		var body []byte
		var err error
		if kind == "pull_request" {
			body, err = ghfixture.PullRequest("opened", ghfixture.PR{Owner: "bench", Repo: "intake", Number: int(id),
				HeadSHA: fmt.Sprintf("%040x", id), HeadRef: "bench", CloneURL: "https://github.com/bench/intake.git"})
		} else {
			body, err = ghfixture.WorkflowJob("queued", ghfixture.Job{ID: id, RunID: id * 10, Name: fmt.Sprintf("build-%d", id),
				Owner: "bench-org", Repo: "intake", Org: "bench-org", Labels: []string{"self-hosted", "linux", "bench"}})
		}
		if err != nil {
			b.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", kind)
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%s-%d", kind, id))
		req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(secret), body))
		out[i] = req
	}
	return out
}
