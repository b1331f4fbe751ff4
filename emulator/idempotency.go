package emulator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

type idemKey struct{ scope, key string }

type idemRecord struct {
	fp       string
	inflight bool
	resp     *storedResponse
	at       time.Time
}

func scopeOf(apiKey string) string {
	h := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(h[:8])
}

// fingerprint hashes method, path and the canonical JSON body.
func fingerprint(method, path string, body []byte) string {
	canon := body
	if len(strings.TrimSpace(string(body))) > 0 {
		var v any
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if err := dec.Decode(&v); err == nil {
			if b, err := json.Marshal(v); err == nil {
				canon = b
			}
		}
	} else {
		canon = nil
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", method, path)
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (s *Server) idemBegin(k idemKey, fp string) (*storedResponse, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.idem[k]; r != nil {
		if !r.inflight && time.Since(r.at) > s.cfg.IdempotencyTTL {
			delete(s.idem, k)
		} else {
			if r.fp != fp {
				return nil, errBody(http.StatusConflict, dedalus.CodeIdempotencyKeyReused,
					"idempotency key reused with different request parameters", false, 0,
					map[string]string{"expected_request_hash": r.fp, "provided_request_hash": fp})
			}
			if r.inflight {
				return nil, errBody(http.StatusTooManyRequests, dedalus.CodeRateLimited,
					"idempotency key is already in-flight", true, inflightRetryMS, nil)
			}
			s.counters.IdempotentReplays++
			return r.resp, nil
		}
	}
	s.idem[k] = &idemRecord{fp: fp, inflight: true, at: time.Now()}
	return nil, nil
}

func (s *Server) idemFinish(k idemKey, resp *storedResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp == nil {
		delete(s.idem, k)
		return
	}
	if r := s.idem[k]; r != nil {
		r.inflight, r.resp, r.at = false, resp, time.Now()
	}
}
