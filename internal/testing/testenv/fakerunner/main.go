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
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
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
	fs := o.flagSet(stderr)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	err := o.check()
	return o, err
}

// flagSet is the command line's flags, bound to o's fields.
func (o *options) flagSet(stderr io.Writer) *flag.FlagSet {
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
	return fs
}

// check checks the parsed options and completes them: a bare webhook
// origin gets /webhooks/github, the double's URL loses its trailing slash.
func (o *options) check() error {
	switch {
	case o.github == "":
		return errors.New("-github is required")
	case o.webhook == "":
		return errors.New("-webhook is required")
	case o.retries < 1:
		return errors.New("-retries must be at least 1")
	case o.poll <= 0:
		return errors.New("-poll must be positive")
	}
	u, err := url.Parse(o.webhook)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-webhook %q is not an http(s) URL", o.webhook)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/webhooks/github"
		o.webhook = u.String()
	}
	o.github = strings.TrimRight(o.github, "/")
	return nil
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
	Job        claimedJob `json:"job"`
	DurationMS int64      `json:"duration_ms"`
	Conclusion string     `json:"conclusion"`
}

// claimedJob is the job of a claim.
type claimedJob struct {
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
	return r.runJIT(ctx, getenv, stderr)
}

// runJIT is run.sh --jitconfig: it claims one job with the JIT config of
// -jitconfig or ACTIONS_RUNNER_INPUT_JITCONFIG, runs it and exits.
func (r *runner) runJIT(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	o, log := r.o, r.log
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
	return r.claimAndWork(ctx, name)
}

// claimAndWork waits (-wait at most) for a job and runs it.
func (r *runner) claimAndWork(ctx context.Context, name string) int {
	r.log.Info("waiting for a job", "github", r.o.github, "wait", r.o.wait)
	c, ok, err := r.claim(ctx, r.o.wait)
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
