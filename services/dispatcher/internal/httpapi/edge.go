package httpapi

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// The edge: who a client is, and how much of the server one client may hold.

// HTTPConfig bounds what one connection may hold of the server. Zero fields
// take the defaults below.
type HTTPConfig struct {
	ReadHeaderTimeout time.Duration // default 5s
	ReadTimeout       time.Duration // the whole request, body included; default 15s
	WriteTimeout      time.Duration // default 30s
	IdleTimeout       time.Duration // an idle keep-alive connection; default 60s
	MaxHeaderBytes    int           // default 64 KiB
}

// Defaults of HTTPConfig and of the per-IP limits.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultPublicConnsPerIP  = 10
	// limiterEntries bounds the clients the per-IP limiters remember: an
	// attacker with many addresses evicts the oldest, never grows the heap.
	limiterEntries = 10_000
)

// HTTPServer returns an http.Server for the API with its timeouts set, so a
// client that trickles a body or holds an idle connection is cut off.
func (s *Server) HTTPServer(c HTTPConfig) *http.Server {
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}
}

// ipExtractor is the socket's address, unless it is one of the trusted
// proxies: then X-Forwarded-For is read from the right, and the first
// address that is not a trusted proxy is the client. Loopback and private
// networks are trusted only when listed.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// clientKey is the key a client is limited by: its address, or for IPv6
// its /64 (one host's usual allocation). An address that does not parse
// is the zero Addr: such clients share one bucket.
func clientKey(c echo.Context) netip.Addr {
	a, err := netip.ParseAddr(c.RealIP())
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// ipLimiter is a token bucket per client, remembering at most max clients
// (least recently seen evicted first). It reads the clock it is handed.
type ipLimiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	max     int
	lru     *list.List // of *limEntry, most recent first
	entries map[netip.Addr]*list.Element
}

type limEntry struct {
	key netip.Addr
	lim *rate.Limiter
}

func newIPLimiter(perSec float64, burst, max int) *ipLimiter {
	return &ipLimiter{rate: rate.Limit(perSec), burst: burst, max: max, lru: list.New(), entries: map[netip.Addr]*list.Element{}}
}

func (l *ipLimiter) allow(key netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.entries[key]
	if ok {
		l.lru.MoveToFront(el)
	} else {
		for l.lru.Len() >= l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.entries, old.Value.(*limEntry).key)
		}
		el = l.lru.PushFront(&limEntry{key: key, lim: rate.NewLimiter(l.rate, l.burst)})
		l.entries[key] = el
	}
	return el.Value.(*limEntry).lim.AllowN(now, 1)
}

// size is how many clients the limiter remembers.
func (l *ipLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// limit refuses a client over its rate with 429.
func (s *Server) limit(l *ipLimiter) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !l.allow(clientKey(c), s.Now()) {
				c.Response().Header().Set("Retry-After", "1")
				return echo.NewHTTPError(http.StatusTooManyRequests, "too many requests from this address; slow down")
			}
			return next(c)
		}
	}
}

// connLimit counts the requests each client has in flight on the public
// routes: one connection holds at most one, so this caps a client's
// connections that are reading a body or being answered there.
type connLimit struct {
	mu     sync.Mutex
	max    int
	active map[netip.Addr]int
}

func (s *Server) holdLimit(cl *connLimit) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			k := clientKey(c)
			cl.mu.Lock()
			if cl.active[k] >= cl.max {
				cl.mu.Unlock()
				c.Response().Header().Set("Connection", "close")
				return echo.NewHTTPError(http.StatusTooManyRequests, "too many concurrent requests from this address")
			}
			cl.active[k]++
			cl.mu.Unlock()
			defer func() {
				cl.mu.Lock()
				if cl.active[k]--; cl.active[k] <= 0 {
					delete(cl.active, k)
				}
				cl.mu.Unlock()
			}()
			return next(c)
		}
	}
}

// inFlight is how many requests the client with key k has in flight.
func (cl *connLimit) inFlight(k netip.Addr) int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.active[k]
}

// frameDeny forbids framing a page (clickjacking): CSP frame-ancestors for
// current browsers, X-Frame-Options for older ones.
func frameDeny(h http.Header, csp string) {
	h.Set("Content-Security-Policy", csp+"; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
}
