package channel

import (
	"net/http"
	"time"
)

// DefaultConcurrency is how many calls an HTTP provider adapter keeps
// connections for when its configuration does not say.
const DefaultConcurrency = 64

// Transport is the keep-alive HTTP transport of one provider adapter,
// sized to the calls it makes at once: it keeps up to n connections to the
// provider, idle or busy, so a burst of n calls finds them open and a call
// beyond n waits for one (under its own deadline) instead of opening yet
// another. http.DefaultTransport keeps two idle connections per host: at
// 64 calls at once, every call past the second would pay a new TCP and TLS
// handshake. Each adapter gets its own, so one provider's calls do not
// take another's connections.
func Transport(n int) *http.Transport {
	if n <= 0 {
		n = DefaultConcurrency
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = n
	t.MaxIdleConnsPerHost = n
	t.MaxConnsPerHost = n
	// Drop an idle connection well before a provider's load balancer does
	// (60 s and 75 s are common): a POST written on a connection the server
	// is closing has an unknown outcome, and a non-idempotent provider's
	// unknown outcome is never resent.
	t.IdleConnTimeout = 30 * time.Second
	return t
}
