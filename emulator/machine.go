package emulator

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

const historyCap = 128

// machine is the emulator's state of one machine. Guarded by Server.mu.
type machine struct {
	id        string
	seq       int64
	vcpu      float64
	memoryMiB int64
	storGiB   int64
	autosleep time.Duration

	desired        dedalus.DesiredState
	phase          dedalus.MachinePhase
	reason         string
	revision       int64
	lastTransition time.Time
	lastProgress   time.Time
	createdAt      time.Time
	destroyedAt    time.Time

	dir, root, home string
	appPort         int

	op            int64 // lifecycle token: pending steps with another token are void
	wakeFromSleep bool  // the current starting phase restores a sleeping machine
	autoSleep     bool  // the current stopping phase was started by autosleep
	frozen        bool  // processes are SIGSTOPped

	history []dedalus.Machine // recent snapshots, ascending revision
	changed chan struct{}     // closed and replaced on every change

	lastActivity  time.Time
	activeProxies int
	runningExecs  int

	awakeAccum time.Duration
	awakeSince time.Time // zero while not awake

	pgids map[int]bool // process groups of executions

	ownFS bool // the machine has its own /etc and /home (userns.go)
	nsPid int  // its namespace holder, 0 before the first execution

	execs      map[string]*execution
	execOrder  []*execution
	strayPipes []*os.File // output pipes of deleted executions
	execSeq    int64

	previews     map[string]*preview
	previewOrder []*preview
	previewSeq   int64
}

func awakePhase(p dedalus.MachinePhase) bool {
	switch p {
	case dedalus.PhaseSleeping, dedalus.PhaseDestroyed, dedalus.PhaseFailed:
		return false
	}
	return true
}

func (m *machine) snapshot() dedalus.Machine {
	return dedalus.Machine{
		MachineID:    m.id,
		VCPU:         m.vcpu,
		MemoryMiB:    m.memoryMiB,
		StorageGiB:   m.storGiB,
		DesiredState: m.desired,
		Status: dedalus.LifecycleStatus{
			Phase:            m.phase,
			Reason:           m.reason,
			Retryable:        false,
			Revision:         strconv.FormatInt(m.revision, 10),
			LastTransitionAt: m.lastTransition,
			LastProgressAt:   m.lastProgress,
		},
		AutosleepSeconds: int64((m.autosleep + time.Second - 1) / time.Second),
	}
}

func (m *machine) etag() string { return strconv.FormatInt(m.revision, 10) }

func (m *machine) converged() bool { return m.phase == m.desired.Phase() }

func (m *machine) pgidSet() map[int]bool {
	out := make(map[int]bool, len(m.pgids))
	for k := range m.pgids {
		out[k] = true
	}
	return out
}

// closePipes closes the output pipes of every execution (unblocking readers
// held open by leftover background processes).
func (m *machine) closePipes() {
	for _, e := range m.execOrder {
		e.closePipes()
	}
	for _, f := range m.strayPipes {
		_ = f.Close()
	}
}

// record bumps the revision, appends the snapshot to the history and wakes watchers.
func (s *Server) record(m *machine, now time.Time) {
	m.revision++
	m.lastProgress = now
	m.history = append(m.history, m.snapshot())
	if len(m.history) > historyCap {
		m.history = append([]dedalus.Machine(nil), m.history[len(m.history)-historyCap:]...)
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// transition moves m to phase. Call with s.mu held.
func (s *Server) transition(m *machine, phase dedalus.MachinePhase, reason string) {
	now := time.Now()
	was, is := awakePhase(m.phase), awakePhase(phase)
	if was && !is {
		m.awakeAccum += now.Sub(m.awakeSince)
		m.awakeSince = time.Time{}
	} else if !was && is {
		m.awakeSince = now
	}
	old := m.phase
	m.phase, m.reason, m.lastTransition = phase, reason, now
	s.record(m, now)
	s.log.Info("machine transition", "machine_id", m.id, "from", old, "to", phase,
		"desired", m.desired, "revision", m.revision, "reason", reason)
}

// after runs fn under s.mu after d, unless m's lifecycle moved on (another
// operation started) or the server closed. Call with s.mu held.
func (s *Server) after(m *machine, d time.Duration, fn func()) {
	token := m.op
	s.goroutine(func() {
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.done:
				return
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || m.op != token {
			return
		}
		fn()
	})
}

func (s *Server) boot(m *machine) {
	half := s.bootDelay / 2
	s.after(m, half, func() {
		s.transition(m, dedalus.PhaseStarting, "booting")
		s.after(m, s.bootDelay-half, func() { s.becomeRunning(m, "machine running") })
	})
}

// becomeRunning completes a boot or wake. Call with s.mu held.
func (s *Server) becomeRunning(m *machine, reason string) {
	if m.frozen {
		thaw(m.id, m.pgids)
		m.frozen = false
	}
	s.transition(m, dedalus.PhaseRunning, reason)
	m.lastActivity = m.lastTransition
	m.markReady(m.lastTransition)
	if m.wakeFromSleep {
		s.counters.Wakes++
		m.wakeFromSleep = false
	}
	for _, e := range m.execOrder {
		if e.status == dedalus.ExecQueued || e.status == dedalus.ExecWakeInProgress {
			s.startExecution(m, e)
		}
	}
}

// beginSleep starts running -> stopping -> sleeping. Call with s.mu held.
func (s *Server) beginSleep(m *machine, auto bool) {
	m.op++
	m.desired = dedalus.DesiredSleeping
	m.autoSleep = auto
	reason := "sleep requested"
	if auto {
		reason = fmt.Sprintf("autosleep: idle for %s", m.autosleep)
	}
	s.transition(m, dedalus.PhaseStopping, reason)
	s.after(m, s.sleepDelay, func() {
		freeze(m.id, m.pgids)
		m.frozen = true
		reason := "snapshot saved"
		if m.autoSleep {
			reason = fmt.Sprintf("autosleep: snapshot saved after %s idle", m.autosleep)
		}
		s.transition(m, dedalus.PhaseSleeping, reason)
		s.counters.Sleeps++
		if m.autoSleep {
			s.counters.Autosleeps++
			m.autoSleep = false
		}
	})
}

// beginWake starts (sleeping|stopping) -> starting -> running. Call with s.mu held.
func (s *Server) beginWake(m *machine, reason string) {
	m.op++
	m.wakeFromSleep = m.phase == dedalus.PhaseSleeping
	m.autoSleep = false
	m.desired = dedalus.DesiredRunning
	s.transition(m, dedalus.PhaseStarting, reason)
	s.after(m, s.wakeDelay, func() { s.becomeRunning(m, "restored from snapshot") })
}

// beginDestroy starts -> destroying -> destroyed. Call with s.mu held.
func (s *Server) beginDestroy(m *machine) {
	m.op++
	m.desired = dedalus.DesiredDestroyed
	m.wakeFromSleep, m.autoSleep = false, false
	s.transition(m, dedalus.PhaseDestroying, "delete requested")
	s.counters.Deletes++
	for _, p := range m.previewOrder {
		p.shut()
	}
	for _, e := range m.execOrder {
		switch {
		case e.status == dedalus.ExecRunning:
			e.destroyed = true
		case !e.status.Terminal():
			s.finishPending(m, e, dedalus.ExecCancelled, ExecErrMachineDestroyed, "machine was destroyed before the execution started")
		}
	}
	killOnce(m.id, m.pgids)
	m.frozen = false
	pg := m.pgidSet()
	delay := s.sleepDelay
	s.goroutine(func() {
		start := time.Now()
		if left := killVerify(m.id, pg, 10*time.Second); left > 0 {
			s.log.Warn("processes survived SIGKILL", "machine_id", m.id, "count", left)
		}
		s.mu.Lock()
		m.closePipes()
		s.mu.Unlock()
		if err := os.RemoveAll(m.dir); err != nil {
			s.log.Warn("removing machine directory", "machine_id", m.id, "err", err)
		}
		if rest := delay - time.Since(start); rest > 0 {
			t := time.NewTimer(rest)
			select {
			case <-t.C:
			case <-s.done:
			}
			t.Stop()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.usedPorts, m.appPort)
		s.transition(m, dedalus.PhaseDestroyed, "machine destroyed")
		m.destroyedAt = time.Now()
	})
}

// autosleepTick sleeps idle running machines. Call with s.mu held.
func (s *Server) autosleepTick(now time.Time) {
	for _, m := range s.order {
		if m.phase != dedalus.PhaseRunning || m.desired != dedalus.DesiredRunning || m.autosleep <= 0 {
			continue
		}
		if m.runningExecs > 0 || m.activeProxies > 0 {
			continue
		}
		if now.Sub(m.lastActivity) >= m.autosleep {
			s.log.Info("autosleep", "machine_id", m.id, "idle", now.Sub(m.lastActivity).Round(time.Millisecond))
			s.beginSleep(m, true)
		}
	}
}

// ---- handlers ----

func (s *Server) lookup(id string) (*machine, *apiError) {
	m := s.machines[id]
	if m == nil {
		return nil, notFound("machine", id)
	}
	return m, nil
}

// checkIfMatch validates If-Match against the machine's revision. A missing
// header is accepted.
// lookupIfMatch finds the request's machine and checks its If-Match
// revision, as lifecycle mutations do. The caller holds s.mu.
func (s *Server) lookupIfMatch(c *call) (*machine, *apiError) {
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return nil, err
	}
	if err := checkIfMatch(c, m); err != nil {
		return nil, err
	}
	return m, nil
}

func checkIfMatch(c *call, m *machine) *apiError {
	h := strings.TrimSpace(c.r.Header.Get(dedalus.HeaderIfMatch))
	if h == "" {
		return nil
	}
	cur := m.etag()
	for _, v := range strings.Split(h, ",") {
		v = strings.TrimSpace(v)
		if v == "*" {
			return nil
		}
		v = strings.TrimPrefix(v, "W/")
		v = strings.Trim(v, `"`)
		if v == cur {
			return nil
		}
	}
	provided := strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	return revisionMismatch(cur, provided)
}

func invalidState(m *machine, target dedalus.DesiredState, expected dedalus.MachinePhase) *apiError {
	d := map[string]string{
		"current_desired_state":  string(m.desired),
		"current_observed_state": string(m.phase),
		"target_desired_state":   string(target),
	}
	if expected != "" {
		d["expected_observed_state"] = string(expected)
	}
	return errBody(http.StatusConflict, dedalus.CodeInvalidState,
		"requested lifecycle transition is invalid for current machine state", false, 0, d)
}

func machineResp(c *call, m *machine, status int) (int, any, error) {
	c.header.Set("ETag", m.etag())
	return status, m.snapshot(), nil
}

type createMachineBody struct {
	VCPU       *float64 `json:"vcpu"`
	MemoryMiB  *int64   `json:"memory_mib"`
	StorageGiB *int64   `json:"storage_gib"`
	Autosleep  *string  `json:"autosleep"`
}

func parseAutosleepField(v *string) (time.Duration, *apiError) {
	d, err := dedalus.ParseAutosleep(*v)
	if err != nil {
		return 0, validation("body.autosleep", err.Error(), *v)
	}
	return d, nil
}

func (s *Server) createMachine(c *call) (int, any, error) {
	var b createMachineBody
	if err := decodeBody(c.body, &b); err != nil {
		return 0, nil, err
	}
	switch {
	case b.VCPU == nil:
		return 0, nil, validation("body.vcpu", "required property is missing", nil)
	case *b.VCPU <= 0:
		return 0, nil, validation("body.vcpu", "must be greater than 0", *b.VCPU)
	case b.MemoryMiB == nil:
		return 0, nil, validation("body.memory_mib", "required property is missing", nil)
	case *b.MemoryMiB <= 0:
		return 0, nil, validation("body.memory_mib", "must be greater than 0", *b.MemoryMiB)
	case b.StorageGiB == nil:
		return 0, nil, validation("body.storage_gib", "required property is missing", nil)
	case *b.StorageGiB <= 0:
		return 0, nil, validation("body.storage_gib", "must be greater than 0", *b.StorageGiB)
	}
	autosleep := s.cfg.DefaultAutosleep
	if b.Autosleep != nil {
		d, err := parseAutosleepField(b.Autosleep)
		if err != nil {
			return 0, nil, err
		}
		autosleep = d
	}
	if autosleep < 0 {
		autosleep = 0
	}

	id := newID("dm-")
	dir := filepath.Join(s.dataDir, "machines", id)
	root := filepath.Join(dir, "root")
	home := filepath.Join(root, "root")
	for _, d := range []string{home, filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, nil, fmt.Errorf("creating machine directory: %w", err)
		}
	}

	ownFS := prepareMachineFS(root) == nil

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = os.RemoveAll(dir)
		return 0, nil, errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "runtime unavailable", true, 0, nil)
	}
	if q := s.cfg.MaxMachines; q > 0 && s.liveMachines() >= q {
		_ = os.RemoveAll(dir)
		return 0, nil, errBody(http.StatusForbidden, "QUOTA_EXCEEDED", fmt.Sprintf("machine quota reached: %d machines", q), false, 0,
			map[string]string{"quota": "machines", "limit": strconv.Itoa(q)})
	}
	port, err := s.freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return 0, nil, err
	}
	now := time.Now()
	s.seq++
	m := &machine{
		id: id, seq: s.seq, vcpu: *b.VCPU, memoryMiB: *b.MemoryMiB, storGiB: *b.StorageGiB,
		autosleep: autosleep, desired: dedalus.DesiredRunning, phase: dedalus.PhaseAccepted,
		reason: "machine accepted", lastTransition: now, createdAt: now, awakeSince: now,
		dir: dir, root: root, home: home, appPort: port, changed: make(chan struct{}),
		lastActivity: now, pgids: map[int]bool{}, ownFS: ownFS, execs: map[string]*execution{}, previews: map[string]*preview{},
	}
	s.record(m, now)
	s.machines[id] = m
	s.order = append(s.order, m)
	s.usedPorts[port] = true
	s.counters.Creates++
	s.log.Info("machine created", "machine_id", id, "vcpu", m.vcpu, "memory_mib", m.memoryMiB,
		"storage_gib", m.storGiB, "autosleep", autosleep, "app_port", port)
	s.boot(m)
	return machineResp(c, m, http.StatusAccepted)
}

// liveMachines counts the machines not destroyed. Callers hold s.mu.
func (s *Server) liveMachines() int {
	n := 0
	for _, m := range s.order {
		if m.phase != dedalus.PhaseDestroyed {
			n++
		}
	}
	return n
}

// freePort picks a free loopback TCP port for a machine's app, not given
// to another machine. It is taken from below the kernel's ephemeral range:
// a port from that range (what listening on :0 gives) can be taken, between
// handing it out and the app's bind, by any outgoing connection or by the
// emulator's own preview listeners, and the app would fail to listen (or
// worse, another listener would answer its health check). Callers hold s.mu.
func (s *Server) freePort() (int, error) {
	lo, hi := appPortRange()
	span := hi - lo + 1
	start := int(nextAppPort.Add(1))
	for i := range span {
		port := lo + (start+i*7919)%span // 7919 is prime: every port is visited
		if s.usedPorts[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // something else holds it
		}
		ln.Close()
		return port, nil
	}
	return 0, fmt.Errorf("allocating machine port: no free port in %d-%d", lo, hi)
}

// nextAppPort is where the next app port search starts: shared by every
// emulator of the process, from a random offset so that emulators in
// different processes rarely search the same ports at the same time.
var nextAppPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(mrand.Int64N(1 << 20))
	return &n
}()

// appPortRange is the range machine app ports come from: the 20,000 ports
// below the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, read
// once).
var appPortRange = sync.OnceValues(func() (lo, hi int) {
	ephemeral := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 2048 {
				ephemeral = v
			}
		}
	}
	hi = ephemeral - 1
	lo = max(1024, hi-20000)
	return lo, hi
})

func (s *Server) getMachine(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return 0, nil, err
	}
	return machineResp(c, m, http.StatusOK)
}

func (s *Server) listMachines(c *call) (int, any, error) {
	limit, after, perr := pageParams(c.r)
	if perr != nil {
		return 0, nil, perr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var live []*machine
	for _, m := range s.order {
		if m.phase != dedalus.PhaseDestroyed {
			live = append(live, m)
		}
	}
	page, next := paginate(live, func(m *machine) int64 { return m.seq }, limit, after)
	items := make([]dedalus.MachineListItem, len(page))
	for i, m := range page {
		items[i] = dedalus.MachineListItem{Machine: m.snapshot(), CreatedAt: m.createdAt}
	}
	return http.StatusOK, dedalus.Page[dedalus.MachineListItem]{Items: items, NextCursor: next}, nil
}

type patchMachineBody struct {
	VCPU       *float64 `json:"vcpu"`
	MemoryMiB  *int64   `json:"memory_mib"`
	StorageGiB *int64   `json:"storage_gib"`
	Autosleep  *string  `json:"autosleep"`
}

func (s *Server) patchMachine(c *call) (int, any, error) {
	var b patchMachineBody
	if err := decodeBody(c.body, &b); err != nil {
		return 0, nil, err
	}
	switch {
	case b.VCPU != nil && *b.VCPU <= 0:
		return 0, nil, validation("body.vcpu", "must be greater than 0", *b.VCPU)
	case b.MemoryMiB != nil && *b.MemoryMiB <= 0:
		return 0, nil, validation("body.memory_mib", "must be greater than 0", *b.MemoryMiB)
	case b.StorageGiB != nil && *b.StorageGiB <= 0:
		return 0, nil, validation("body.storage_gib", "must be greater than 0", *b.StorageGiB)
	}
	var autosleep *time.Duration
	if b.Autosleep != nil {
		d, err := parseAutosleepField(b.Autosleep)
		if err != nil {
			return 0, nil, err
		}
		autosleep = &d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookupIfMatch(c)
	if err != nil {
		return 0, nil, err
	}
	switch m.phase {
	case dedalus.PhaseDestroying, dedalus.PhaseDestroyed, dedalus.PhaseFailed:
		return 0, nil, invalidState(m, m.desired, "")
	}
	if b.VCPU != nil {
		m.vcpu = *b.VCPU
	}
	if b.MemoryMiB != nil {
		m.memoryMiB = *b.MemoryMiB
	}
	if b.StorageGiB != nil {
		m.storGiB = *b.StorageGiB
	}
	if autosleep != nil {
		m.autosleep = *autosleep
		m.lastActivity = time.Now()
	}
	s.record(m, time.Now())
	s.log.Info("machine updated", "machine_id", m.id, "revision", m.revision)
	return machineResp(c, m, http.StatusOK)
}

func (s *Server) deleteMachine(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return 0, nil, err
	}
	if m.phase == dedalus.PhaseDestroyed {
		return machineResp(c, m, http.StatusOK)
	}
	if err := checkIfMatch(c, m); err != nil {
		return 0, nil, err
	}
	if m.phase != dedalus.PhaseDestroying {
		s.beginDestroy(m)
	}
	return machineResp(c, m, http.StatusAccepted)
}

func (s *Server) sleepMachine(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookupIfMatch(c)
	if err != nil {
		return 0, nil, err
	}
	switch m.phase {
	case dedalus.PhaseSleeping:
		return machineResp(c, m, http.StatusOK)
	case dedalus.PhaseStopping:
		return machineResp(c, m, http.StatusAccepted)
	case dedalus.PhaseRunning:
		s.beginSleep(m, false)
		return machineResp(c, m, http.StatusAccepted)
	default:
		return 0, nil, invalidState(m, dedalus.DesiredSleeping, dedalus.PhaseRunning)
	}
}

func (s *Server) wakeMachine(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookupIfMatch(c)
	if err != nil {
		return 0, nil, err
	}
	switch m.phase {
	case dedalus.PhaseRunning:
		s.counters.WakeRequests++
		return machineResp(c, m, http.StatusOK)
	case dedalus.PhaseAccepted, dedalus.PhasePlacementPending, dedalus.PhaseStarting:
		s.counters.WakeRequests++
		return machineResp(c, m, http.StatusAccepted)
	case dedalus.PhaseSleeping, dedalus.PhaseStopping:
		s.counters.WakeRequests++
		s.beginWake(m, "wake requested")
		return machineResp(c, m, http.StatusAccepted)
	default:
		return 0, nil, invalidState(m, dedalus.DesiredRunning, dedalus.PhaseSleeping)
	}
}

// watchStatus serves GET /v1/machines/{id}/status/stream.
func (s *Server) watchStatus(w http.ResponseWriter, c *call) {
	id := c.param("machine_id")
	s.mu.Lock()
	m, aerr := s.lookup(id)
	s.mu.Unlock()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	last := int64(-1)
	resumed := false
	if v := strings.TrimSpace(c.r.Header.Get(dedalus.HeaderLastEventID)); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			last, resumed = n, true
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	keep := time.NewTicker(s.keepalive)
	defer keep.Stop()
	first := true
	for {
		s.mu.Lock()
		var evs []dedalus.Machine
		if first && !resumed {
			evs = []dedalus.Machine{m.snapshot()}
		} else {
			for _, snap := range m.history {
				if rev, _ := strconv.ParseInt(snap.Status.Revision, 10, 64); rev > last {
					evs = append(evs, snap)
				}
			}
			if len(evs) == 0 && m.revision > last {
				evs = []dedalus.Machine{m.snapshot()}
			}
		}
		converged := m.converged()
		changed := m.changed
		s.mu.Unlock()
		first = false
		for _, ev := range evs {
			b, _ := json.Marshal(ev)
			if _, err := fmt.Fprintf(w, "id: %s\nevent: status\ndata: %s\n\n", ev.Status.Revision, b); err != nil {
				return
			}
			last, _ = strconv.ParseInt(ev.Status.Revision, 10, 64)
		}
		if len(evs) > 0 {
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if converged {
			return
		}
		select {
		case <-changed:
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case <-c.r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}
