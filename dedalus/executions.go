package dedalus

import (
	"context"
	"fmt"
	"iter"
	"net/http"
)

// CreateExecution starts a command on a machine. The command is an argv array;
// pass untrusted values (branch names, titles) as separate argv elements or in
// Env, never spliced into a shell string.
func (c *Client) CreateExecution(ctx context.Context, machineID string, req CreateExecutionRequest, idempotencyKey string) (*Execution, error) {
	p, err := pathID("machine", machineID)
	if err != nil {
		return nil, err
	}
	if len(req.Command) == 0 || req.Command[0] == "" {
		return nil, fmt.Errorf("create execution on %s: command must be a non-empty argv", machineID)
	}
	if req.TimeoutMS < 0 {
		return nil, fmt.Errorf("create execution on %s: timeout_ms must not be negative", machineID)
	}
	var e Execution
	err = c.do(ctx, &call{
		op: "create execution on " + machineID, method: http.MethodPost,
		path: "/v1/machines/" + p + "/executions", body: req, idemKey: idempotencyKey, needsKey: true,
	}, &e)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

func execPath(machineID, execID string) (string, error) {
	mp, err := pathID("machine", machineID)
	if err != nil {
		return "", err
	}
	ep, err := pathID("execution", execID)
	if err != nil {
		return "", err
	}
	return "/v1/machines/" + mp + "/executions/" + ep, nil
}

// GetExecution reads an execution's status.
func (c *Client) GetExecution(ctx context.Context, machineID, execID string) (*Execution, error) {
	p, err := execPath(machineID, execID)
	if err != nil {
		return nil, err
	}
	var e Execution
	if err := c.do(ctx, &call{op: "get execution " + execID, method: http.MethodGet, path: p}, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// ListExecutions reads one page of a machine's executions.
func (c *Client) ListExecutions(ctx context.Context, machineID string, opts ListOptions) (*Page[Execution], error) {
	p, err := pathID("machine", machineID)
	if err != nil {
		return nil, err
	}
	var page Page[Execution]
	err = c.do(ctx, &call{
		op: "list executions of " + machineID, method: http.MethodGet,
		path: "/v1/machines/" + p + "/executions", query: listQuery(opts),
	}, &page)
	if err != nil {
		return nil, err
	}
	return &page, nil
}

// ExecutionOutput reads an execution's captured stdout and stderr.
func (c *Client) ExecutionOutput(ctx context.Context, machineID, execID string) (*ExecutionOutput, error) {
	p, err := execPath(machineID, execID)
	if err != nil {
		return nil, err
	}
	var o ExecutionOutput
	if err := c.do(ctx, &call{op: "get output of execution " + execID, method: http.MethodGet, path: p + "/output"}, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

// ListExecutionEvents reads one page of an execution's event log.
func (c *Client) ListExecutionEvents(ctx context.Context, machineID, execID string, opts ListOptions) (*Page[ExecutionEvent], error) {
	p, err := execPath(machineID, execID)
	if err != nil {
		return nil, err
	}
	var page Page[ExecutionEvent]
	err = c.do(ctx, &call{
		op: "list events of execution " + execID, method: http.MethodGet,
		path: p + "/events", query: listQuery(opts),
	}, &page)
	if err != nil {
		return nil, err
	}
	return &page, nil
}

// AllExecutionEvents iterates over an execution's whole event log.
func (c *Client) AllExecutionEvents(ctx context.Context, machineID, execID string) iter.Seq2[ExecutionEvent, error] {
	return paginate(func(cursor string) (*Page[ExecutionEvent], error) {
		return c.ListExecutionEvents(ctx, machineID, execID, ListOptions{Cursor: cursor})
	})
}

// DeleteExecution cancels an execution if it still runs and removes it. The
// spec defines no idempotency key here; pass one anyway to let the client
// retry the call on transient failures (it is sent and harmless), or "" to
// send it exactly once.
func (c *Client) DeleteExecution(ctx context.Context, machineID, execID, idempotencyKey string) (*Execution, error) {
	p, err := execPath(machineID, execID)
	if err != nil {
		return nil, err
	}
	var e Execution
	err = c.do(ctx, &call{op: "delete execution " + execID, method: http.MethodDelete, path: p, idemKey: idempotencyKey}, &e)
	if err != nil {
		return nil, err
	}
	return &e, nil
}
