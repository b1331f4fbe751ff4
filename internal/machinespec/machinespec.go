// Package machinespec is the machine a preview (.drydock/preview.yml) or a
// runner pool (RUNNER_POOLS) asks for: its size and idle window, and the
// bounds Drydock accepts for them. Both configurations check a machine with
// Problems and word the answers in their own style.
package machinespec

import (
	"fmt"

	"github.com/drydock-dev/drydock/dedalus"
)

// Machine is the size and idle window of a machine.
type Machine struct {
	VCPU       float64 `json:"vcpu" yaml:"vcpu"`
	MemoryMiB  int64   `json:"memory_mib" yaml:"memory_mib"`
	StorageGiB int64   `json:"storage_gib" yaml:"storage_gib"`
	Autosleep  string  `json:"autosleep" yaml:"autosleep"`
}

// The bounds Drydock accepts: vcpu in (0, MaxVCPU], memory_mib and
// storage_gib within [Min, Max].
const (
	MaxVCPU       = 64
	MinMemoryMiB  = 256
	MaxMemoryMiB  = 262144
	MinStorageGiB = 1
	MaxStorageGiB = 4096
)

// Problem is one thing wrong with a Machine: the field (vcpu, memory_mib,
// storage_gib, autosleep) and what is wrong with it ("must be between 1 and
// 4096 (got 0)"). Err is set for autosleep: dedalus.ParseAutosleep's error.
type Problem struct {
	Field   string
	Message string
	Err     error
}

// Problems lists what is wrong with m, in field order.
func (m Machine) Problems() []Problem {
	var out []Problem
	if m.VCPU <= 0 || m.VCPU > MaxVCPU {
		out = append(out, Problem{Field: "vcpu", Message: fmt.Sprintf("must be between 0 and %d (got %v)", MaxVCPU, m.VCPU)})
	}
	if p, bad := between("memory_mib", m.MemoryMiB, MinMemoryMiB, MaxMemoryMiB); bad {
		out = append(out, p)
	}
	if p, bad := between("storage_gib", m.StorageGiB, MinStorageGiB, MaxStorageGiB); bad {
		out = append(out, p)
	}
	if _, err := dedalus.ParseAutosleep(m.Autosleep); err != nil {
		out = append(out, Problem{Field: "autosleep", Message: fmt.Sprintf("is invalid: %v", err), Err: err})
	}
	return out
}

func between(field string, v, lo, hi int64) (Problem, bool) {
	if v >= lo && v <= hi {
		return Problem{}, false
	}
	return Problem{Field: field, Message: fmt.Sprintf("must be between %d and %d (got %d)", lo, hi, v)}, true
}
