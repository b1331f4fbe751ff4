package emulator

import (
	"net/http"

	"github.com/drydock-dev/drydock/dedalus"
)

// child is what a machine has several of, each created, read, listed and
// deleted through the API the same way: executions and previews.
type child interface {
	comparable
	key() string     // its id
	sequence() int64 // its creation sequence within the machine
}

func (e *execution) key() string     { return e.id }
func (e *execution) sequence() int64 { return e.seq }
func (p *preview) key() string       { return p.id }
func (p *preview) sequence() int64   { return p.seq }

// children are a machine's executions or previews: by id, and in creation
// order, the order the API lists them in. Guarded by Server.mu.
type children[T child] struct {
	kind  string // "execution", as a 404 names it
	byID  map[string]T
	order []T
	seq   int64 // the last sequence handed out
}

func newChildren[T child](kind string) children[T] {
	return children[T]{kind: kind, byID: map[string]T{}}
}

// next hands out the next creation sequence.
func (cs *children[T]) next() int64 {
	cs.seq++
	return cs.seq
}

func (cs *children[T]) add(x T) {
	cs.byID[x.key()] = x
	cs.order = append(cs.order, x)
}

// get finds the child id, or answers 404.
func (cs *children[T]) get(id string) (T, *apiError) {
	x, ok := cs.byID[id]
	if !ok {
		return x, notFound(cs.kind, id)
	}
	return x, nil
}

// remove deletes x; it is false when x was not there (already deleted).
func (cs *children[T]) remove(x T) bool {
	if cur, ok := cs.byID[x.key()]; !ok || cur != x {
		return false
	}
	delete(cs.byID, x.key())
	for i, y := range cs.order {
		if y == x {
			// Into a new array, never shifting one a caller may be ranging over.
			cs.order = append(cs.order[:i:i], cs.order[i+1:]...)
			break
		}
	}
	return true
}

// listChildren answers a page of the children of the request's machine
// that of picks, each shown by resp.
func listChildren[T child, R any](s *Server, c *call, of func(*machine) *children[T], resp func(T) R) (int, any, error) {
	limit, after, perr := pageParams(c.r)
	if perr != nil {
		return 0, nil, perr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return 0, nil, err
	}
	page, next := paginate(of(m).order, T.sequence, limit, after)
	return http.StatusOK, pageOf(page, next, resp), nil
}

// pageOf is a page of items, each shown by resp.
func pageOf[T, R any](page []T, next string, resp func(T) R) dedalus.Page[R] {
	items := make([]R, len(page))
	for i, x := range page {
		items[i] = resp(x)
	}
	return dedalus.Page[R]{Items: items, NextCursor: next}
}
