package githubtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/pools"
)

// Runner is a self-hosted runner registered with the double.
type Runner struct {
	ID        int64
	Name      string
	OS        string // "unknown" until the runner first connects (claims), then "Linux"
	Status    string // "offline" until the runner connects, then "online"
	Busy      bool   // running a job
	Ephemeral bool   // a JIT runner: single use, deleted when its job completes
	Labels    []string
	GroupID   int64
	Scope     pools.Scope
	JobID     int64 // the job it took (persistent runners: the job it runs now); 0 before
	// MachineID is the Dedalus machine the stand-in runner said it runs on
	// (DEDALUS_MACHINE_ID in its environment) when it claimed: not
	// GitHub's, a test's way to tell which machine a busy runner is on.
	MachineID string
}

type runnerState struct {
	Runner
	scope     string // scopeKey(Scope)
	labelIDs  []int64
	config    string // the encoded JIT config ("" for none)
	used      bool   // the JIT config was handed a job
	createdAt time.Time
}

// runnerJSON is GitHub's runner object.
type runnerJSON struct {
	ID        int64         `json:"id"`
	Name      string        `json:"name"`
	OS        string        `json:"os"`
	Status    string        `json:"status"`
	Busy      bool          `json:"busy"`
	Ephemeral bool          `json:"ephemeral"`
	Labels    []runnerLabel `json:"labels"`
}

type runnerLabel struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"` // "custom" (JIT labels) or "read-only" (GitHub's defaults)
}

func (r *runnerState) json() runnerJSON {
	out := runnerJSON{ID: r.ID, Name: r.Name, OS: r.OS, Status: r.Status, Busy: r.Busy, Ephemeral: r.Ephemeral, Labels: []runnerLabel{}}
	for i, l := range r.Labels {
		out.Labels = append(out.Labels, runnerLabel{ID: r.labelIDs[i], Name: l, Type: "custom"})
	}
	return out
}

func (r *runnerState) itemID() int64 { return r.ID }

func (r *runnerState) snapshot() Runner {
	out := r.Runner
	out.Labels = slices.Clone(r.Labels)
	return out
}

// JITConfig is what the double's encoded JIT configs carry (base64 of this
// JSON). On GitHub the encoded config is opaque to Drydock: only the runner
// (here, a stand-in runner program) reads it.
type JITConfig struct {
	Kind     string      `json:"kind"` // JITConfigKind
	URL      string      `json:"url"`  // the double's origin: POST {url}/_test/runners/claim
	RunnerID int64       `json:"runner_id"`
	Name     string      `json:"runner_name"`
	Labels   []string    `json:"labels"`
	Scope    pools.Scope `json:"scope"`
	Secret   string      `json:"secret"` // makes every config unique, as GitHub's credentials do
}

// JITConfigKind marks the double's JIT configs.
const JITConfigKind = "drydock-githubtest-jit"

// DecodeJITConfig reads an encoded JIT config the double issued.
func DecodeJITConfig(encoded string) (JITConfig, error) {
	b, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return JITConfig{}, fmt.Errorf("JIT config is not base64: %w", err)
	}
	var cfg JITConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return JITConfig{}, fmt.Errorf("JIT config is not JSON: %w", err)
	}
	if cfg.Kind != JITConfigKind || cfg.RunnerID == 0 {
		return JITConfig{}, errors.New("not a JIT config of the GitHub double")
	}
	return cfg, nil
}

func randomToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// runnerNamed finds a registered runner of scope key sk by name (GitHub
// compares runner names case-insensitively). Callers hold s.mu.
func (a *actionsState) runnerNamed(sk, name string) *runnerState {
	for _, r := range a.runners {
		if r.scope == sk && strings.EqualFold(r.Name, name) {
			return r
		}
	}
	return nil
}

// runnerByID finds a registered runner. Callers hold s.mu.
func (a *actionsState) runnerByID(id int64) *runnerState { return byID(a.runners, id) }

// deleteRunner deregisters r. Callers hold s.mu.
func (a *actionsState) deleteRunner(r *runnerState) {
	a.runners = slices.DeleteFunc(a.runners, func(x *runnerState) bool { return x == r })
}

func (s *Server) generateJITConfig(c *call) {
	var body struct {
		Name          string   `json:"name"`
		RunnerGroupID *int64   `json:"runner_group_id"`
		Labels        []string `json:"labels"`
		WorkFolder    string   `json:"work_folder"`
	}
	if !decodeBody(c, &body) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.scopeOf(c)
	if sc == nil {
		return
	}
	switch {
	case strings.TrimSpace(body.Name) == "":
		writeValidation(c.w, "Invalid request.\n\n\"name\" wasn't supplied.", "Runner", "name", "missing_field")
		return
	case body.RunnerGroupID == nil:
		writeValidation(c.w, "Invalid request.\n\n\"runner_group_id\" wasn't supplied.", "Runner", "runner_group_id", "missing_field")
		return
	case *body.RunnerGroupID <= 0:
		writeError(c.w, http.StatusNotFound, "Runner group not found")
		return
	case len(body.Labels) == 0 || len(body.Labels) > 100:
		writeValidation(c.w, "Invalid request.\n\n\"labels\" must have between 1 and 100 items.", "Runner", "labels", "invalid")
		return
	}
	a := s.actions()
	sk := scopeKey(*sc)
	if a.runnerNamed(sk, body.Name) != nil {
		writeError(c.w, http.StatusConflict, "Already exists - A runner with the name "+body.Name+" already exists.")
		return
	}
	r := s.newRunner(c, sk, Runner{
		Name: body.Name, OS: "unknown", Status: "offline", Ephemeral: true,
		Labels: slices.Clone(body.Labels), GroupID: *body.RunnerGroupID, Scope: *sc,
	})
	a.jitConfigs = append(a.jitConfigs, r.config)
	writeJSON(c.w, http.StatusCreated, map[string]any{"runner": r.json(), "encoded_jit_config": r.config})
}

// newRunner registers runner rn in scope key sk with a fresh ID and label
// IDs, and an encoded config that sends its claims to the double's origin.
// Callers hold s.mu.
func (s *Server) newRunner(c *call, sk string, rn Runner) *runnerState {
	rn.ID = s.id()
	r := &runnerState{Runner: rn, scope: sk, createdAt: now()}
	for range r.Labels {
		r.labelIDs = append(r.labelIDs, s.id())
	}
	cfg, _ := json.Marshal(JITConfig{
		Kind: JITConfigKind, URL: c.origin, RunnerID: r.ID, Name: r.Name, Labels: r.Labels, Scope: rn.Scope, Secret: randomToken(32),
	})
	r.config = base64.StdEncoding.EncodeToString(cfg)
	a := s.actions()
	a.runners = append(a.runners, r)
	return r
}

// JITConfigs returns every encoded JIT config issued so far, in order: the
// runners' credentials, for tests that check where they end up.
func (s *Server) JITConfigs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.actions().jitConfigs)
}

// OnRunnerRegister registers fn to run when a runner registers with a
// registration token (ControlRegisterRunner, config.sh), before the double
// answers: the registering process is still running, waiting for the
// answer. fn runs without the double's lock held.
func (s *Server) OnRunnerRegister(fn func(name string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions()
	a.onRegister = append(a.onRegister, fn)
}

func (s *Server) createRegistrationToken(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.scopeOf(c)
	if sc == nil {
		return
	}
	tok := randomToken(29)
	a := s.actions()
	a.tokens = append(a.tokens, tok)
	a.tokenScope[tok] = *sc
	// GitHub reports the expiry with the server's offset, an hour from now.
	writeJSON(c.w, http.StatusCreated, map[string]any{"token": tok, "expires_at": now().Add(time.Hour).Format(time.RFC3339)})
}

// RegistrationTokens returns every runner registration token issued so far, in order.
func (s *Server) RegistrationTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.actions().tokens)
}

func (s *Server) listRunners(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.scopeOf(c)
	if sc == nil {
		return
	}
	sk, name := scopeKey(*sc), c.r.URL.Query().Get("name")
	var all []runnerJSON
	for _, r := range s.actions().runners {
		if r.scope == sk && (name == "" || strings.EqualFold(r.Name, name)) {
			all = append(all, r.json())
		}
	}
	page := paginate(c, all)
	writeJSON(c.w, http.StatusOK, map[string]any{"total_count": len(all), "runners": page})
}

// runnerFor finds the runner the path names in the path's scope, or answers 404.
// Callers hold s.mu.
func (s *Server) runnerFor(c *call) *runnerState {
	sc := s.scopeOf(c)
	if sc == nil {
		return nil
	}
	id, err := strconv.ParseInt(c.r.PathValue("runner_id"), 10, 64)
	r := s.actions().runnerByID(id)
	if err != nil || r == nil || r.scope != scopeKey(*sc) {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return nil
	}
	return r
}

func (s *Server) getRunner(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.runnerFor(c); r != nil {
		writeJSON(c.w, http.StatusOK, r.json())
	}
}

func (s *Server) deleteRunner(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runnerFor(c)
	if r == nil {
		return
	}
	if r.Busy {
		writeError(c.w, http.StatusUnprocessableEntity, fmt.Sprintf("Bad request - Runner %q is still running a job", r.Name))
		return
	}
	s.actions().deleteRunner(r)
	c.w.WriteHeader(http.StatusNoContent)
}

// AllRunners lists the registered runners of every organization and
// repository.
func (s *Server) AllRunners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	return snapshots[Runner](s.actions().runners)
}

// RunnerByID is the registered runner with this ID, wherever it registered.
func (s *Server) RunnerByID(id int64) (Runner, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.actions().runnerByID(id); r != nil {
		return r.snapshot(), true
	}
	return Runner{}, false
}

// Runners returns the runners registered in scope (deleted ones are gone),
// oldest first.
func (s *Server) Runners(scope pools.Scope) []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := scopeKey(scope)
	var out []Runner
	for _, r := range s.actions().runners {
		if r.scope == sk {
			out = append(out, r.snapshot())
		}
	}
	return out
}

// registerRunner is ControlRegisterRunner: what actions/runner's config.sh
// does with a registration token. The runner is persistent (not
// ephemeral): it takes job after job through ControlClaimRunner with the
// config it gets back, and stays registered after each.
func (s *Server) registerRunner(c *call) {
	var body struct {
		Token  string   `json:"token"`
		Name   string   `json:"name"`
		Labels []string `json:"labels"`
	}
	if !decodeBody(c, &body) {
		return
	}
	s.mu.Lock()
	fns := slices.Clone(s.actions().onRegister)
	s.mu.Unlock()
	for _, fn := range fns {
		fn(body.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions()
	sc, ok := a.tokenScope[body.Token]
	switch {
	case !ok:
		writeError(c.w, http.StatusUnauthorized, "registration token not valid")
		return
	case strings.TrimSpace(body.Name) == "" || len(body.Labels) == 0:
		writeError(c.w, http.StatusBadRequest, "a runner needs a name and labels")
		return
	}
	sk := scopeKey(sc)
	if old := a.runnerNamed(sk, body.Name); old != nil {
		if old.Busy {
			writeError(c.w, http.StatusConflict, "A runner with the name "+body.Name+" is running a job")
			return
		}
		a.deleteRunner(old) // config.sh --replace
	}
	r := s.newRunner(c, sk, Runner{
		Name: body.Name, OS: "unknown", Status: "offline",
		Labels: slices.Clone(body.Labels), GroupID: 1, Scope: sc,
	})
	writeJSON(c.w, http.StatusCreated, map[string]any{"runner": r.json(), "runner_config": r.config})
}
