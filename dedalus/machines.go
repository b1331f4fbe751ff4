package dedalus

import (
	"context"
	"fmt"
	"iter"
	"net/http"
)

// CreateMachine asks for a new machine. The answer is usually 202 with phase
// accepted: use WaitForPhase to wait until it runs. The same idempotency key
// and request return the same machine, however often they are sent.
func (c *Client) CreateMachine(ctx context.Context, req CreateMachineRequest, idempotencyKey string) (*Machine, error) {
	if req.VCPU <= 0 || req.MemoryMiB <= 0 || req.StorageGiB <= 0 {
		return nil, fmt.Errorf("create machine: vcpu, memory_mib and storage_gib must be positive (got %v, %d, %d)", req.VCPU, req.MemoryMiB, req.StorageGiB)
	}
	if req.Autosleep != "" {
		if _, err := ParseAutosleep(req.Autosleep); err != nil {
			return nil, fmt.Errorf("create machine: %w", err)
		}
	}
	var m Machine
	err := c.do(ctx, &call{
		op: "create machine", method: http.MethodPost, path: "/v1/machines",
		body: req, idemKey: idempotencyKey, needsKey: true,
	}, &m)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// GetMachine reads a machine. A destroyed machine may still be readable for a while.
func (c *Client) GetMachine(ctx context.Context, id string) (*Machine, error) {
	p, err := pathID("machine", id)
	if err != nil {
		return nil, err
	}
	var m Machine
	if err := c.do(ctx, &call{op: "get machine " + id, method: http.MethodGet, path: "/v1/machines/" + p}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// ListMachines reads one page of machines.
func (c *Client) ListMachines(ctx context.Context, opts ListOptions) (*Page[MachineListItem], error) {
	var page Page[MachineListItem]
	err := c.do(ctx, &call{op: "list machines", method: http.MethodGet, path: "/v1/machines", query: listQuery(opts)}, &page)
	if err != nil {
		return nil, err
	}
	return &page, nil
}

// AllMachines iterates over every machine, following cursors page by page
// (pageSize 0 = server default). Iteration stops at the first error, which is yielded.
func (c *Client) AllMachines(ctx context.Context, pageSize int) iter.Seq2[MachineListItem, error] {
	return paginate(func(cursor string) (*Page[MachineListItem], error) {
		return c.ListMachines(ctx, ListOptions{Limit: pageSize, Cursor: cursor})
	})
}

func paginate[T any](fetch func(cursor string) (*Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		cursor := ""
		for {
			page, err := fetch(cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range page.Items {
				if !yield(it, nil) {
					return
				}
			}
			if page.NextCursor == "" || page.NextCursor == cursor {
				return
			}
			cursor = page.NextCursor
		}
	}
}

// UpdateMachine patches a machine's size or autosleep window.
func (c *Client) UpdateMachine(ctx context.Context, id string, req UpdateMachineRequest, m Mutation) (*Machine, error) {
	if req.Autosleep != nil {
		if _, err := ParseAutosleep(*req.Autosleep); err != nil {
			return nil, fmt.Errorf("update machine %s: %w", id, err)
		}
	}
	return c.lifecycle(ctx, "update machine", http.MethodPatch, id, "", req, m)
}

// DeleteMachine destroys a machine: its processes, disk and previews are gone.
func (c *Client) DeleteMachine(ctx context.Context, id string, m Mutation) (*Machine, error) {
	return c.lifecycle(ctx, "delete machine", http.MethodDelete, id, "", nil, m)
}

// SleepMachine asks the platform to snapshot and sleep a running machine.
func (c *Client) SleepMachine(ctx context.Context, id string, m Mutation) (*Machine, error) {
	return c.lifecycle(ctx, "sleep machine", http.MethodPost, id, "/sleep", nil, m)
}

// WakeMachine asks the platform to wake a sleeping machine. It is idempotent:
// on a running machine it returns at once. Use WakeAndWait to wait for running.
func (c *Client) WakeMachine(ctx context.Context, id string, m Mutation) (*Machine, error) {
	return c.lifecycle(ctx, "wake machine", http.MethodPost, id, "/wake", nil, m)
}

func (c *Client) lifecycle(ctx context.Context, verb, method, id, suffix string, body any, mut Mutation) (*Machine, error) {
	op := verb + " " + id
	p, err := pathID("machine", id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	if mut.IdempotencyKey == "" {
		return nil, fmt.Errorf("%s: an idempotency key is required for this mutation", op)
	}
	if mut.IfMatch == "" {
		cur, err := c.GetMachine(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%s: read revision: %w", op, err)
		}
		mut.IfMatch = cur.Status.Revision
	}
	var out Machine
	err = c.do(ctx, &call{
		op: op, method: method, path: "/v1/machines/" + p + suffix, body: body,
		idemKey: mut.IdempotencyKey, ifMatch: mut.IfMatch, needsKey: true,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}
