package dedalus

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// StatusStream reads a machine's lifecycle changes from the Server-Sent Events
// endpoint GET /v1/machines/{id}/status/stream. The server closes the stream
// once the machine reaches its desired state; Next then returns io.EOF.
type StatusStream struct {
	machineID string
	body      io.ReadCloser
	r         *bufio.Reader
	lastID    string
	cancel    context.CancelFunc
}

// maxSSELine bounds one line of the stream (a LifecycleResponse is well under this).
const maxSSELine = 1 << 20

// WatchMachine opens the status stream. lastEventID resumes after a revision
// already seen ("" for none). Close the stream when done.
func (c *Client) WatchMachine(ctx context.Context, id, lastEventID string) (*StatusStream, error) {
	p, err := pathID("machine", id)
	if err != nil {
		return nil, err
	}
	op := "watch machine " + id
	sctx, cancel := context.WithCancel(ctx)
	req, err := c.newRequest(sctx, &call{op: op, method: http.MethodGet, path: "/v1/machines/" + p + "/status/stream"}, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if lastEventID != "" {
		req.Header.Set(HeaderLastEventID, lastEventID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, &transportError{op: op, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		cancel()
		return nil, decodeError(op, resp, b)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "text/event-stream" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s: expected text/event-stream, got %q", op, resp.Header.Get("Content-Type"))
	}
	return &StatusStream{machineID: id, body: resp.Body, r: bufio.NewReaderSize(resp.Body, 16<<10), lastID: lastEventID, cancel: cancel}, nil
}

// Next blocks for the next status event. It returns io.EOF when the server
// ends the stream, and the context's error when it is cancelled.
func (s *StatusStream) Next() (*Machine, error) {
	var ev sseEvent
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF && ev.data.Len() > 0 {
				// A final event without its blank line still counts.
				return s.dispatch(ev.event, ev.id, ev.data.String())
			}
			return nil, err
		}
		if line != "" {
			ev.add(line)
			continue
		}
		if ev.data.Len() == 0 {
			ev.reset()
			continue
		}
		m, err := s.dispatch(ev.event, ev.id, ev.data.String())
		if m == nil && err == nil {
			ev.reset()
			continue
		}
		return m, err
	}
}

// sseEvent is a server-sent event being read, field line by field line.
type sseEvent struct {
	event, id string
	data      strings.Builder
}

// add applies one non-blank line of the event: a field, or a comment.
func (e *sseEvent) add(line string) {
	if strings.HasPrefix(line, ":") {
		return // comment / keepalive
	}
	field, value, _ := strings.Cut(line, ":")
	value = strings.TrimPrefix(value, " ")
	switch field {
	case "event":
		e.event = value
	case "id":
		e.id = value
	case "data":
		if e.data.Len() > 0 {
			e.data.WriteByte('\n')
		}
		e.data.WriteString(value)
	}
}

// reset forgets the event read so far.
func (e *sseEvent) reset() {
	e.event, e.id = "", ""
	e.data.Reset()
}

func (s *StatusStream) dispatch(event, id, data string) (*Machine, error) {
	if event != "" && event != "status" && event != "message" {
		return nil, nil // an event type this client does not know: skip it
	}
	var m Machine
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		return nil, fmt.Errorf("watch machine %s: decode event: %w", s.machineID, err)
	}
	if id != "" {
		s.lastID = id
	} else if m.Status.Revision != "" {
		s.lastID = m.Status.Revision
	}
	return &m, nil
}

func (s *StatusStream) readLine() (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := s.r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > maxSSELine {
			return "", fmt.Errorf("watch machine %s: event line longer than %d bytes", s.machineID, maxSSELine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// LastEventID is the ID of the last event read, for resuming with WatchMachine.
func (s *StatusStream) LastEventID() string { return s.lastID }

// Close ends the stream.
func (s *StatusStream) Close() error {
	s.cancel()
	return s.body.Close()
}
