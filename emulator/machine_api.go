package emulator

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

func (s *Server) lookup(id string) (*machine, *apiError) {
	m := s.machines[id]
	if m == nil {
		return nil, notFound("machine", id)
	}
	return m, nil
}

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

// mutateIfMatch runs a lifecycle mutation on the request's machine, under
// s.mu, once the machine is found and its If-Match revision checks out.
func (s *Server) mutateIfMatch(c *call, mutate func(m *machine) (int, any, error)) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookupIfMatch(c)
	if err != nil {
		return 0, nil, err
	}
	return mutate(m)
}

// checkIfMatch validates If-Match against the machine's revision. A missing
// header is accepted.
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

// check validates a create request; it returns the machine's autosleep
// window (def when the request names none).
func (b *createMachineBody) check(def time.Duration) (time.Duration, *apiError) {
	switch {
	case b.VCPU == nil:
		return 0, validation("body.vcpu", "required property is missing", nil)
	case *b.VCPU <= 0:
		return 0, validation("body.vcpu", "must be greater than 0", *b.VCPU)
	case b.MemoryMiB == nil:
		return 0, validation("body.memory_mib", "required property is missing", nil)
	case *b.MemoryMiB <= 0:
		return 0, validation("body.memory_mib", "must be greater than 0", *b.MemoryMiB)
	case b.StorageGiB == nil:
		return 0, validation("body.storage_gib", "required property is missing", nil)
	case *b.StorageGiB <= 0:
		return 0, validation("body.storage_gib", "must be greater than 0", *b.StorageGiB)
	}
	autosleep := def
	if b.Autosleep != nil {
		d, err := parseAutosleepField(b.Autosleep)
		if err != nil {
			return 0, err
		}
		autosleep = d
	}
	return max(autosleep, 0), nil
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
	autosleep, aerr := b.check(s.cfg.DefaultAutosleep)
	if aerr != nil {
		return 0, nil, aerr
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

	etcOverlay, err := prepareMachineFS(root, s.etcOverlayOK())
	ownFS := err == nil

	s.mu.Lock()
	defer s.mu.Unlock()
	port, err := s.admitMachine()
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
		lastActivity: now, pgids: map[int]bool{}, ownFS: ownFS, etcOverlay: ownFS && etcOverlay,
		execs: newChildren[*execution]("execution"), previews: newChildren[*preview]("preview"),
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

// admitMachine checks that a machine can be created now (the server is
// not closing, the quota has room) and picks its app port. Callers hold
// s.mu.
func (s *Server) admitMachine() (int, error) {
	if s.closed {
		return 0, errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "runtime unavailable", true, 0, nil)
	}
	if q := s.cfg.MaxMachines; q > 0 && s.liveMachines() >= q {
		return 0, errBody(http.StatusForbidden, "QUOTA_EXCEEDED", fmt.Sprintf("machine quota reached: %d machines", q), false, 0,
			map[string]string{"quota": "machines", "limit": strconv.Itoa(q)})
	}
	return s.freePort()
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
	return http.StatusOK, pageOf(page, next, func(m *machine) dedalus.MachineListItem {
		return dedalus.MachineListItem{Machine: m.snapshot(), CreatedAt: m.createdAt}
	}), nil
}

type patchMachineBody struct {
	VCPU       *float64 `json:"vcpu"`
	MemoryMiB  *int64   `json:"memory_mib"`
	StorageGiB *int64   `json:"storage_gib"`
	Autosleep  *string  `json:"autosleep"`
}

// check validates a patch request; it returns the machine's new autosleep
// window, nil when the request leaves it as it is.
func (b *patchMachineBody) check() (*time.Duration, *apiError) {
	switch {
	case b.VCPU != nil && *b.VCPU <= 0:
		return nil, validation("body.vcpu", "must be greater than 0", *b.VCPU)
	case b.MemoryMiB != nil && *b.MemoryMiB <= 0:
		return nil, validation("body.memory_mib", "must be greater than 0", *b.MemoryMiB)
	case b.StorageGiB != nil && *b.StorageGiB <= 0:
		return nil, validation("body.storage_gib", "must be greater than 0", *b.StorageGiB)
	}
	if b.Autosleep == nil {
		return nil, nil
	}
	d, err := parseAutosleepField(b.Autosleep)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// apply sets on m the sizes the patch names and its checked autosleep
// window (nil: unchanged). The caller holds s.mu.
func (b *patchMachineBody) apply(m *machine, autosleep *time.Duration) {
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
}

func (s *Server) patchMachine(c *call) (int, any, error) {
	var b patchMachineBody
	if err := decodeBody(c.body, &b); err != nil {
		return 0, nil, err
	}
	autosleep, aerr := b.check()
	if aerr != nil {
		return 0, nil, aerr
	}
	return s.mutateIfMatch(c, func(m *machine) (int, any, error) {
		switch m.phase {
		case dedalus.PhaseDestroying, dedalus.PhaseDestroyed, dedalus.PhaseFailed:
			return 0, nil, invalidState(m, m.desired, "")
		}
		b.apply(m, autosleep)
		s.record(m, time.Now())
		s.log.Info("machine updated", "machine_id", m.id, "revision", m.revision)
		return machineResp(c, m, http.StatusOK)
	})
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
	return s.mutateIfMatch(c, func(m *machine) (int, any, error) {
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
	})
}

func (s *Server) wakeMachine(c *call) (int, any, error) {
	return s.mutateIfMatch(c, func(m *machine) (int, any, error) {
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
	})
}
