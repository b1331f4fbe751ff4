// Package emulator is a local, loopback-only emulator of the Dedalus Machines
// API (the DCS control plane: microVMs that sleep and wake with memory, disk and
// processes intact). It speaks the same HTTP API as the real service — paths,
// headers, JSON bodies, status codes, error envelopes, idempotency keys,
// revisions/If-Match, asynchronous lifecycle, SSE status stream, cursor paging —
// so Drydock runs end to end on a laptop with no account, and tests exercise the
// real client over real HTTP. It is a faithful stand-in, not a mock.
//
// # Machines are real sandboxes
//
// Every machine is a directory <data>/machines/<id>/ whose root/ subdirectory is
// the machine's filesystem root; HOME is <root>/root. Executions run their argv
// as real host processes (never through a shell unless argv[0] is one), each in
// its own process group, with a minimal environment: PATH (the emulator's own),
// HOME, USER=root, LANG=C.UTF-8, PORT=<machine app port>,
// DEDALUS_MACHINE_ID=<id>, plus the request's env. Only the working directory is
// mapped into the machine root (an absolute cwd "/x" means <root>/x, a relative
// cwd is relative to HOME); argv itself is not chrooted, so host binaries such as
// /bin/sh work. Processes a command leaves behind in the background keep running
// and belong to the machine: the emulator finds them by scanning
// /proc/*/environ for DEDALUS_MACHINE_ID=<id> together with the process groups of
// its executions. Sleep freezes them all (SIGSTOP), wake resumes them (SIGCONT)
// after the wake delay, delete SIGKILLs them, checks that none is left and
// removes the directory.
//
// Run as root, a machine also has users of its own: its executions run in
// the machine's mount namespace (one holder process per machine, `unshare
// --mount`, entered with nsenter) where /etc is <root>/etc, a copy of the
// host's taken at creation, and /home is <root>/home. useradd on a machine
// adds a user there only, with its home in the machine's directory, and
// setpriv/runuser run processes under its own uid. The rest of the
// filesystem is the host's. Not as root, machines share the host's /etc.
//
// # Previews (local-only convention)
//
// Each machine gets a free loopback TCP port at creation, exported to its
// processes as PORT; the machine's app should listen on 127.0.0.1:$PORT. A
// preview is a loopback reverse proxy (127.0.0.1, OS-assigned port, reported as
// url "http://127.0.0.1:<port>") that forwards to the machine's PORT, whatever
// "port" the preview request named (the requested port is echoed back but not
// used). protocol "https" makes the proxy speak TLS to the app (certificate not
// verified); the preview URL itself is always plain http. Visibility is recorded
// but not enforced. The proxy streams (SSE included) and passes WebSocket
// upgrades through. While the machine is not running a preview answers 503 with
// "Retry-After: 1": previews never wake a machine by themselves, something in
// front must call wake. Every proxied request counts as machine activity for
// autosleep.
//
// # Control endpoints
//
// /_local/* needs no authentication (the server only listens on loopback) and is
// not part of the API contract:
//
//	GET  /_local/stats        Stats as JSON
//	POST /_local/stats/reset  zero the counters (machines are kept); answers the new Stats
//	GET  /_local/faults       current Faults as JSON
//	PUT  /_local/faults       replace the fault rules (see Faults); answers the new Faults
//
// Stats:
//
//	{"creates":1,"idempotent_replays":0,"wake_requests":0,"wakes":0,"sleeps":0,
//	 "autosleeps":0,"deletes":0,"faults_injected":0,"live_machines":1,"machines_total":1,"executions":0,
//	 "previews_live":0,"awake_seconds":1.5,"awake_vcpu_seconds":3,
//	 "running_seconds":0.5,"running_vcpu_seconds":1,
//	 "machines":[{"machine_id":"dm-…","phase":"running","vcpu":2,"awake_seconds":1.5,"running_seconds":0.5}]}
//
// Faults (routes keyed by operationId or "*"):
//
//	{"routes":{"createMachine":{"error_503":0.1,"error_429":0.1,"retry_after_ms":100,
//	  "reset":0.05,"reset_after":0.05,"latency_ms":200}},
//	 "boot_delay":"1s","wake_delay":"300ms","sleep_delay":"100ms"}
//
// # Where the emulator differs from the real service
//
// There is no sleep hold window (SLEEP_HOLD_WINDOW_ACTIVE is never returned),
// no artifacts, SSH sessions or terminals (those routes answer 404), and no
// real resource limits: vcpu, memory_mib and storage_gib are recorded and
// accounted (awake vcpu-seconds) but not enforced. Machines live in memory:
// they do not survive a restart of the emulator, which removes the machine
// directories a previous run left in its data directory (killing their
// processes). A destroyed machine stays readable for Config.TombstoneTTL.
// An injected reset_after on the status stream resets before streaming.
package emulator
