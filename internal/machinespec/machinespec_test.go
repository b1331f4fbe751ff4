package machinespec

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProblemsNamesEachFieldOutOfBounds(t *testing.T) {
	ok := Machine{VCPU: 2, MemoryMiB: 4096, StorageGiB: 10, Autosleep: "15m"}
	assert.Empty(t, ok.Problems())
	edges := Machine{VCPU: MaxVCPU, MemoryMiB: MinMemoryMiB, StorageGiB: MaxStorageGiB, Autosleep: "never"}
	assert.Empty(t, edges.Problems(), "the bounds are inclusive (vcpu's lower one is not)")

	bad := Machine{VCPU: 0, MemoryMiB: 255, StorageGiB: 4097, Autosleep: "soon"}
	got := bad.Problems()
	require.Len(t, got, 4)
	assert.Equal(t, Problem{Field: "vcpu", Message: "must be between 0 and 64 (got 0)"}, got[0])
	assert.Equal(t, Problem{Field: "memory_mib", Message: "must be between 256 and 262144 (got 255)"}, got[1])
	assert.Equal(t, Problem{Field: "storage_gib", Message: "must be between 1 and 4096 (got 4097)"}, got[2])
	assert.Equal(t, "autosleep", got[3].Field)
	require.Error(t, got[3].Err)
	assert.Equal(t, "is invalid: "+got[3].Err.Error(), got[3].Message)
}
