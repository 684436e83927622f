package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Scopes of API keys; each includes the ones before it.
const (
	ScopeRead  = "read"  // status, contacts, opt-outs, ops summary
	ScopeWrite = "write" // intents, opt-outs, conversations
	ScopeAdmin = "admin" // resolutions, the sandbox
)

var scopeRank = map[string]int{ScopeRead: 1, ScopeWrite: 2, ScopeAdmin: 3}

// APIKey is a configured key: the SHA-256 of the key and its scope. The key
// itself is never stored or logged.
type APIKey struct {
	Scope string
	Hash  [32]byte
}

// ParseAPIKeys reads DISPATCHER_API_KEYS: "scope:sha256hex,…".
func ParseAPIKeys(s string) ([]APIKey, error) {
	var out []APIKey
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		scope, hx, ok := strings.Cut(part, ":")
		if !ok || scopeRank[scope] == 0 {
			return nil, fmt.Errorf("API key %q: want scope:sha256hex with scope read, write or admin", redact(part))
		}
		b, err := hex.DecodeString(hx)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("API key for %s: the hash must be 64 hex digits (sha256 of the key)", scope)
		}
		var k APIKey
		k.Scope = scope
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

// requireScope lets a request through with a bearer key of at least scope:
// 401 without a known key, 403 with one of a lesser scope.
func (s *Server) requireScope(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get("Authorization")
			token, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || token == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="dispatcher"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "an API key is required: Authorization: Bearer <key>")
			}
			sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
			found := ""
			for _, k := range s.APIKeys {
				if subtle.ConstantTimeCompare(sum[:], k.Hash[:]) == 1 {
					found = k.Scope
				}
			}
			if found == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="dispatcher", error="invalid_token"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "unknown API key")
			}
			if scopeRank[found] < scopeRank[scope] {
				return echo.NewHTTPError(http.StatusForbidden, "this API key's scope is "+found+"; this needs "+scope)
			}
			return next(c)
		}
	}
}
