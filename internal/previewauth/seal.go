package previewauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// MinKeyLen is the least length of a session key (ROUTER_SESSION_KEY).
const MinKeyLen = 32

// errSeal is every failure to open a sealed value: tampered, for another
// purpose or host, under an unknown key, or not base64. The reason is not
// told apart on purpose.
var errSeal = errors.New("invalid or tampered token")

// sealer encrypts and authenticates the router's tokens (login return,
// OAuth state, ticket, session cookie) with AES-256-GCM. The first key
// seals; every key opens, so a key can be rotated by moving it to the
// previous-key setting for one session lifetime.
//
// The additional data binds a token to its purpose and, for tickets and
// session cookies, to the preview host it was issued for: a session cookie
// copied to another preview host does not open there.
type sealer struct {
	aeads []cipher.AEAD
}

func newSealer(keys []string) (*sealer, error) {
	s := &sealer{}
	for i, k := range keys {
		if k == "" && i > 0 {
			continue
		}
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("session key %d is %d bytes; want at least %d (e.g. openssl rand -base64 48)", i+1, len(k), MinKeyLen)
		}
		// Derive the AES key, so a key setting of any length and alphabet
		// gives a uniform 256-bit key, and the key is used for nothing else.
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte("drydock preview auth v1"))
		block, err := aes.NewCipher(m.Sum(nil))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
	}
	if len(s.aeads) == 0 {
		return nil, errors.New("a session key is required")
	}
	return s, nil
}

func aad(purpose, host string) []byte { return []byte("drydock/" + purpose + "\x00" + host) }

// seal encrypts v (JSON) for purpose and host.
func (s *sealer) seal(purpose, host string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	a := s.aeads[0]
	buf := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	buf = a.Seal(buf, buf, plain, aad(purpose, host))
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// maxSealed bounds what open decodes (a cookie or a query parameter).
const maxSealed = 4096

// open decrypts a token sealed for purpose and host into v.
func (s *sealer) open(purpose, host, token string, v any) error {
	if token == "" || len(token) > maxSealed {
		return errSeal
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return errSeal
	}
	ad := aad(purpose, host)
	for _, a := range s.aeads {
		if len(raw) < a.NonceSize()+a.Overhead() {
			return errSeal
		}
		plain, err := a.Open(nil, raw[:a.NonceSize()], raw[a.NonceSize():], ad)
		if err != nil {
			continue
		}
		if json.Unmarshal(plain, v) != nil {
			return errSeal
		}
		return nil
	}
	return errSeal
}
