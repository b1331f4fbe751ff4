// Command fakerunner stands in for the GitHub Actions runner in tests: a
// runner pool's RunnerCommand (or a run.sh stand-in) starts it on an
// (emulated) Dedalus machine. Like actions/runner, it takes its JIT config
// from -jitconfig (run.sh --jitconfig) or from the environment input
// ACTIONS_RUNNER_INPUT_JITCONFIG, and removes every ACTIONS_RUNNER_INPUT_*
// variable from its environment before it runs anything, so the job steps it
// runs do not inherit them (actions/runner's CommandSettings does the same).
//
// It claims a job from the GitHub test double (POST <github>/_test/runners/claim,
// polling while the answer is 204), tells Drydock the job is in progress
// with a signed workflow_job delivery (as GitHub would), "runs" it for the
// job's duration_ms, completes it on the double
// (POST <github>/_test/jobs/{id}/complete), sends the signed completed
// delivery and exits: JIT runners are single-use. With no job within -wait
// it exits 0, as an idle runner that is shut down would. With -step-env-dir
// it runs one job step per job, a child process with the runner's
// environment as a real job step has, which writes its environment to
// <dir>/job-<id>.env.
//
// Exit status: 0 after a job (or none within -wait); 1 when the double
// refuses the runner (removed, config reused or unreadable), the job cannot
// be completed, or a delivery could not be made; 2 for bad usage.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	inputs := takeInputs()
	getenv := func(k string) string {
		if v, ok := inputs[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	os.Exit(run(ctx, os.Args[1:], getenv, os.Stderr))
}

// inputPrefix is actions/runner's prefix for arguments passed in the
// environment (ACTIONS_RUNNER_INPUT_JITCONFIG is --jitconfig,
// ACTIONS_RUNNER_INPUT_TOKEN is config.sh's --token).
const inputPrefix = "ACTIONS_RUNNER_INPUT_"

// takeInputs returns the ACTIONS_RUNNER_INPUT_* variables and removes them
// from the process environment, as actions/runner does at start: nothing
// this runner starts (a job step) inherits them.
func takeInputs() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(k), inputPrefix) {
			out[strings.ToUpper(k)] = v
			os.Unsetenv(k)
		}
	}
	return out
}

// options are the command line.
type options struct {
	github, webhook, secret string
	wait, poll              time.Duration
	name, conclusion        string
	installationID          int64
	retries                 int
	// Persistent mode: -configure registers (config.sh) with -token or
	// ACTIONS_RUNNER_INPUT_TOKEN and writes -config-file; -persistent FILE
	// runs the service with that config.
	configure                         bool
	token, labels, configFile         string
	persistent, jitconfig, stepEnvDir string
	ignoredURL, ignoredWork           string
	ignoredUnattended, ignoredReplace bool
	// jobCommand, if set, is the job's steps: a shell script run for each
	// job (see runSteps); the job fails if it fails.
	jobCommand string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fakerunner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.github, "github", "", "base URL of the GitHub test double (required)")
	fs.StringVar(&o.webhook, "webhook", "", "Drydock's webhook URL (a bare origin gets /webhooks/github) (required)")
	fs.StringVar(&o.secret, "secret", "", "webhook secret to sign deliveries with")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to poll for a job before exiting")
	fs.DurationVar(&o.poll, "poll", 200*time.Millisecond, "interval between claims while no job is available")
	fs.StringVar(&o.name, "name", "", "runner name when the JIT config carries none")
	fs.StringVar(&o.conclusion, "conclusion", "", "conclusion to report (default: what the double planned, else success)")
	fs.Int64Var(&o.installationID, "installation-id", 0, "installation ID to put in the deliveries (0: none)")
	fs.IntVar(&o.retries, "retries", 5, "attempts per delivery or call on connection errors and 5xx")
	fs.BoolVar(&o.configure, "configure", false, "persistent mode, config.sh: register a runner with the registration token (-token, else ACTIONS_RUNNER_INPUT_TOKEN; needs -name, -labels and -config-file) and exit")
	fs.StringVar(&o.token, "token", "", "config.sh --token: the registration token (ACTIONS_RUNNER_INPUT_TOKEN keeps it out of the argv)")
	fs.StringVar(&o.ignoredURL, "url", "", "config.sh --url (ignored: the double is -github)")
	fs.StringVar(&o.ignoredWork, "work", "", "config.sh --work (ignored)")
	fs.BoolVar(&o.ignoredUnattended, "unattended", false, "config.sh --unattended (ignored)")
	fs.BoolVar(&o.ignoredReplace, "replace", false, "config.sh --replace (ignored)")
	fs.StringVar(&o.labels, "labels", "", "comma-separated labels of the runner to register")
	fs.StringVar(&o.configFile, "config-file", "", "where -configure writes the runner's config")
	fs.StringVar(&o.jitconfig, "jitconfig", "", "run.sh --jitconfig: the encoded JIT config (ACTIONS_RUNNER_INPUT_JITCONFIG keeps it out of the argv)")
	fs.StringVar(&o.stepEnvDir, "step-env-dir", "", "run one job step per job that writes its environment to <dir>/job-<id>.env")
	fs.StringVar(&o.persistent, "persistent", "", "persistent mode, the runner service: take job after job with the runner config in this file")
	fs.StringVar(&o.jobCommand, "job-command", "", "shell script run as each job's steps, in the job's workspace $HOME/actions-runner/_work/<repo>/<repo> (GITHUB_WORKSPACE, RUNNER_TEMP, FAKERUNNER_JOB_ID set); the job's conclusion is failure if it fails")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.github == "":
		return o, errors.New("-github is required")
	case o.webhook == "":
		return o, errors.New("-webhook is required")
	case o.retries < 1:
		return o, errors.New("-retries must be at least 1")
	case o.poll <= 0:
		return o, errors.New("-poll must be positive")
	}
	u, err := url.Parse(o.webhook)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return o, fmt.Errorf("-webhook %q is not an http(s) URL", o.webhook)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/webhooks/github"
		o.webhook = u.String()
	}
	o.github = strings.TrimRight(o.github, "/")
	return o, nil
}

// jitConfig is what this runner needs from its encoded JIT config: the
// GitHub double's configs are base64 JSON.
type jitConfig struct {
	Name       string `json:"name"`
	RunnerName string `json:"runner_name"`
	Scope      struct {
		Kind string `json:"kind"`
		Org  string `json:"org"`
	} `json:"scope"`
}

func decodeJIT(encoded string) (jitConfig, error) {
	var cfg jitConfig
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(strings.TrimSpace(encoded)); err == nil {
			break
		}
	}
	if err != nil {
		return cfg, errors.New("not base64")
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return cfg, errors.New("not JSON")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.RunnerName
	}
	return cfg, nil
}

// claim is the double's answer to a claim. duration_ms and conclusion may
// sit in the job or beside it.
type claim struct {
	Job struct {
		ID             int64     `json:"id"`
		RunID          int64     `json:"run_id"`
		Name           string    `json:"name"`
		WorkflowName   string    `json:"workflow_name"`
		Labels         []string  `json:"labels"`
		DurationMS     int64     `json:"duration_ms"`
		Owner          string    `json:"owner"`
		Repo           string    `json:"repo"`
		Org            string    `json:"org"`
		InstallationID int64     `json:"installation_id"`
		RunnerName     string    `json:"runner_name"`
		RunURL         string    `json:"run_url"`
		URL            string    `json:"url"`
		CreatedAt      time.Time `json:"created_at"`
	} `json:"job"`
	DurationMS int64  `json:"duration_ms"`
	Conclusion string `json:"conclusion"`
}

// errRefused is a claim the double will never grant.
var errRefused = errors.New("claim refused")

type runner struct {
	o         options
	log       *slog.Logger
	http      *http.Client
	jit       string    // the encoded config claims are made with
	cfg       jitConfig // what it says
	machineID string    // the machine this runner runs on, if known
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "fakerunner")
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "fakerunner:", err)
		}
		return 2
	}
	r := &runner{o: o, log: log, http: &http.Client{Timeout: 10 * time.Second}, machineID: getenv(emulatorMachineIDEnv)}
	switch {
	case o.configure:
		if r.o.token == "" {
			r.o.token = getenv(inputPrefix + "TOKEN")
		}
		return r.register(ctx, stderr)
	case o.persistent != "":
		return r.persistentLoop(ctx, stderr)
	}
	encoded := o.jitconfig
	if encoded == "" {
		encoded = getenv(inputPrefix + "JITCONFIG")
	}
	if strings.TrimSpace(encoded) == "" {
		fmt.Fprintln(stderr, "fakerunner: no JIT config: neither -jitconfig nor ACTIONS_RUNNER_INPUT_JITCONFIG is set")
		return 2
	}
	cfg, err := decodeJIT(encoded)
	if err != nil && o.name == "" {
		fmt.Fprintf(stderr, "fakerunner: JIT config: %v (and no -name)\n", err)
		return 2
	}
	name := cfg.Name
	if name == "" {
		name = o.name
	}
	r.jit, r.cfg = encoded, cfg
	r.log = log.With("runner", name)

	r.log.Info("waiting for a job", "github", o.github, "wait", o.wait)
	c, ok, err := r.claim(ctx, o.wait)
	switch {
	case err != nil:
		r.log.Error("claim failed", "err", err)
		return 1
	case !ok:
		r.log.Info("no job; exiting")
		return 0
	}
	if err := r.work(ctx, c, name); err != nil {
		r.log.Error("job failed", "err", err)
		return 1
	}
	r.log.Info("job done; exiting")
	return 0
}

// emulatorMachineIDEnv is what the emulator sets in every process of a
// machine (emulator.EnvMachineID): the runner reports it on claims, so a
// test knows which machine a busy runner is on.
const emulatorMachineIDEnv = "DEDALUS_MACHINE_ID"

// work runs one claimed job: in_progress delivery, the job's duration,
// completion on the double, completed delivery.
func (r *runner) work(ctx context.Context, c claim, name string) error {
	job := c.Job
	if name == "" {
		name = job.RunnerName
	}
	if job.Owner == "" || job.Repo == "" {
		job.Owner, job.Repo = repoFromURL(job.RunURL)
		if job.Owner == "" {
			job.Owner, job.Repo = repoFromURL(job.URL)
		}
	}
	if job.Org == "" && r.cfg.Scope.Kind == "org" {
		job.Org = r.cfg.Scope.Org
	}
	if job.InstallationID == 0 {
		job.InstallationID = r.o.installationID
	}
	duration := time.Duration(max(job.DurationMS, c.DurationMS)) * time.Millisecond
	conclusion := cmp.Or(r.o.conclusion, c.Conclusion, "success")
	log := r.log.With("job_id", job.ID, "repo", job.Owner+"/"+job.Repo)
	log.Info("job claimed", "name", job.Name, "labels", job.Labels, "duration", duration)

	fj := ghfixture.Job{ID: job.ID, RunID: job.RunID, Name: job.Name, WorkflowName: job.WorkflowName, Owner: job.Owner, Repo: job.Repo,
		Org: job.Org, Labels: job.Labels, RunnerName: name, InstallationID: job.InstallationID, CreatedAt: job.CreatedAt,
		StartedAt: time.Now()} // picked up now: in_progress and completed both say so
	var failed error
	if err := r.deliver(ctx, "in_progress", fj); err != nil {
		log.Error("in_progress delivery failed", "err", err)
		failed = err
	}
	if err := r.step(ctx, job.ID); err != nil {
		log.Error("job step failed", "err", err)
		failed = err
	}
	started := time.Now()
	if r.o.jobCommand != "" {
		if err := r.runSteps(ctx, job.ID, job.Repo); err != nil {
			log.Error("job steps failed", "err", err)
			conclusion = "failure"
		}
	}
	select {
	case <-time.After(duration - time.Since(started)):
	case <-ctx.Done():
		return fmt.Errorf("stopped while running the job: %w", ctx.Err())
	}
	if err := r.jobCompletedHook(ctx, job.ID, job.Repo); err != nil {
		log.Error("job-completed hook failed", "err", err)
		conclusion = "failure"
	}
	if err := r.complete(ctx, job.ID, conclusion); err != nil {
		return fmt.Errorf("completing the job: %w", err)
	}
	fj.Conclusion = conclusion
	if err := r.deliver(ctx, "completed", fj); err != nil {
		log.Error("completed delivery failed", "err", err)
		failed = err
	}
	log.Info("job done", "conclusion", conclusion)
	return failed
}

// step runs the job's one step (with -step-env-dir): a child process
// with this runner's environment, as actions/runner's job steps inherit the
// runner's, which writes it to <dir>/job-<id>.env (whole, via a rename).
func (r *runner) step(ctx context.Context, jobID int64) error {
	if r.o.stepEnvDir == "" {
		return nil
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", "env").Output()
	if err != nil {
		return fmt.Errorf("step: %w", err)
	}
	file := filepath.Join(r.o.stepEnvDir, fmt.Sprintf("job-%d.env", jobID))
	if err := os.WriteFile(file+".part", out, 0o600); err != nil {
		return err
	}
	return os.Rename(file+".part", file)
}

// runSteps runs -job-command as actions/runner runs a job's steps: in the
// workspace $HOME/actions-runner/_work/<repo>/<repo>, with RUNNER_TEMP
// $HOME/actions-runner/_work/_temp. Its output goes to the runner's
// output; whatever it starts in the background may outlive it.
func (r *runner) runSteps(ctx context.Context, jobID int64, repo string) error {
	ws, temp, err := workspace(repo)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", r.o.jobCommand)
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), "GITHUB_WORKSPACE="+ws, "RUNNER_TEMP="+temp, fmt.Sprintf("FAKERUNNER_JOB_ID=%d", jobID))
	// Files, not pipes: the runner does not wait for what the steps leave
	// running in the background.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// jobCompletedHook runs the script ACTIONS_RUNNER_HOOK_JOB_COMPLETED names
// (if set), as actions/runner does after a job's steps and before it
// reports the job complete: in the job's workspace, with its variables; a
// failing hook fails the job.
func (r *runner) jobCompletedHook(ctx context.Context, jobID int64, repo string) error {
	hook := os.Getenv("ACTIONS_RUNNER_HOOK_JOB_COMPLETED")
	if hook == "" {
		return nil
	}
	ws, temp, err := workspace(repo)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "sh", hook)
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), "GITHUB_WORKSPACE="+ws, "RUNNER_TEMP="+temp, fmt.Sprintf("FAKERUNNER_JOB_ID=%d", jobID))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// loadDotEnv sets the KEY=VALUE lines of a runner's .env file (if there is
// one) in this process's environment.
func loadDotEnv(path string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k != "" && !strings.HasPrefix(k, "#") {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return nil
}

// workspace makes a job's workspace $HOME/actions-runner/_work/<repo>/<repo>
// and its RUNNER_TEMP $HOME/actions-runner/_work/_temp (when missing).
func workspace(repo string) (ws, temp string, err error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", "", err
	}
	if repo == "" {
		repo = "repo"
	}
	work := filepath.Join(home, "actions-runner", "_work")
	ws, temp = filepath.Join(work, repo, repo), filepath.Join(work, "_temp")
	for _, d := range []string{ws, temp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
	}
	return ws, temp, nil
}

// register is config.sh: it registers a persistent runner with a
// registration token and writes the runner's config to -config-file.
func (r *runner) register(ctx context.Context, stderr io.Writer) int {
	if r.o.name == "" || r.o.labels == "" || r.o.configFile == "" || r.o.token == "" {
		fmt.Fprintln(stderr, "fakerunner: -configure needs -name, -labels, -config-file and a token (-token or ACTIONS_RUNNER_INPUT_TOKEN)")
		return 2
	}
	body, _ := json.Marshal(map[string]any{"token": r.o.token, "name": r.o.name, "labels": strings.Split(r.o.labels, ",")})
	var out []byte
	err := r.retry(ctx, "register runner", func() (int, []byte, error) {
		status, b, err := r.post(ctx, r.o.github+"/_test/runners/register", nil, body)
		out = b
		return status, b, err
	})
	if err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 1
	}
	var ans struct {
		RunnerConfig string `json:"runner_config"`
	}
	if err := json.Unmarshal(out, &ans); err != nil || ans.RunnerConfig == "" {
		fmt.Fprintf(stderr, "fakerunner: register answer %q: no runner config\n", out)
		return 1
	}
	if err := os.WriteFile(r.o.configFile, []byte(ans.RunnerConfig), 0o600); err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 1
	}
	r.log.Info("persistent runner registered", "runner", r.o.name)
	return 0
}

// persistentLoop is a persistent runner's service: it takes job after job
// until it is stopped (its machine deleted), polling while none is queued.
func (r *runner) persistentLoop(ctx context.Context, stderr io.Writer) int {
	b, err := os.ReadFile(r.o.persistent)
	if err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 2
	}
	r.jit = strings.TrimSpace(string(b))
	if r.cfg, err = decodeJIT(r.jit); err != nil {
		fmt.Fprintf(stderr, "fakerunner: %s: %v\n", r.o.persistent, err)
		return 2
	}
	r.log = r.log.With("runner", r.cfg.Name, "mode", "persistent")
	// Like actions/runner, the service reads the runner directory's .env
	// (KEY=VALUE lines) into its environment when it starts.
	if err := loadDotEnv(filepath.Join(filepath.Dir(r.o.persistent), ".env")); err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 2
	}
	r.log.Info("listening for jobs", "github", r.o.github)
	for ctx.Err() == nil {
		c, ok, err := r.claim(ctx, time.Minute)
		switch {
		case err != nil && errors.Is(err, errRefused):
			r.log.Error("runner refused; exiting", "err", err)
			return 1
		case err != nil:
			r.log.Warn("claim failed; retrying", "err", err)
			continue
		case !ok:
			continue
		}
		if err := r.work(ctx, c, r.cfg.Name); err != nil {
			r.log.Error("job failed", "err", err)
		}
	}
	return 0
}

// repoFromURL finds owner and repo in a REST URL (.../repos/{owner}/{repo}/...).
func repoFromURL(s string) (string, string) {
	_, rest, ok := strings.Cut(s, "/repos/")
	if !ok {
		return "", ""
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 {
		return "", ""
	}
	return parts[0], parts[1]
}

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
