package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestQuantileNearestRank(t *testing.T) {
	var s Samples
	assert.Zero(t, s.Quantile(0.5), "no samples")
	for i := 100; i >= 1; i-- { // added out of order
		s.Add(time.Duration(i) * time.Millisecond)
	}
	assert.Equal(t, 100, s.Len())
	assert.Equal(t, 50*time.Millisecond, s.Quantile(0.5))
	assert.Equal(t, 99*time.Millisecond, s.Quantile(0.99))
	assert.Equal(t, 100*time.Millisecond, s.Quantile(1))
	assert.Equal(t, 1*time.Millisecond, s.Quantile(0))
	assert.Equal(t, 7*time.Millisecond, Quantile([]time.Duration{7 * time.Millisecond}, 0.99))
}
