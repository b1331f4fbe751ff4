package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
)

func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

const (
	defaultLimit = 50
	maxLimit     = 200
)

// pageParams parses limit and cursor. The cursor is an opaque token holding
// the creation sequence of the last item returned.
func pageParams(r *http.Request) (int, int64, *apiError) {
	q := r.URL.Query()
	limit := defaultLimit
	if v := q.Get("limit"); v != "" {
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != v || n < 0 {
			return 0, 0, validation("query.limit", "must be a non-negative integer", v)
		}
		if n > 0 {
			limit = min(n, maxLimit)
		}
	}
	var after int64
	if v := q.Get("cursor"); v != "" {
		var ok bool
		after, ok = decodeCursor(v)
		if !ok {
			return 0, 0, validation("query.cursor", "invalid cursor", v)
		}
	}
	return limit, after, nil
}

func encodeCursor(seq int64) string {
	return hex.EncodeToString([]byte(fmt.Sprintf("c1:%d", seq)))
}

func decodeCursor(s string) (int64, bool) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return 0, false
	}
	var n int64
	if _, err := fmt.Sscanf(string(b), "c1:%d", &n); err != nil || encodeCursor(n) != s || n < 0 {
		return 0, false
	}
	return n, true
}

// paginate returns the items with seq > after, at most limit, and the next cursor.
func paginate[T any](all []T, seq func(T) int64, limit int, after int64) ([]T, string) {
	i := sort.Search(len(all), func(i int) bool { return seq(all[i]) > after })
	out := make([]T, 0, min(limit, len(all)-i))
	for ; i < len(all) && len(out) < limit; i++ {
		out = append(out, all[i])
	}
	next := ""
	if i < len(all) && len(out) > 0 {
		next = encodeCursor(seq(out[len(out)-1]))
	}
	return out, next
}
