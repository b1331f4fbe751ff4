package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The intake's floor: the same start a delivery makes, sent as a bare gRPC
// request with the generated WorkflowServiceClient (no SDK client, no
// interceptors, no compression) over its own connection. Its CPU per call
// in this process is what one Temporal call costs on this machine at the
// least; the webhook makes one per delivery and must before it answers.

// bareClient is a plain gRPC connection to the dev server.
type bareClient struct {
	conn *grpc.ClientConn
	ws   workflowservice.WorkflowServiceClient
	ns   string
}

func dialBare(addr, namespace string) (*bareClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("intake: dial the dev server for the bare gRPC calls: %w", err)
	}
	return &bareClient{conn: conn, ws: workflowservice.NewWorkflowServiceClient(conn), ns: namespace}, nil
}

func (b *bareClient) Close() error { return b.conn.Close() }

// bareStart is what a start request carries, encoded as the SDK encodes
// it (JSON payloads, typed search attributes).
type bareStart struct {
	id, workflowType, taskQueue string
	input                       []any
	signal                      string // "": a plain start
	signalArg                   any
	attrs                       map[string]bareAttr
	reuse                       enumspb.WorkflowIdReusePolicy
	conflict                    enumspb.WorkflowIdConflictPolicy
	summary                     string // the static summary, "" for none
}

// bareAttr is a search attribute's value and its Temporal type (Keyword, Int).
type bareAttr struct {
	value any
	typ   string
}

// call sends s once: SignalWithStartWorkflowExecution when it carries a
// signal, StartWorkflowExecution otherwise.
func (b *bareClient) call(ctx context.Context, s bareStart) error {
	dc := converter.GetDefaultDataConverter()
	input, err := dc.ToPayloads(s.input...)
	if err != nil {
		return err
	}
	sa := &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{}}
	for k, a := range s.attrs {
		p, err := dc.ToPayload(a.value)
		if err != nil {
			return err
		}
		p.Metadata["type"] = []byte(a.typ)
		sa.IndexedFields[k] = p
	}
	var meta *sdkpb.UserMetadata
	if s.summary != "" {
		p, err := dc.ToPayload(s.summary)
		if err != nil {
			return err
		}
		meta = &sdkpb.UserMetadata{Summary: p}
	}
	wt, tq := &commonpb.WorkflowType{Name: s.workflowType}, &taskqueuepb.TaskQueue{Name: s.taskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL}
	if s.signal == "" {
		_, err = b.ws.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
			Namespace: b.ns, WorkflowId: s.id, WorkflowType: wt, TaskQueue: tq, Input: input, Identity: "bench-bare",
			RequestId: requestID(), WorkflowIdReusePolicy: s.reuse, WorkflowIdConflictPolicy: s.conflict, SearchAttributes: sa, UserMetadata: meta,
		})
		return err
	}
	sig, err := dc.ToPayloads(s.signalArg)
	if err != nil {
		return err
	}
	_, err = b.ws.SignalWithStartWorkflowExecution(ctx, &workflowservice.SignalWithStartWorkflowExecutionRequest{
		Namespace: b.ns, WorkflowId: s.id, WorkflowType: wt, TaskQueue: tq, Input: input, Identity: "bench-bare",
		SignalName: s.signal, SignalInput: sig, RequestId: requestID(), WorkflowIdReusePolicy: s.reuse, SearchAttributes: sa, UserMetadata: meta,
	})
	return err
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
