package emulator

import (
	"bytes"
	"os"
	"strconv"
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
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	needle := []byte("\x00" + EnvMachineID + "=" + id + "\x00")
	self := os.Getpid()
	seen := map[int]bool{}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		pi, ok := readStat(pid)
		if !ok || pi.state == 'Z' || pi.state == 'X' || pi.state == 'x' {
			continue
		}
		if pgids[pi.pgrp] {
			seen[pi.pgrp] = true
			out = append(out, pi)
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || len(env) == 0 {
			continue
		}
		buf := make([]byte, 0, len(env)+2)
		buf = append(buf, 0)
		buf = append(buf, env...)
		buf = append(buf, 0)
		if bytes.Contains(buf, needle) {
			out = append(out, pi)
		}
	}
	for g := range pgids {
		if !seen[g] {
			delete(pgids, g)
		}
	}
	return out
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
	deadline := time.Now().Add(timeout)
	for {
		procs := machineProcs(id, pgids)
		if len(procs) == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			return len(procs)
		}
		for _, p := range procs {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
