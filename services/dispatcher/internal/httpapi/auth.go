package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"
)

// Scopes of API keys; each includes the ones before it.
const (
	ScopeRead  = "read"  // status, contacts, opt-outs, ops summary
	ScopeWrite = "write" // intents, the bank's opt-outs, conversations
	// ScopeCompliance also sets and lifts legal do-not-contact states and
	// lifts opt-outs the debtor made.
	ScopeCompliance = "compliance"
	ScopeAdmin      = "admin" // resolutions, the sandbox
)

var scopeRank = map[string]int{ScopeRead: 1, ScopeWrite: 2, ScopeCompliance: 3, ScopeAdmin: 4}

// APIKey is a configured key: the SHA-256 of the key, its scope and its
// id. The key itself is never stored or logged; the id names it where a
// change is recorded (an opt-out's actor).
type APIKey struct {
	ID    string
	Scope string
	Hash  [32]byte
}

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseAPIKeys reads DISPATCHER_API_KEYS: "scope:sha256hex[:id],…". Without
// an id a key is named by the first 12 hex digits of its hash.
func ParseAPIKeys(s string) ([]APIKey, error) {
	var out []APIKey
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		scope, rest, ok := strings.Cut(part, ":")
		if !ok || scopeRank[scope] == 0 {
			return nil, fmt.Errorf("API key %q: want scope:sha256hex with scope read, write, compliance or admin", redact(part))
		}
		hx, id, named := strings.Cut(rest, ":")
		b, err := hex.DecodeString(hx)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("API key for %s: the hash must be 64 hex digits (sha256 of the key)", scope)
		}
		if !named {
			id = strings.ToLower(hx[:12])
		} else if !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("API key for %s: the id must be 1-64 of A-Z a-z 0-9 . _ -", scope)
		}
		k := APIKey{ID: id, Scope: scope}
		copy(k.Hash[:], b)
		out = append(out, k)
	}
	return out, nil
}

// HashAPIKey is how a key is configured: hex(sha256(key)).
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func redact(s string) string {
	if len(s) > 12 {
		return s[:8] + "…"
	}
	return s
}

// bearer reads "Authorization: Bearer <token>"; the scheme is matched
// without regard to case (RFC 6750, RFC 9110 §11.1).
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// lookup returns the configured key whose hash is key's.
func (s *Server) lookup(key string) (APIKey, bool) {
	if key == "" {
		return APIKey{}, false
	}
	sum := sha256.Sum256([]byte(key))
	var found APIKey
	ok := false
	for _, k := range s.APIKeys {
		if subtle.ConstantTimeCompare(sum[:], k.Hash[:]) == 1 {
			found, ok = k, true
		}
	}
	return found, ok
}

// ctxAPIKey is where requireScope leaves the caller's key.
const ctxAPIKey = "dispatcher.apikey"

// callerKey is the key the request was authorised with.
func callerKey(c echo.Context) (APIKey, bool) {
	k, ok := c.Get(ctxAPIKey).(APIKey)
	return k, ok
}

// Actor names who made a change through the API: "api-key:<id>". Every
// recorded change (opt-outs, and holds when they come) takes it.
func Actor(c echo.Context) string {
	if k, ok := callerKey(c); ok {
		return "api-key:" + k.ID
	}
	return ""
}

// hasScope reports whether the caller's key has at least scope.
func hasScope(c echo.Context, scope string) bool {
	k, ok := callerKey(c)
	return ok && scopeRank[k.Scope] >= scopeRank[scope]
}

// requireScope lets a request through with a bearer key of at least scope:
// 401 without a known key, 403 with one of a lesser scope.
func (s *Server) requireScope(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := bearer(c.Request())
			if !ok {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="dispatcher"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "an API key is required: Authorization: Bearer <key>")
			}
			k, ok := s.lookup(token)
			if !ok {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="dispatcher", error="invalid_token"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "unknown API key")
			}
			if scopeRank[k.Scope] < scopeRank[scope] {
				return echo.NewHTTPError(http.StatusForbidden, "this API key's scope is "+k.Scope+"; this needs "+scope)
			}
			c.Set(ctxAPIKey, k)
			return next(c)
		}
	}
}
