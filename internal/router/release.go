package router

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The requests that waited for a wake are released to the woken preview in
// a controlled way: at most releaseWidth of them are in flight to it at
// once (until each one's response headers arrive), in about the order
// they arrived (the wake wakes its waiters in the order they joined, and
// a channel's blocked senders go in order). A burst of cold requests (a page's assets, many clients after a
// deploy) otherwise reaches a just-resumed app all at once: it opens as
// many connections and each request shares the app with all the others,
// so they all finish late. In order, the first finish first and the
// connections are reused. Requests that find the preview warm are not
// held back.
const (
	// releaseWidth bounds the woken-burst requests in flight to a preview.
	releaseWidth = 32
	// releaseHold is the longest a released request keeps its place while
	// waiting for its response headers: a long poll or a slow page must
	// not hold up the requests behind it for longer.
	releaseHold = 250 * time.Millisecond
)

// coldKey marks a request that waited for its preview's wake.
type coldKey struct{}

func withCold(ctx context.Context) context.Context { return context.WithValue(ctx, coldKey{}, true) }

func isCold(ctx context.Context) bool {
	v, _ := ctx.Value(coldKey{}).(bool)
	return v
}

// releaser admits the woken-burst requests of one preview.
type releaser struct {
	slots   chan struct{}
	hold    time.Duration
	waiting atomic.Int32 // requests waiting for a place
}

func newReleaser(width int, hold time.Duration) *releaser {
	return &releaser{slots: make(chan struct{}, width), hold: hold}
}

// acquire waits for a place (blocked senders of a channel are woken in
// order, so requests go in the order they arrived). The returned release
// gives it back; it is safe to call more than once, and is called after
// hold in any case.
func (r *releaser) acquire(ctx context.Context) (release func(), err error) {
	r.waiting.Add(1)
	select {
	case r.slots <- struct{}{}:
		r.waiting.Add(-1)
	case <-ctx.Done():
		r.waiting.Add(-1)
		return nil, ctx.Err()
	}
	var once sync.Once
	give := func() { once.Do(func() { <-r.slots }) }
	t := time.AfterFunc(r.hold, give)
	return func() { t.Stop(); give() }, nil
}

// roundTripReleased sends req through rt's transport, holding one of the
// preview's release places until the response headers arrive when req
// waited for a wake.
func (u *upstream) roundTripReleased(req *http.Request) (*http.Response, error) {
	if !isCold(req.Context()) {
		return u.rt.transport.RoundTrip(req)
	}
	release, err := u.p.release.acquire(req.Context())
	if err != nil {
		return nil, err
	}
	defer release()
	if tr := trackOf(req.Context()); tr != nil {
		tr.sent = time.Now() // the wait for a place is not the preview's time
	}
	return u.rt.transport.RoundTrip(req)
}

// bufferPool lends the reverse proxies their copy buffers, so a burst does
// not allocate 32 KiB per request (and collect it again mid-burst).
type bufferPool struct{ p sync.Pool }

const proxyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, proxyBufferSize); return &b }}}
}

func (b *bufferPool) Get() []byte { return *(b.p.Get().(*[]byte)) }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != proxyBufferSize {
		return
	}
	buf = buf[:proxyBufferSize]
	b.p.Put(&buf)
}
