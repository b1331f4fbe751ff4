package intake

import (
	"container/list"
	"context"
	"net/http"
	"sync"
)

// RouterFunc adapts a function to a Router.
type RouterFunc func(ctx context.Context, ev Event) (Result, error)

// Route implements Router.
func (f RouterFunc) Route(ctx context.Context, ev Event) (Result, error) { return f(ctx, ev) }

// Mux routes events by their X-GitHub-Event name. Events without a route
// (ping included) go to Acknowledge, which answers ping with pong and
// everything else with 200 and a short reason.
//
// Routes are registered before the Mux serves; Handle is not safe to call
// concurrently with Route.
type Mux struct {
	routes map[string]Router
}

// NewMux returns a Mux with no routes.
func NewMux() *Mux { return &Mux{routes: map[string]Router{}} }

// Handle routes events named event (e.g. "pull_request", "workflow_job") to r.
// It panics on an empty name, a nil router or a second route for one event:
// those are wiring mistakes.
func (m *Mux) Handle(event string, r Router) {
	if event == "" || r == nil {
		panic("intake: Mux.Handle needs an event name and a router")
	}
	if _, dup := m.routes[event]; dup {
		panic("intake: Mux.Handle: second route for event " + event)
	}
	m.routes[event] = r
}

// Route implements Router.
func (m *Mux) Route(ctx context.Context, ev Event) (Result, error) {
	if r, ok := m.routes[ev.Name]; ok {
		return r.Route(ctx, ev)
	}
	return Acknowledge{}.Route(ctx, ev)
}

// DefaultRecentDeliveries is how many delivery IDs the webhook server
// remembers (about 1 MB).
const DefaultRecentDeliveries = 10000

// Dedupe answers a delivery that next already accepted (same
// X-GitHub-Delivery, Result.Accepted) with 200 "duplicate delivery" instead
// of routing it again. GitHub redelivers on timeouts and on an operator's
// click; the redelivery must change nothing.
//
// The memory is per process and bounded; the workflows also deduplicate by
// the delivery ID they receive, which covers several replicas, restarts and
// two copies of one delivery in flight at once. Deliveries without an ID are
// never deduplicated.
func Dedupe(next Router, seen *RecentDeliveries) Router {
	return RouterFunc(func(ctx context.Context, ev Event) (Result, error) {
		if ev.DeliveryID != "" {
			if wid, ok := seen.Get(ev.DeliveryID); ok {
				return Result{Status: http.StatusOK, Reason: "duplicate delivery", WorkflowID: wid, Code: "duplicate"}, nil
			}
		}
		res, err := next.Route(ctx, ev)
		if err == nil && res.Accepted && ev.DeliveryID != "" {
			seen.Add(ev.DeliveryID, res.WorkflowID)
		}
		return res, err
	})
}

// RecentDeliveries is a bounded, least-recently-used set of delivery IDs,
// each with the workflow ID it reached. It is safe for concurrent use.
type RecentDeliveries struct {
	mu    sync.Mutex
	limit int
	order *list.List // front = most recently used; values are *delivery
	byID  map[string]*list.Element
}

type delivery struct{ id, workflowID string }

// NewRecentDeliveries remembers up to limit deliveries (at least 1).
func NewRecentDeliveries(limit int) *RecentDeliveries {
	if limit < 1 {
		limit = 1
	}
	return &RecentDeliveries{limit: limit, order: list.New(), byID: make(map[string]*list.Element, limit)}
}

// Get reports whether id was added (and not yet evicted) and the workflow
// ID recorded with it.
func (d *RecentDeliveries) Get(id string) (workflowID string, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byID[id]
	if !ok {
		return "", false
	}
	d.order.MoveToFront(e)
	return e.Value.(*delivery).workflowID, true
}

// Add remembers id, evicting the least recently used delivery when full.
func (d *RecentDeliveries) Add(id, workflowID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byID[id]; ok {
		e.Value.(*delivery).workflowID = workflowID
		d.order.MoveToFront(e)
		return
	}
	d.byID[id] = d.order.PushFront(&delivery{id: id, workflowID: workflowID})
	for d.order.Len() > d.limit {
		old := d.order.Back()
		d.order.Remove(old)
		delete(d.byID, old.Value.(*delivery).id)
	}
}

// Len is the number of deliveries remembered.
func (d *RecentDeliveries) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.order.Len()
}
