package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/harness"
)

const (
	scaleOwner = "bench"
	scaleRepo  = "scale"
	// scalePerOwner previews are open per owner, each owner its own GitHub
	// App installation: a deployment with thousands of open previews serves
	// many organizations, and each installation has its own budget of
	// 5,000 GitHub requests an hour (the double's, and GitHub's floor),
	// which a preview's opening (about 14 requests) and pushes (8 to 15
	// each) draw from. The first owner's previews are the baseline's, which
	// get four pushes each in its burst: with 50 per owner that owner
	// spends about 3,700 requests, within the budget.
	scalePerOwner = 50
	// scaleInstallation0 is the first owner's installation ID.
	scaleInstallation0 = 160000
	// scaleBase previews are open for the baseline measurement.
	scaleBase = 50
	// scaleWindow bounds the previews being provisioned at once while
	// opening: enough to keep the worker busy, few enough that health
	// checks do not time out on a 2-core machine.
	scaleWindow = 150
	// scaleSyncRate is the rate of the synchronize deliveries (per second):
	// with scaleBase previews open, each gets a push every 12 s, by when the
	// deploy of the previous one is normally over, as it is with thousands
	// open (a signal that reaches a workflow busy deploying waits longer).
	scaleSyncRate = 4
)

func init() {
	register(Scenario{Order: 5, Name: "scale", Title: "5. Scale: 5,000 open previews on one worker", Run: scaleBench})
}

// scaleBench opens thousands of previews (PreviewLifecycle workflows, each
// with a machine running a tiny app) on one worker, with an emulator that
// boots, wakes and sleeps instantly, and measures the worker's memory and
// how long a synchronize delivery takes to be handled by its workflow while
// they are all open, next to the same with only scaleBase previews open.
func scaleBench(ctx context.Context, e *Env) ([]Row, error) {
	points := scalePoints(e)
	n := points[len(points)-1]
	syncs := max(50, e.N(200))
	app, err := buildScaleApp(ctx, e.Dir)
	if err != nil {
		return nil, err
	}
	h, err := e.Start(ctx, harness.Options{
		GitHubApp:     true,
		AllowedOwners: scaleAllowed(n),
		// Instant boot, wake and sleep; machines never autosleep here (the
		// spec's autosleep is an hour), see scaleSpec.
		Emulator: emulator.Config{BootDelay: -1, WakeDelay: -1, SleepDelay: -1},
		// No reconciler: it runs at wall-clock multiples of its interval
		// and queries every open preview, which would land at a random
		// point of the measurement.
		// A worker meant to keep n previews in memory is given a cache that
		// holds them all (the default, 10,000, does up to the 5,000 point).
		WorkerEnv: append([]string{"RECONCILE_EVERY=0", "WORKER_WORKFLOW_CACHE_SIZE=" + strconv.Itoa(scaleCache(n))}, scalePprofEnv(e)...),
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		began := time.Now()
		killed := killApps(app)
		h.Close()
		e.Log.Info("stack closed", "apps_killed", killed, "took", time.Since(began).Round(time.Millisecond))
	}()

	src, err := harness.NewGitRepo(filepath.Join(e.Dir, "src"))
	if err != nil {
		return nil, err
	}
	s := &scaleRun{h: h, e: e, app: app, syncs: syncs, clone: src.Dir, head: map[int]int{}, raced: map[int]bool{}, rnd: rand.New(rand.NewPCG(5, 5000))}
	if err := s.commit(src, points); err != nil {
		return nil, err
	}
	s.installOwners(n, scaleSpec(app))
	if s.bare, err = startScaleBare(ctx, h.TC, scaleBase); err != nil {
		return nil, err
	}
	defer s.bare.stop()
	if err := s.baseline(ctx); err != nil {
		return nil, err
	}

	var rows []Row
	from := scaleBase
	for i, p := range points {
		r, err := s.point(ctx, from, p, i == 0)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
		from = p
	}
	return rows, nil
}

// commit makes the commits the previews are opened with and pushed: every
// push is a commit the preview has not had yet, so there is the head it
// opened with, then one per push it can get in each burst (the baseline's,
// then each point's).
func (s *scaleRun) commit(src *harness.GitRepo, points []int) error {
	commits := 1 + (s.syncs+scaleBase-1)/scaleBase
	for _, p := range points {
		commits += (s.syncs + p - 1) / p
	}
	for i := range commits {
		sha, err := src.Commit(fmt.Sprintf("bench commit %d", i))
		if err != nil {
			return err
		}
		s.shas = append(s.shas, sha)
	}
	return nil
}

// baseline opens a handful of previews (scaleBase) and measures the worker
// with them open: its memory, the dev server's, and a synchronize burst.
func (s *scaleRun) baseline(ctx context.Context) error {
	if _, err := s.open(ctx, 1, scaleBase); err != nil {
		return fmt.Errorf("open the %d baseline previews: %w", scaleBase, err)
	}
	s.githubCalls(scaleBase)
	s.base.rss = rssKiB(s.h.Worker.Pid())
	s.base.temporal = rssKiB(s.h.Temporal.Pid())
	s.snapshot(ctx, scaleBase)
	var err error
	if s.base.sync, err = s.syncBurst(ctx, "base", scaleBase, s.syncs); err != nil {
		return err
	}
	s.base.quiet = s.quiet
	return s.settle(ctx, scaleBase)
}

// scale10k adds a point at 10,000 open previews (scaled) to the scale
// scenario. It is opt-in: opening the 5,000 more takes about as long again
// as the first 5,000 (10 to 30 minutes on a 2-core machine).
var scale10k = flag.Bool("scale-10k", false, "scale scenario: also measure with 10,000 previews open (scaled by -scale; adds 10 to 30 minutes at -scale 1)")

// scalePoints are the numbers of open previews the scenario measures at.
func scalePoints(e *Env) []int {
	points := []int{max(e.N(5000), 2*scaleBase)}
	if *scale10k {
		points = append(points, max(e.N(10000), 2*points[0]))
	}
	return points
}

// point opens previews from+1..to and measures the worker with them all
// open, next to the baseline; first says whether to add the rows only
// measured once (the dev server, the apps, ports lost).
func (s *scaleRun) point(ctx context.Context, from, to int, first bool) ([]Row, error) {
	h, e := s.h, s.e
	cpu0 := s.cpu()
	openTook, err := s.open(ctx, from+1, to)
	if err != nil {
		return nil, fmt.Errorf("open %d previews: %w", to, err)
	}
	rssAll := rssKiB(h.Worker.Pid())
	tempAll := rssKiB(h.Temporal.Pid())
	appsPss, apps := appsPssKiB(s.app)
	s.snapshot(ctx, to)
	cpu1 := s.cpu()
	e.Log.Info("CPU while opening", "temporal", cpu1[0]-cpu0[0], "worker", cpu1[1]-cpu0[1], "webhook", cpu1[2]-cpu0[2],
		"bench_emulator", cpu1[3]-cpu0[3], "machine_commands", cpu1[4]-cpu0[4], "wall", openTook.Round(time.Second))
	e.Log.Info("all open", "previews", to, "took", openTook.Round(time.Second), "worker_rss_kib", rssAll, "temporal_rss_kib", tempAll,
		"bench_rss_kib", rssKiB(os.Getpid()), "bench_fds", openFDs(), "apps", apps, "apps_pss_kib", appsPss)
	s.githubCalls(to)
	homeless := s.appless(s.app)
	burst, err := s.syncBurst(ctx, fmt.Sprintf("all-%d", to), to, s.syncs)
	if err != nil {
		return nil, err
	}
	if err := s.settle(ctx, to); err != nil {
		return nil, err
	}
	rssAfter := rssKiB(h.Worker.Pid())

	b := s.base
	perWF := float64(rssAll-b.rss) / float64(to-scaleBase)
	opened := to - from
	rssRow := Row{Metric: fmt.Sprintf("worker RSS with %d previews open", to), Value: float64(rssAll) / 1024, Unit: "MiB",
		Baseline: F(float64(b.rss) / 1024), Ratio: F(float64(rssAll) / float64(b.rss)),
		Note: fmt.Sprintf("baseline: %d open; %.0f MiB after the synchronize burst", scaleBase, float64(rssAfter)/1024)}
	if to == 5000 {
		rssRow.Goal, rssRow.Met = "< 300 MiB", B(rssAll < 300*1024)
	}
	rows := []Row{rssRow,
		{Metric: fmt.Sprintf("worker memory per open preview workflow (%d open)", to), Value: perWF, Unit: "KiB", Note: "RSS difference from the baseline / workflows added"},
		{Metric: fmt.Sprintf("time to open %d previews (%d provisioning at once)", opened, scaleWindow), Value: openTook.Seconds(), Unit: "s",
			Note: fmt.Sprintf("%.1f previews/s", float64(opened)/openTook.Seconds())},
	}
	rows = append(rows, s.syncRows(to, burst)...)
	rows = append(rows, []Row{
		{Metric: fmt.Sprintf("Temporal dev server RSS, %d open", to), Value: float64(tempAll) / 1024, Unit: "MiB", Baseline: F(float64(b.temporal) / 1024),
			Ratio: F(float64(tempAll) / float64(b.temporal))},
		{Metric: fmt.Sprintf("app processes' memory (PSS, %d previews)", to), Value: float64(appsPss) / 1024, Unit: "MiB",
			Note: fmt.Sprintf("%d processes of a tiny C responder", apps)},
	}...)
	if first {
		rows = append(rows, Row{Metric: "previews whose app could not listen on its port", Value: float64(homeless),
			Note: fmt.Sprintf("another process took the machine's port before the app bound it; %d of them failed their health check and were left out", len(s.raced))})
	}
	return rows, nil
}

// scalePprofEnv turns the worker's profiler on when the run takes
// profiles (-pprof).
func scalePprofEnv(e *Env) []string {
	if e.Pprof == "" {
		return nil
	}
	return []string{"WORKER_PPROF=true"}
}

// snapshot writes the worker's heap and goroutine profiles with previews
// open (with -pprof): scale-heap-N.pb.gz, scale-goroutine-N.pb.gz, and the
// heap's text form with the runtime's memory statistics, scale-heap-N.txt.
func (s *scaleRun) snapshot(ctx context.Context, previews int) {
	if s.e.Pprof == "" {
		return
	}
	for _, p := range []struct{ path, file string }{
		{"heap", "scale-heap-%d.pb.gz"}, {"goroutine", "scale-goroutine-%d.pb.gz"}, {"heap?debug=1", "scale-heap-%d.txt"},
	} {
		file := filepath.Join(s.e.Pprof, fmt.Sprintf(p.file, previews))
		if err := fetchProfile(ctx, s.h.WorkerAdminURL+"/debug/pprof/"+p.path, file); err != nil {
			s.e.Log.Warn("worker profile not written", "error", err)
			continue
		}
		s.e.Log.Info("profile written", "file", file)
	}
}

// cpu is the CPU time used so far by the dev server, the worker, the
// webhook server, this process (emulator, GitHub double) and the
// machines' commands.
func (s *scaleRun) cpu() [5]time.Duration {
	return [5]time.Duration{procCPU(s.h.Temporal.Pid()), procCPU(s.h.Worker.Pid()), procCPU(s.h.Webhook.Pid()), procCPU(os.Getpid()), childrenCPU()}
}

// appless counts the live machines without their app process, and logs
// why (their app log).
func (s *scaleRun) appless(app string) int {
	running := appMachines(app)
	n := 0
	for _, m := range s.h.Emu.Stats().Machines {
		if m.Phase == "destroyed" {
			continue
		}
		if _, ok := running[m.MachineID]; !ok {
			n++
			if n <= 5 {
				s.e.Log.Warn("machine without its app", "machine_id", m.MachineID, "app_log", appLog(s.e.Dir, m.MachineID))
			}
		}
	}
	return n
}

// scaleSpec is a minimal preview: checkout and start, nothing else. The
// machines never autosleep during the run: the emulator finds a machine's
// processes by scanning every process on the host, so thousands of sleeps
// with thousands of processes alive would cost the emulator minutes of CPU,
// not the worker anything.
func scaleSpec(app string) string {
	return `
machine: {vcpu: 1, memory_mib: 256, storage_gib: 1, autosleep: 1h}
app: {port: 3000, health_path: /healthz, health_timeout: 30s}
start: {command: ["` + app + `"]}
`
}

type scaleRun struct {
	h     *harness.Harness
	e     *Env
	app   string // the app binary the machines run
	syncs int    // synchronize deliveries per burst
	bare  *scaleBare
	// base is the baseline: scaleBase previews open.
	base struct {
		rss, temporal int64 // KiB
		sync          *syncResult
		quiet         time.Duration
	}
	clone string
	shas  []string
	head  map[int]int  // PR number → index in shas of its head (only grows)
	raced map[int]bool // PR numbers whose app could not listen (checkFailed)
	rnd   *rand.Rand
	// quiet is how long the last burst waited for a quiet stack (quiesce).
	quiet time.Duration
}

func (s *scaleRun) pr(number int) ghfixture.PR {
	owner, inst := scaleOwnerOf(number)
	return ghfixture.PR{Owner: owner, Repo: scaleRepo, Number: number, HeadSHA: s.shas[s.head[number]], HeadRef: "main", CloneURL: s.clone,
		InstallationID: inst}
}

// scaleOwnerOf is the owner of pull request number and its installation:
// scalePerOwner pull requests per owner.
func scaleOwnerOf(number int) (string, int64) {
	i := (number - 1) / scalePerOwner
	return fmt.Sprintf("%s-%03d", scaleOwner, i), scaleInstallation0 + int64(i)
}

// scaleCache is the worker's workflow cache for n open previews: all of
// them and a tenth more (the pool's, the bench's own), at least the
// worker's default.
func scaleCache(n int) int { return max(10000, n+n/10) }

// scaleAllowed is DRYDOCK_ALLOWED_OWNERS for n previews.
func scaleAllowed(n int) string {
	var owners []string
	for num := 1; num <= n; num += scalePerOwner {
		o, _ := scaleOwnerOf(num)
		owners = append(owners, o)
	}
	return strings.Join(owners, ",")
}

// installOwners installs the harness's GitHub App on the owners of n
// previews, each an organization with the repository and its spec.
func (s *scaleRun) installOwners(n int, spec string) {
	for num := 1; num <= n; num += scalePerOwner {
		owner, inst := scaleOwnerOf(num)
		s.h.GH.AddInstallation(harness.AppID, inst)
		s.h.GH.SetInstallationAccount(inst, owner, "Organization")
		s.h.GH.SetFile(owner, scaleRepo, "main", ".drydock/preview.yml", spec)
	}
}

// githubCalls logs how many GitHub requests the previews made, per route
// and per preview, and the most any one owner (installation: its budget is
// 5,000 an hour) had made.
func (s *scaleRun) githubCalls(previews int) {
	routes := map[string]int{}
	perOwner := map[string]int{}
	reqs := s.h.GH.Requests()
	for _, r := range reqs {
		routes[r.Route]++
		if rest, ok := strings.CutPrefix(r.Path, "/repos/"); ok {
			owner, _, _ := strings.Cut(rest, "/")
			perOwner[owner]++
		}
	}
	most := 0
	for _, c := range perOwner {
		most = max(most, c)
	}
	var parts []string
	for r, c := range routes {
		parts = append(parts, fmt.Sprintf("%s=%.2f", r, float64(c)/float64(previews)))
	}
	slices.Sort(parts)
	s.e.Log.Info("GitHub requests", "total", len(reqs), "per_preview", float64(len(reqs))/float64(previews),
		"most_for_one_owner", most, "per_preview_by_route", strings.Join(parts, " "))
}
