package dedalus

import (
	"context"
	"fmt"
	"net/http"
)

// CreatePreview exposes a machine port at a public URL (Preview.URL).
func (c *Client) CreatePreview(ctx context.Context, machineID string, req CreatePreviewRequest, idempotencyKey string) (*Preview, error) {
	p, err := pathID("machine", machineID)
	if err != nil {
		return nil, err
	}
	if req.Port < 1 || req.Port > 65535 {
		return nil, fmt.Errorf("create preview on %s: port %d out of range 1-65535", machineID, req.Port)
	}
	switch req.Protocol {
	case "", ProtocolHTTP, ProtocolHTTPS:
	default:
		return nil, fmt.Errorf("create preview on %s: protocol %q must be http or https", machineID, req.Protocol)
	}
	switch req.Visibility {
	case "", VisibilityPublic, VisibilityPrivate, VisibilityOrg:
	default:
		return nil, fmt.Errorf("create preview on %s: visibility %q must be public, private or org", machineID, req.Visibility)
	}
	var pr Preview
	err = c.do(ctx, &call{
		op: "create preview on " + machineID, method: http.MethodPost,
		path: "/v1/machines/" + p + "/previews", body: req, idemKey: idempotencyKey, needsKey: true,
	}, &pr)
	if err != nil {
		return nil, err
	}
	return &pr, nil
}

func previewPath(machineID, previewID string) (string, error) {
	mp, err := pathID("machine", machineID)
	if err != nil {
		return "", err
	}
	pp, err := pathID("preview", previewID)
	if err != nil {
		return "", err
	}
	return "/v1/machines/" + mp + "/previews/" + pp, nil
}

// GetPreview reads a preview.
func (c *Client) GetPreview(ctx context.Context, machineID, previewID string) (*Preview, error) {
	p, err := previewPath(machineID, previewID)
	if err != nil {
		return nil, err
	}
	var pr Preview
	if err := c.do(ctx, &call{op: "get preview " + previewID, method: http.MethodGet, path: p}, &pr); err != nil {
		return nil, err
	}
	return &pr, nil
}

// ListPreviews reads one page of a machine's previews.
func (c *Client) ListPreviews(ctx context.Context, machineID string, opts ListOptions) (*Page[Preview], error) {
	p, err := pathID("machine", machineID)
	if err != nil {
		return nil, err
	}
	var page Page[Preview]
	err = c.do(ctx, &call{
		op: "list previews of " + machineID, method: http.MethodGet,
		path: "/v1/machines/" + p + "/previews", query: listQuery(opts),
	}, &page)
	if err != nil {
		return nil, err
	}
	return &page, nil
}

// DeletePreview closes a preview. As with DeleteExecution, an idempotency key
// is optional and only enables retries on transient failures.
func (c *Client) DeletePreview(ctx context.Context, machineID, previewID, idempotencyKey string) (*Preview, error) {
	p, err := previewPath(machineID, previewID)
	if err != nil {
		return nil, err
	}
	var pr Preview
	err = c.do(ctx, &call{op: "delete preview " + previewID, method: http.MethodDelete, path: p, idemKey: idempotencyKey}, &pr)
	if err != nil {
		return nil, err
	}
	return &pr, nil
}
