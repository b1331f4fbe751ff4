package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The Dedalus API key and the GitHub token never reach what Temporal stores
// and shows in its UI (workflow inputs and results, activity inputs and
// results, failures, memo, search attributes, schedules) nor the worker's
// log, also when calls fail and their errors are recorded: a preview and a
// runner job run through Dedalus refusing machine creates (503), resetting
// execution requests (transport errors carrying request URLs) and a wake
// that fails for good, GitHub failing once on several routes, and a
// reconcile; the worker logs at debug level.
func TestSecretsStayOutOfHistoriesAndLogs(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return poolJSON(t, s, secretsPool, 1, "", "") })
	// The worker at its most talkative: more output for a secret to leak into.
	s.stopWorker(syscall.SIGTERM)
	s.workerE = append(s.workerE, "LOG_LEVEL=debug")
	s.startWorker()
	secrets := map[string]string{"the Dedalus API key": s.emu.APIKey(), "the GitHub token": ghToken}
	for what, v := range secrets {
		require.GreaterOrEqual(t, len(v), 8, "%s is long enough to search for", what)
	}

	r := startSecretsRun(t, s)
	machineID := r.runThroughFaults(t)

	// 4. A reconcile run (its result is visible in the UI).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r.reconcile(ctx, t)

	// 5. Close: teardown.
	code, _ := s.deliver("closed", r.pr, "secrets-closed")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(r.previewID)
	require.NoError(t, s.tc.TerminateWorkflow(ctx, runnerapi.PoolWorkflowID(secretsPool), "", "end of test"))

	runs, types := r.closedRuns(t)
	checkHistoriesKeepSecrets(ctx, t, s, runs, types, secrets, machineID)
	checkSchedulesKeepSecrets(ctx, t, s, secrets)

	// The worker's log, complete once it has stopped.
	s.stopWorker(syscall.SIGTERM)
	logs := s.logs.Bytes()
	for what, secret := range secrets {
		assert.Empty(t, findSecretIn(logs, secret), "%s in the worker's log", what)
	}
	t.Logf("searched %d KiB of worker log", len(logs)>>10)
	assert.Contains(t, string(logs), "create machine", "the log holds the failed calls' errors")
}

// The pull request and the runner pool of the secrets test.
const (
	secretsOwner, secretsRepo, secretsPR = "Secret-Org", "secret-app", 11
	secretsPool                          = "secrets"
)

// secretsRun is the secrets test's run on stack s: a preview (workflow
// previewID) and a runner job (jobID, provisioned by provisionID), started
// since since.
type secretsRun struct {
	s                      *stack
	previewID, provisionID string
	jobID                  int64
	since                  time.Time
	pr                     ghfixture.PR
}

// startSecretsRun names the runs whose histories are kept, sets up the
// pull request, and makes GitHub fail once on the routes the preview and
// the job use.
func startSecretsRun(t *testing.T, s *stack) *secretsRun {
	r := &secretsRun{
		s:           s,
		previewID:   workflows.PreviewWorkflowID(secretsOwner, secretsRepo, secretsPR),
		jobID:       nextJobIDs(1)[0],
		provisionID: runnerapi.ProvisionWorkflowID(secretsPool, 1),
		since:       time.Now(),
	}
	s.keepHistories(map[string]runMatcher{
		"preview-lifecycle-dedalus-faults": withID(r.previewID),
		"runner-job-dedalus-faults":        withID(runnerapi.JobWorkflowID(r.jobID)),
		"runner-provision-dedalus-faults":  withID(r.provisionID),
		"reconcile":                        withIDPrefix(workflows.ReconcileScheduleID),
	})
	s.gh.SetFile(secretsOwner, secretsRepo, "main", ".drydock/preview.yml", autoSpec)
	src := newRepo(t)
	r.pr = ghfixture.PR{Owner: secretsOwner, Repo: secretsRepo, Number: secretsPR, HeadSHA: src.head(), HeadRef: "secrets", CloneURL: src.dir}

	// GitHub fails once on the routes the preview and the job use.
	for _, route := range []string{githubtest.RouteGetContent, githubtest.RouteCreateDeployment,
		githubtest.RouteCreateDeploymentStatus, githubtest.RouteCreateIssueComment, githubtest.RouteGenerateOrgJITConfig} {
		s.gh.FailNext(route, 1, githubtest.BadGateway())
	}
	s.gh.FailNext(githubtest.RouteUpdateIssueComment, 1, githubtest.Error(http.StatusInternalServerError, "Server Error"))
	return r
}

// runThroughFaults runs the preview and the job through Dedalus's faults
// (steps 1 to 3); it returns the preview's machine ID.
func (r *secretsRun) runThroughFaults(t *testing.T) string {
	s := r.s
	// 1. Every machine create is refused until both the preview's and the
	// pool's have failed an attempt.
	setFaults(t, s, map[string]emulator.FaultRule{"createMachine": {Error503: 1}})
	code, out := s.deliver("opened", r.pr, "secrets-opened")
	require.Equal(t, http.StatusAccepted, code, out)
	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: r.jobID, Labels: jobLabels, Duration: 200 * time.Millisecond})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, r.jobID, "secrets-queued"))
	t.Log(waitFailedAttempt(t, s, r.previewID, "create machine"))
	t.Log(waitFailedAttempt(t, s, r.provisionID, "create machine"))

	// 2. Then the connections of execution requests are reset (transport
	// errors, whose messages carry the request's URL).
	setFaults(t, s, map[string]emulator.FaultRule{"createMachineExecution": {Reset: 1}})
	t.Log(waitFailedAttempt(t, s, r.previewID, "create execution on"))
	setFaults(t, s, nil)

	st := s.waitFor(r.previewID, "ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	s.waitJobs(t, []int64{r.jobID})

	// 3. A wake that fails for good (its local activity gives up): the
	// reviewer gets an error, the next request wakes the machine.
	require.Eventually(t, func() bool { return machinePhase(s.emu, st.MachineID) == "sleeping" }, 30*time.Second, 50*time.Millisecond, "autosleep")
	setFaults(t, s, map[string]emulator.FaultRule{"wakeMachine": {Reset: 1}})
	code, body := s.get(secretsOwner, secretsRepo, secretsPR, "/")
	assert.NotEqual(t, http.StatusOK, code, "the wake failed: %s", body)
	setFaults(t, s, nil)
	require.Eventually(t, func() bool {
		code, _ := s.get(secretsOwner, secretsRepo, secretsPR, "/")
		return code == http.StatusOK
	}, 60*time.Second, 500*time.Millisecond, "the preview wakes once Dedalus answers again")
	return st.MachineID
}

// reconcile triggers the reconcile schedule and waits for a run to
// complete.
func (r *secretsRun) reconcile(ctx context.Context, t *testing.T) {
	s := r.s
	require.NoError(t, s.tc.ScheduleClient().GetHandle(ctx, workflows.ReconcileScheduleID).Trigger(ctx, client.ScheduleTriggerOptions{}))
	require.Eventually(t, func() bool {
		for _, run := range listRuns(t, s.tc, r.since, "WorkflowType = '"+workflows.ReconcileName+"'") {
			if run.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				return true
			}
		}
		return false
	}, 90*time.Second, 200*time.Millisecond, "a reconcile run completed")
}

// closedRuns waits for every run the test started (preview, job, pool,
// provision, reconcile) to be visible and closed; it returns them all
// ("<workflow ID>\x00<run ID>") and their workflow types.
func (r *secretsRun) closedRuns(t *testing.T) (runs, types []string) {
	want := []string{r.previewID, runnerapi.JobWorkflowID(r.jobID), runnerapi.PoolWorkflowID(secretsPool), r.provisionID, workflows.ReconcileScheduleID}
	require.Eventually(t, func() bool {
		runs, types = nil, nil
		for _, run := range listRuns(t, r.s.tc, r.since, "") {
			if run.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return false
			}
			runs = append(runs, run.GetExecution().GetWorkflowId()+"\x00"+run.GetExecution().GetRunId())
			types = append(types, run.GetType().GetName())
		}
		for _, w := range want {
			if !slices.ContainsFunc(runs, func(r string) bool { return strings.HasPrefix(r, w) }) {
				return false
			}
		}
		return true
	}, 60*time.Second, 200*time.Millisecond, "the test's runs are visible and closed")
	return runs, types
}

// checkHistoriesKeepSecrets searches the histories of runs (of workflow
// types types) for secrets, and checks that their failures include the
// errors of every kind injected (the wake's on machine machineID).
func checkHistoriesKeepSecrets(ctx context.Context, t *testing.T, s *stack, runs, types []string, secrets map[string]string, machineID string) {
	var failures []string
	payloads := 0
	for _, r := range runs {
		id, runID, _ := strings.Cut(r, "\x00")
		h, err := fetchHistory(ctx, s.tc, id, runID)
		require.NoError(t, err)
		for what, secret := range secrets {
			assert.Empty(t, findSecret(h, secret), "%s in the history of %s", what, id)
		}
		walkMessages(h.ProtoReflect(), func(m protoreflect.Message) {
			switch v := m.Interface().(type) {
			case *commonpb.Payload:
				payloads++
			case *failurepb.Failure:
				failures = append(failures, id+": "+v.GetMessage())
			}
		})
	}
	slices.Sort(failures)
	failures = slices.Compact(failures)
	t.Logf("searched %d histories (%s), %d payloads, %d distinct failures:\n%s",
		len(runs), strings.Join(slices.Compact(slices.Sorted(slices.Values(types))), ", "), payloads, len(failures), strings.Join(failures, "\n"))
	// The searched failures include the errors of every kind injected above.
	for _, want := range []string{"create machine", "create execution on", "wake machine " + machineID} {
		assert.True(t, slices.ContainsFunc(failures, func(f string) bool { return strings.Contains(f, want) }),
			"a recorded failure mentions %q", want)
	}
}

// checkSchedulesKeepSecrets searches the schedules (shown in the UI too)
// for secrets.
func checkSchedulesKeepSecrets(ctx context.Context, t *testing.T, s *stack, secrets map[string]string) {
	schedules := 0
	it, err := s.tc.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	require.NoError(t, err)
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		desc, err := s.tc.WorkflowService().DescribeSchedule(ctx, &workflowservice.DescribeScheduleRequest{Namespace: temporalNamespace, ScheduleId: e.ID})
		require.NoError(t, err)
		schedules++
		for what, secret := range secrets {
			assert.Empty(t, findSecret(desc, secret), "%s in schedule %s", what, e.ID)
		}
	}
	assert.Positive(t, schedules)
}

// setFaults replaces the emulator's fault rules (nil: none).
func setFaults(t *testing.T, s *stack, routes map[string]emulator.FaultRule) {
	t.Helper()
	require.NoError(t, s.emu.SetFaults(emulator.Faults{Routes: routes}))
}

// waitFailedAttempt waits until a pending activity of workflow id is being
// retried after a failure that mentions what, and returns that failure.
func waitFailedAttempt(t *testing.T, s *stack, id, what string) string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		desc, err := s.tc.DescribeWorkflowExecution(context.Background(), id, "")
		if err == nil {
			for _, a := range desc.GetPendingActivities() {
				if f := a.GetLastFailure(); a.GetAttempt() >= 2 && f != nil {
					msg := fmt.Sprintf("%s: activity %s attempt %d after: %s", id, a.GetActivityType().GetName(), a.GetAttempt(), f.GetMessage())
					if strings.Contains(f.GetMessage(), what) {
						return msg
					}
					seen = append(seen, msg)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: no activity failed with %q; saw %v", id, what, seen)
	return ""
}

// findSecret searches a message marshalled as JSON (what the UI and
// `temporal workflow show` display) and every payload in it, decoded (the
// JSON shows payloads' data as base64).
func findSecret(m proto.Message, secret string) []string {
	b, err := protojson.Marshal(m)
	if err != nil {
		return []string{err.Error()}
	}
	found := findSecretIn(b, secret)
	walkMessages(m.ProtoReflect(), func(m protoreflect.Message) {
		if p, ok := m.Interface().(*commonpb.Payload); ok {
			for k, v := range p.GetMetadata() {
				found = append(found, findSecretIn(v, secret)...)
				if strings.Contains(k, secret) {
					found = append(found, "payload metadata key "+k)
				}
			}
			found = append(found, findSecretIn(p.GetData(), secret)...)
		}
	})
	return found
}

// base64Run is a run of characters that may be base64 (standard or URL
// alphabet) long enough to hide a secret.
var base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{12,}={0,2}`)

// findSecretIn searches b, and what base64 strings in b decode to (two
// levels deep: a []byte field of a payload's JSON is base64 again), and
// returns the places the secret was found, with some context.
func findSecretIn(b []byte, secret string) []string {
	return findSecretDepth(b, []byte(secret), 2)
}

func findSecretDepth(b, secret []byte, depth int) []string {
	var found []string
	for rest, off := b, 0; ; {
		i := bytes.Index(rest, secret)
		if i < 0 {
			break
		}
		at := off + i
		found = append(found, fmt.Sprintf("%q", b[max(0, at-80):min(len(b), at+len(secret)+80)]))
		rest, off = rest[i+len(secret):], at+len(secret)
	}
	if depth == 0 {
		return found
	}
	for _, run := range base64Run.FindAll(b, -1) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if d, err := enc.DecodeString(string(run)); err == nil {
				for _, f := range findSecretDepth(d, secret, depth-1) {
					found = append(found, "base64 "+f)
				}
				break
			}
		}
	}
	return found
}

// walkMessages calls fn for m and every message nested in it.
func walkMessages(m protoreflect.Message, fn func(protoreflect.Message)) {
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkMessages(l.Get(i).Message(), fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkMessages(mv.Message(), fn)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walkMessages(v.Message(), fn)
		}
		return true
	})
}

// The search sees a secret however it is stored: in a failure message, in
// a payload (base64 in the JSON), and base64 again inside a payload's JSON
// (a []byte field).
func TestFindSecretSeesThroughEncodings(t *testing.T) {
	const secret = "s3cr3t-k3y-value"
	inner := base64.StdEncoding.EncodeToString([]byte(`{"token":"` + secret + `"}`))
	for name, ev := range map[string]*historypb.HistoryEvent{
		"failure": {Attributes: &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{
			ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{
				Failure: &failurepb.Failure{Message: "call failed: Authorization: Bearer " + secret},
			}}},
		"payload": {Attributes: &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{
			ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{
				Result: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Data: []byte(`{"Key":"` + secret + `"}`)}}},
			}}},
		"bytes in a payload": {Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{
			WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{
				Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{"m": {Data: []byte(`{"Raw":"` + inner + `"}`)}}},
			}}},
	} {
		h := &historypb.History{Events: []*historypb.HistoryEvent{ev}}
		assert.NotEmpty(t, findSecret(h, secret), name)
		assert.Empty(t, findSecret(h, "not-"+secret), name)
	}
}
