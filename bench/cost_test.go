package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/emulator"
)

// What a pool was awake beyond its jobs splits into the platform's
// transitions (awake, not running) and Drydock's share (running, no job).
func TestBeyondPerJobSplitsPlatformFromDrydock(t *testing.T) {
	// Two jobs of 4 vCPU-seconds each on 4-vCPU machines: 16 vCPU·s awake,
	// 12 of them running, 8 of those the jobs'.
	st := emulator.Stats{AwakeVCPUSeconds: 16, RunningVCPUSeconds: 12}
	b := beyondPerJob(st, 8, 2)
	assert.InDelta(t, 1.0, b.total, 1e-9, "(16-8) vCPU·s / 4 vCPU / 2 jobs")
	assert.InDelta(t, 0.5, b.platform, 1e-9, "(16-12) vCPU·s / 4 vCPU / 2 jobs")
	assert.InDelta(t, 0.5, b.drydock(), 1e-9)
}

// The goal (≤ 0.2 machine-s per job) is judged on Drydock's share, and the
// rows say what the platform's transitions took.
func TestCostBeyondRowsJudgeDrydocksShare(t *testing.T) {
	compressed := awakeBeyond{total: 0.9, platform: 0.8}
	spaced := awakeBeyond{total: 0.7, platform: 0.4}
	rows := costBeyondRows(10, compressed, 6, spaced, 100, 10_000)
	require.Len(t, rows, 4)
	assert.Nil(t, rows[0].Met, "the whole figure carries no goal")
	assert.Contains(t, rows[0].Note, "0.80 of it the platform's transitions")
	require.NotNil(t, rows[1].Met)
	assert.True(t, *rows[1].Met, "0.1 ≤ 0.2")
	assert.InDelta(t, 0.1, rows[1].Value, 1e-9)
	assert.Contains(t, rows[2].Note, "0.40 of it the platform's transitions")
	require.NotNil(t, rows[3].Met)
	assert.False(t, *rows[3].Met, "0.3 > 0.2")
}
