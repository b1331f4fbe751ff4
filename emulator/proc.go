package emulator

import (
	"bytes"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// EnvMachineID is the environment variable that marks a process as belonging
// to a machine; the emulator finds a machine's processes by it.
const EnvMachineID = "DEDALUS_MACHINE_ID"

type procInfo struct {
	pid   int
	pgrp  int
	state byte
}

// readStat parses /proc/<pid>/stat: state and process group.
func readStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procInfo{}, false
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 3 || len(f[0]) != 1 {
		return procInfo{}, false
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return procInfo{}, false
	}
	return procInfo{pid: pid, pgrp: pgrp, state: f[0][0]}, true
}

// machineProcs lists the live (non-zombie) processes of machine id: those
// whose initial environment holds DEDALUS_MACHINE_ID=<id> (this survives
// setsid and double forks) and those in one of the machine's execution
// process groups. Process groups found empty are dropped from pgids, so that
// a recycled group id never matches.
func machineProcs(id string, pgids map[int]bool) []procInfo {
	return scanMachines(map[string]map[int]bool{id: pgids})[id]
}

// procScans counts the scans of /proc (tests: shutting down many machines
// must not scan once per machine).
var procScans atomic.Int64

// scanMachines lists, in one scan of /proc, the live processes of each
// machine of pgids (machine ID -> its execution process groups), as
// machineProcs does for one.
func scanMachines(pgids map[string]map[int]bool) map[string][]procInfo {
	procScans.Add(1)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	group := groupOwners(pgids)
	self := os.Getpid()
	seen := map[int]bool{}
	out := map[string][]procInfo{}
	for _, e := range ents {
		pi, ok := liveProc(e.Name(), self)
		if !ok {
			continue
		}
		if id, ok := group[pi.pgrp]; ok {
			seen[pi.pgrp] = true
			out[id] = append(out[id], pi)
			continue
		}
		if id := machineOf(pi.pid, pgids); id != "" {
			out[id] = append(out[id], pi)
		}
	}
	dropUnseenGroups(pgids, seen)
	return out
}

// groupOwners maps each execution process group of pgids (machine ID ->
// its process groups) to its machine.
func groupOwners(pgids map[string]map[int]bool) map[int]string {
	group := map[int]string{}
	for id, gs := range pgids {
		for g := range gs {
			group[g] = id
		}
	}
	return group
}

// liveProc reads the /proc entry name: a process other than self, not a
// zombie nor dead.
func liveProc(name string, self int) (procInfo, bool) {
	pid, err := strconv.Atoi(name)
	if err != nil || pid == self {
		return procInfo{}, false
	}
	pi, ok := readStat(pid)
	if !ok || pi.state == 'Z' || pi.state == 'X' || pi.state == 'x' {
		return procInfo{}, false
	}
	return pi, true
}

// dropUnseenGroups deletes from pgids the process groups that a scan found
// empty (not in seen), so that a recycled group id never matches.
func dropUnseenGroups(pgids map[string]map[int]bool, seen map[int]bool) {
	for _, gs := range pgids {
		for g := range gs {
			if !seen[g] {
				delete(gs, g)
			}
		}
	}
}

// machineOf is the machine of pgids that process pid's initial environment
// names (DEDALUS_MACHINE_ID), or "".
func machineOf(pid int, pgids map[string]map[int]bool) string {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	key := []byte(EnvMachineID + "=")
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if id, ok := bytes.CutPrefix(kv, key); ok {
			if _, mine := pgids[string(id)]; mine {
				return string(id)
			}
		}
	}
	return ""
}

func stopped(state byte) bool { return state == 'T' || state == 't' }

// freeze SIGSTOPs every process of the machine, rescanning until all are
// stopped (a process may fork while we scan).
func freeze(id string, pgids map[int]bool) {
	for pass := 0; pass < 50; pass++ {
		pending := 0
		for _, p := range machineProcs(id, pgids) {
			if !stopped(p.state) {
				_ = syscall.Kill(p.pid, syscall.SIGSTOP)
				pending++
			}
		}
		if pending == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// thaw SIGCONTs every process of the machine.
func thaw(id string, pgids map[int]bool) {
	for range 2 {
		for _, p := range machineProcs(id, pgids) {
			_ = syscall.Kill(p.pid, syscall.SIGCONT)
		}
	}
}

// killOnce SIGKILLs every process of the machine found by one scan.
func killOnce(id string, pgids map[int]bool) {
	for _, p := range machineProcs(id, pgids) {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// killVerify SIGKILLs the machine's processes until none is left or timeout
// passes; it returns how many survived.
func killVerify(id string, pgids map[int]bool, timeout time.Duration) int {
	return killVerifyAll(map[string]map[int]bool{id: pgids}, timeout)[id]
}

// killVerifyAll is killVerify for several machines at once, one scan of
// /proc a round for all of them; it returns the survivors by machine.
func killVerifyAll(pgids map[string]map[int]bool, timeout time.Duration) map[string]int {
	if len(pgids) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		procs := scanMachines(pgids)
		if len(procs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			left := map[string]int{}
			for id, ps := range procs {
				left[id] = len(ps)
			}
			return left
		}
		for _, ps := range procs {
			for _, p := range ps {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}
