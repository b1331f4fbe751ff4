package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// EnvPrefix is the prefix of the emulator's environment variables.
const EnvPrefix = "DEDALUS_EMULATOR"

// Defaults.
const (
	DefaultAddr             = "127.0.0.1:8788"
	DefaultAPIKey           = "dedalus-local-dev-key"
	DefaultBootDelay        = time.Second
	DefaultWakeDelay        = 300 * time.Millisecond
	DefaultSleepDelay       = 100 * time.Millisecond
	DefaultDefaultAutosleep = 5 * time.Minute
	DefaultOutputCap        = 1 << 20
	DefaultTombstoneTTL     = 10 * time.Minute
	DefaultIdempotencyTTL   = 24 * time.Hour
	DefaultRetryAfterMS     = 100
	MaxBodyBytes            = 1 << 20
)

// Config configures a Server. Every field can come from the environment
// (prefix DEDALUS_EMULATOR_, see LoadConfig) or from flags (BindFlags).
//
// In a Config passed to New, a zero value means the default. For the delays a
// negative value means "no delay".
type Config struct {
	// Addr is the listen address; it must be a loopback address.
	Addr string `envconfig:"ADDR" default:"127.0.0.1:8788" desc:"listen address (loopback only)"`
	// APIKey is the only API key the emulator accepts.
	APIKey string `envconfig:"API_KEY" default:"dedalus-local-dev-key" desc:"API key clients must send"`
	// OrgID, when set, makes requests carrying a different X-Dedalus-Org-Id fail with 403.
	OrgID string `envconfig:"ORG_ID" desc:"org ID; requests with another X-Dedalus-Org-Id get 403 (empty: any)"`
	// DataDir holds the machines' directories; empty means a fresh temp dir removed on Close.
	DataDir string `envconfig:"DATA_DIR" desc:"data directory (empty: a temp dir removed on close)"`
	// BootDelay is how long a new machine takes from accepted to running.
	BootDelay time.Duration `envconfig:"BOOT_DELAY" default:"1s" desc:"create: accepted -> running delay"`
	// WakeDelay is how long a wake (snapshot restore) takes.
	WakeDelay time.Duration `envconfig:"WAKE_DELAY" default:"300ms" desc:"wake: sleeping -> running delay"`
	// SleepDelay is how long a sleep (and the destroying phase) takes.
	SleepDelay time.Duration `envconfig:"SLEEP_DELAY" default:"100ms" desc:"sleep: running -> sleeping delay (also destroying -> destroyed)"`
	// DefaultAutosleep is the idle window of machines created without autosleep.
	DefaultAutosleep time.Duration `envconfig:"DEFAULT_AUTOSLEEP" default:"5m" desc:"idle window of machines created without autosleep"`
	// OutputCap is the number of bytes captured per execution output stream.
	OutputCap int64 `envconfig:"OUTPUT_CAP" default:"1048576" desc:"bytes of stdout/stderr kept per execution stream"`
	// Faults are the initial fault-injection rules (JSON in the environment/flag).
	Faults Faults `envconfig:"FAULTS" desc:"fault injection rules as JSON, e.g. {\"routes\":{\"*\":{\"error_503\":0.1}}}"`
	// Seed seeds the fault-injection random source; 0 picks a random seed.
	Seed int64 `envconfig:"SEED" desc:"random seed for fault injection (0: random)"`
	// MaxMachines, when positive, is the account's machine quota: a create
	// while that many machines are not destroyed is refused with 403
	// QUOTA_EXCEEDED, as a provider refuses one past a plan's limit.
	MaxMachines int `envconfig:"MAX_MACHINES" desc:"machine quota: a create while this many machines exist gets 403 QUOTA_EXCEEDED (0: none)"`
	// TombstoneTTL is how long a destroyed machine stays readable.
	TombstoneTTL time.Duration `envconfig:"TOMBSTONE_TTL" default:"10m" desc:"how long destroyed machines stay readable"`
	// IdempotencyTTL is how long idempotency records are kept.
	IdempotencyTTL time.Duration `envconfig:"IDEMPOTENCY_TTL" default:"24h" desc:"how long idempotency keys are remembered"`
	// Logger receives the emulator's logs; nil means slog.Default().
	Logger *slog.Logger `ignored:"true"`
	// Observe, when set, is called for every API call that passed
	// authentication, fault-injected ones included: with the call's
	// operationId ("wakeMachine"), the machine it names ("" for
	// listMachines and createMachine) and when the request reached the
	// emulator. It tells a benchmark when a call got to Dedalus. It runs on
	// the request's goroutine before the call is processed: it must be
	// quick and safe for concurrent use. /_local/* is not observed.
	Observe func(op, machineID string, at time.Time) `ignored:"true"`

	keepalive time.Duration // SSE keepalive interval (tests)
}

// LoadConfig reads the configuration from DEDALUS_EMULATOR_* environment
// variables, with the documented defaults.
func LoadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process(EnvPrefix, &c); err != nil {
		return Config{}, err
	}
	// Defaults are applied already: a zero delay here was asked for explicitly.
	for _, d := range []*time.Duration{&c.BootDelay, &c.WakeDelay, &c.SleepDelay} {
		if *d == 0 {
			*d = -1
		}
	}
	return c, nil
}

// delayFlag is a flag.Value for a delay: an explicit 0 is stored as -1
// ("no delay"), since a zero Config delay means the default.
type delayFlag struct{ d *time.Duration }

func (f delayFlag) String() string {
	if f.d == nil || *f.d < 0 {
		return "0s"
	}
	return f.d.String()
}

func (f delayFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		v = -1
	}
	*f.d = v
	return nil
}

// BindFlags registers one flag per Config field on fs (--addr, --api-key,
// --boot-delay, ...). Each flag's default is the field's current value (so load
// the environment first to let flags override it), and its usage names the
// environment variable and the built-in default.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		env := f.Tag.Get("envconfig")
		if env == "" || f.Tag.Get("ignored") == "true" {
			continue
		}
		name := strings.ToLower(strings.ReplaceAll(env, "_", "-"))
		def := f.Tag.Get("default")
		if def == "" {
			def = "none"
			if f.Type.Kind() == reflect.Int64 {
				def = "0"
			}
		}
		usage := fmt.Sprintf("%s [env %s_%s, default %s]", f.Tag.Get("desc"), EnvPrefix, env, def)
		p := v.Field(i).Addr().Interface()
		switch p := p.(type) {
		case *string:
			fs.StringVar(p, name, *p, usage)
		case *time.Duration:
			if strings.HasSuffix(env, "_DELAY") {
				fs.Var(delayFlag{p}, name, usage)
			} else {
				fs.DurationVar(p, name, *p, usage)
			}
		case *int64:
			fs.Int64Var(p, name, *p, usage)
		case flag.Value:
			fs.Var(p, name, usage)
		}
	}
}

// withDefaults fills zero fields with defaults and turns negative delays into 0.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.APIKey == "" {
		c.APIKey = DefaultAPIKey
	}
	def := func(d *time.Duration, dflt time.Duration) {
		switch {
		case *d == 0:
			*d = dflt
		case *d < 0:
			*d = 0
		}
	}
	def(&c.BootDelay, DefaultBootDelay)
	def(&c.WakeDelay, DefaultWakeDelay)
	def(&c.SleepDelay, DefaultSleepDelay)
	if c.DefaultAutosleep == 0 {
		c.DefaultAutosleep = DefaultDefaultAutosleep
	}
	if c.OutputCap <= 0 {
		c.OutputCap = DefaultOutputCap
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = DefaultTombstoneTTL
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// checkLoopback refuses listen addresses that are not on a loopback interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("emulator: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("emulator: refusing to listen on non-loopback address %q: the emulator runs real processes without isolation, use 127.0.0.1 or [::1]", addr)
	}
	return nil
}

// FaultRule is the fault injection of one route (or of all routes, "*").
// Probabilities are in [0, 1]. At most one fault hits a request, tried in the
// order reset, error_503, error_429, reset_after; latency applies to every
// request that gets processed.
type FaultRule struct {
	// Error503 answers 503 DEPENDENCY_UNAVAILABLE "runtime unavailable" before processing.
	Error503 float64 `json:"error_503,omitempty"`
	// Error429 answers 429 RATE_LIMITED "mutation rate limit exceeded" before processing.
	Error429 float64 `json:"error_429,omitempty"`
	// RetryAfterMS is the retry_after_ms of injected 429s (default 100).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// Reset resets the connection before processing.
	Reset float64 `json:"reset,omitempty"`
	// ResetAfter processes the request fully, then resets the connection
	// instead of answering (a lost response after the side effect).
	ResetAfter float64 `json:"reset_after,omitempty"`
	// LatencyMS delays processing (after the idempotency key is marked in flight).
	LatencyMS int64 `json:"latency_ms,omitempty"`
}

func (r FaultRule) validate(name string) error {
	for _, p := range []struct {
		n string
		v float64
	}{{"error_503", r.Error503}, {"error_429", r.Error429}, {"reset", r.Reset}, {"reset_after", r.ResetAfter}} {
		if p.v < 0 || p.v > 1 {
			return fmt.Errorf("faults: routes[%s].%s = %v: want a probability in [0, 1]", name, p.n, p.v)
		}
	}
	if r.LatencyMS < 0 || r.RetryAfterMS < 0 {
		return fmt.Errorf("faults: routes[%s]: latency_ms and retry_after_ms must not be negative", name)
	}
	return nil
}

// Faults is the fault-injection configuration, as read and written by
// GET/PUT /_local/faults:
//
//	{"routes": {"createMachine": {"error_503": 0.2, "latency_ms": 50}, "*": {"reset": 0.01}},
//	 "boot_delay": "1s", "wake_delay": "300ms", "sleep_delay": "100ms"}
//
// Routes are keyed by the spec's operationId or "*"; a route's own rule takes
// precedence over "*" (rules are not merged). Setting Faults replaces Routes;
// delays that are nil (absent in JSON) keep their current value. Delays are
// Go durations ("250ms") or integer milliseconds.
type Faults struct {
	Routes     map[string]FaultRule `json:"routes"`
	BootDelay  *Duration            `json:"boot_delay,omitempty"`
	WakeDelay  *Duration            `json:"wake_delay,omitempty"`
	SleepDelay *Duration            `json:"sleep_delay,omitempty"`
}

// Decode implements envconfig.Decoder: the FAULTS variable holds JSON.
func (f *Faults) Decode(s string) error {
	if strings.TrimSpace(s) == "" {
		*f = Faults{}
		return nil
	}
	var nf Faults
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&nf); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	if err := nf.validate(); err != nil {
		return err
	}
	*f = nf
	return nil
}

// Set implements flag.Value.
func (f *Faults) Set(s string) error { return f.Decode(s) }

// String implements flag.Value.
func (f *Faults) String() string {
	if f == nil || (len(f.Routes) == 0 && f.BootDelay == nil && f.WakeDelay == nil && f.SleepDelay == nil) {
		return ""
	}
	b, _ := json.Marshal(f)
	return string(b)
}

func (f Faults) validate() error {
	for name, r := range f.Routes {
		if name != "*" && !knownOperation(name) {
			return fmt.Errorf("faults: unknown route %q (use an operationId such as createMachine, or *)", name)
		}
		if err := r.validate(name); err != nil {
			return err
		}
	}
	for _, d := range []*Duration{f.BootDelay, f.WakeDelay, f.SleepDelay} {
		if d != nil && *d < 0 {
			return errors.New("faults: delays must not be negative")
		}
	}
	return nil
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("250ms"); integer JSON numbers are read as milliseconds.
type Duration time.Duration

// D returns a pointer to d as a Duration, for Faults literals.
func D(d time.Duration) *Duration { x := Duration(d); return &x }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration %s: want a string like \"250ms\" or integer milliseconds", b)
	}
	*d = Duration(time.Duration(ms) * time.Millisecond)
	return nil
}
