package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/emulator"
)

// scaleAppSource is the preview app of the scale scenario: a single-threaded
// HTTP responder in C that answers every request "ok" on 127.0.0.1:$PORT
// (the emulator's machine port). Thousands of them run at once, so it must
// be small: about 150 KiB of proportional memory each, where the Python demo
// app takes ~10 MiB. It lives in a Go string because a .c file in a Go
// package without cgo does not build.
const scaleAppSource = `#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	"Content-Length: 3\r\nConnection: close\r\n\r\nok\n";

int main(void) {
	const char *port = getenv("PORT");
	if (port == NULL) return 2;
	signal(SIGPIPE, SIG_IGN);
	int ln = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ln, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)atoi(port));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ln < 0 || bind(ln, (struct sockaddr *)&a, sizeof a) != 0 || listen(ln, 64) != 0) {
		fprintf(stderr, "scale-app: listen on 127.0.0.1:%s: ", port);
		perror(NULL);
		return 1;
	}
	for (;;) {
		int c = accept(ln, NULL, NULL);
		if (c < 0) continue;
		char buf[4096];
		size_t n = 0;
		while (n < sizeof buf) {
			ssize_t r = read(c, buf + n, sizeof buf - n);
			if (r <= 0) break;
			n += (size_t)r;
			if (memmem(buf, n, "\r\n\r\n", 4) != NULL) break;
		}
		if (n > 0 && write(c, resp, sizeof resp - 1) < 0) {}
		close(c);
	}
}
`

// buildScaleApp compiles the app into dir and returns its absolute path.
func buildScaleApp(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "scale_app.c")
	if err := os.WriteFile(src, []byte(scaleAppSource), 0o644); err != nil {
		return "", err
	}
	bin, err := filepath.Abs(filepath.Join(dir, "scale-app"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "gcc", "-O2", "-o", bin, src)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("compile the scale app with gcc: %w\n%s", err, out.String())
	}
	return bin, nil
}

// appProcs lists the running processes of the app binary bin (only this
// run's: bin is in its scratch directory).
func appProcs(bin string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killApps SIGKILLs the app processes of bin. The emulator would kill them
// too when it closes, but it finds each machine's processes by scanning
// every process's environment, once per machine: with thousands of app
// processes alive that takes many minutes, with none left a few seconds.
func killApps(bin string) int {
	pids := appProcs(bin)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// memKiB reads a "Key:   123 kB" line of a /proc file (0 when unreadable).
func memKiB(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(key+":")); ok {
			f := bytes.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(string(f[0]), 10, 64)
				return v
			}
		}
	}
	return 0
}

// rssKiB is a process's resident set size.
func rssKiB(pid int) int64 { return memKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS") }

// appsPssKiB is the proportional memory of all the app processes together.
func appsPssKiB(bin string) (int64, int) {
	var sum int64
	pids := appProcs(bin)
	for _, pid := range pids {
		sum += memKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")
	}
	return sum, len(pids)
}

// appMachines maps the machine IDs whose app (bin) is running to its pid:
// the emulator marks every machine process with DEDALUS_MACHINE_ID.
func appMachines(bin string) map[string]int {
	out := map[string]int{}
	for _, pid := range appProcs(bin) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if id, ok := bytes.CutPrefix(kv, []byte(emulator.EnvMachineID+"=")); ok {
				out[string(id)] = pid
			}
		}
	}
	return out
}

// appLog is the start of a machine's app log (the start script's
// $HOME/.drydock/app.log), found under the scenario's directory.
func appLog(dir, machineID string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "stack-*", "emulator", "machines", machineID, "root", "root", ".drydock", "app.log"))
	if len(m) == 0 {
		return "(no app log)"
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		return err.Error()
	}
	if len(b) > 300 {
		b = b[:300]
	}
	return strings.TrimSpace(string(b))
}

// openFDs is the number of file descriptors this process holds.
func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// childrenCPU is the CPU time of this process's reaped children (the
// machines' commands: git, sh), from /proc/self/stat cutime and cstime.
func childrenCPU() time.Duration { return statTicks("self", 13) }
