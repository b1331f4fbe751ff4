package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// profile fetches /debug/pprof/<kind>?seconds=<d> from a binary's admin
// listener (started with its *_PPROF=true) into file under e.Pprof, while
// load runs over and over: a CPU profile ("profile") or an execution trace
// ("trace") of the binary doing that work. load's first error ends it.
func (e *Env) profile(ctx context.Context, adminURL, kind string, d time.Duration, file string, load func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		got <- fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", adminURL, kind, int(d.Seconds())), filepath.Join(e.Pprof, file))
	}()
	for {
		select {
		case err := <-got:
			if err == nil {
				e.Log.Info("profile written", "file", filepath.Join(e.Pprof, file))
			}
			return err
		default:
		}
		if err := load(ctx); err != nil {
			return err
		}
	}
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", url, err)
	}
	return f.Close()
}

// trace records an execution trace of a binary (started with its
// *_PPROF=true) for d while run runs once, into file under e.Pprof: read it
// with go tool trace.
func (e *Env) trace(ctx context.Context, adminURL string, d time.Duration, file string, run func()) error {
	got := make(chan error, 1)
	go func() {
		got <- fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/trace?seconds=%d", adminURL, int(d.Seconds())), filepath.Join(e.Pprof, file))
	}()
	time.Sleep(50 * time.Millisecond) // the trace has started
	run()
	if err := <-got; err != nil {
		return err
	}
	e.Log.Info("trace written", "file", filepath.Join(e.Pprof, file))
	return nil
}

// histogram sums the sample sums and counts of every series of the
// histogram name on a binary's admin listener (/metrics).
func histogram(ctx context.Context, adminURL, name string) (sum float64, count uint64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("scrape %s: %w", adminURL, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("scrape %s: %w", adminURL, err)
	}
	if f := fams[name]; f != nil {
		for _, m := range f.GetMetric() {
			sum += m.GetHistogram().GetSampleSum()
			count += m.GetHistogram().GetSampleCount()
		}
	}
	return sum, count, nil
}
