package harness

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Samples collects durations from many goroutines.
type Samples struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one sample.
func (s *Samples) Add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// Len is the number of samples.
func (s *Samples) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.d)
}

// Quantile returns the q-quantile (0..1, nearest rank) or 0 with no samples.
func (s *Samples) Quantile(q float64) time.Duration {
	s.mu.Lock()
	d := slices.Clone(s.d)
	s.mu.Unlock()
	return Quantile(d, q)
}

// Values returns a copy of the samples.
func (s *Samples) Values() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.d)
}

// Quantile is the nearest-rank q-quantile of d (0 when empty). d is sorted
// in place.
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(q*float64(len(d)))) - 1
	i = max(0, min(i, len(d)-1))
	return d[i]
}
