package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/testenv"
)

// newEdgeServer is newServer with deps changed by change, served by a real
// HTTP server configured as the service configures it.
func newEdgeServer(t *testing.T, hc HTTPConfig, change func(*Deps)) (*Server, *httptest.Server) {
	t.Helper()
	base, _ := newServer(t, "cn-bank", now)
	d := base.Deps
	if change != nil {
		change(&d)
	}
	s, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = s.HTTPServer(hc)
	ts.Start()
	t.Cleanup(ts.Close)
	return s, ts
}

// get sends a GET with the given headers and returns the status.
func get(t *testing.T, url string, header map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// TestRateLimitByClientAddress: the per-IP limit on /u/… (rate 1/s, burst
// 4, the clock stopped) is keyed by the socket's address, so rotating
// X-Forwarded-For or X-Real-IP does not escape it; only a trusted proxy's
// header names the client. Large header values neither key the limiter
// nor grow it.
func TestRateLimitByClientAddress(t *testing.T) {
	count429 := func(t *testing.T, ts *httptest.Server, n int, header func(i int) map[string]string) int {
		t.Helper()
		got := 0
		for i := range n {
			if get(t, ts.URL+"/u/not-a-token", header(i)) == http.StatusTooManyRequests {
				got++
			}
		}
		return got
	}
	rotating := func(i int) map[string]string {
		ip := fmt.Sprintf("203.0.113.%d", i+1)
		return map[string]string{"X-Forwarded-For": ip, "X-Real-IP": ip}
	}
	t.Run("no trusted proxy: headers are ignored", func(t *testing.T) {
		s, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) { d.PublicRate = 1 })
		if got := count429(t, ts, 40, rotating); got != 36 {
			t.Errorf("%d of 40 requests with a rotating X-Forwarded-For got 429, want 36 (burst 4)", got)
		}
		if n := s.public.size(); n != 1 {
			t.Errorf("the limiter remembers %d clients, want 1 (the socket's address)", n)
		}
	})
	t.Run("trusted proxy: its header names the client", func(t *testing.T) {
		_, lo, _ := net.ParseCIDR("127.0.0.0/8")
		s, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) { d.PublicRate, d.TrustedProxies = 1, []*net.IPNet{lo} })
		if got := count429(t, ts, 40, rotating); got != 0 {
			t.Errorf("%d of 40 requests from 40 clients behind a trusted proxy got 429, want 0", got)
		}
		same := func(int) map[string]string {
			return map[string]string{"X-Forwarded-For": "198.51.100.7, 203.0.113.200"}
		}
		if got := count429(t, ts, 40, same); got != 36 {
			t.Errorf("%d of 40 requests from one client behind a trusted proxy got 429, want 36", got)
		}
		if n := s.public.size(); n != 41 {
			t.Errorf("the limiter remembers %d clients, want 41", n)
		}
	})
	t.Run("large headers", func(t *testing.T) {
		s, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) { d.PublicRate = 1000 })
		for i := range 30 {
			v := fmt.Sprintf("%d.", i) + strings.Repeat("a", 32<<10)
			get(t, ts.URL+"/u/not-a-token", map[string]string{"X-Forwarded-For": v, "X-Real-IP": v})
		}
		if n := s.public.size(); n != 1 {
			t.Errorf("after 30 requests with distinct 32 KB headers the limiter remembers %d clients, want 1", n)
		}
		big := strings.Repeat("a", 512<<10)
		if code := get(t, ts.URL+"/u/not-a-token", map[string]string{"X-Forwarded-For": big}); code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("a 512 KB header: HTTP %d, want 431", code)
		}
	})
}

// TestLimiterIsBounded: however many addresses a client has, the limiter
// remembers at most limiterEntries; IPv6 addresses of one /64 are one client.
func TestLimiterIsBounded(t *testing.T) {
	l := newIPLimiter(1, 4, 100)
	for i := range 1000 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
	}
	if n := l.size(); n != 100 {
		t.Errorf("after 1000 clients the limiter remembers %d, want its bound 100", n)
	}
	s, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) {
		_, lo, _ := net.ParseCIDR("127.0.0.1/32")
		d.PublicRate, d.TrustedProxies = 1, []*net.IPNet{lo}
	})
	for i := range 8 {
		get(t, ts.URL+"/u/x", map[string]string{"X-Forwarded-For": fmt.Sprintf("2001:db8:1:2::%x", i+1)})
	}
	if n := s.public.size(); n != 1 {
		t.Errorf("8 addresses of one IPv6 /64 are %d clients, want 1", n)
	}
}

// trickle opens a connection and sends a webhook's headers and the first
// bytes of a body it never finishes.
func trickle(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /webhooks/twilio/inbound HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4096\r\n\r\nBody=T", addr)
	return c
}

// closedByServer reads until the server closes c; false if it is still
// open when the safety deadline passes (a bound on the wait, not a timing
// assertion: the server's timeouts are far shorter).
func closedByServer(c net.Conn, deadline time.Time) bool {
	c.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestServerTimeouts: connections trickling a webhook body are closed after
// the read timeout, and an idle keep-alive connection after the idle
// timeout.
func TestServerTimeouts(t *testing.T) {
	_, ts := newEdgeServer(t, HTTPConfig{ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond},
		func(d *Deps) { d.PublicConnsPerIP = 100 })
	addr := ts.Listener.Addr().String()
	var conns []net.Conn
	for range 50 {
		conns = append(conns, trickle(t, addr))
	}
	closed, deadline := 0, time.Now().Add(20*time.Second)
	for _, c := range conns {
		if closedByServer(c, deadline) {
			closed++
		}
	}
	t.Logf("%d of 50 trickling connections closed by the server", closed)
	if closed != 50 {
		t.Errorf("%d of 50 connections trickling a body were closed by the server, want 50", closed)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz over a raw connection: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)
	if !closedByServer(c, time.Now().Add(20*time.Second)) {
		t.Error("an idle keep-alive connection was not closed by the server")
	}
}

// TestPublicConnsPerIP: one address holds at most PublicConnsPerIP requests
// in flight on the public routes; the next gets 429 until one ends.
func TestPublicConnsPerIP(t *testing.T) {
	s, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) { d.PublicConnsPerIP = 3 })
	addr := ts.Listener.Addr().String()
	var held []net.Conn
	for range 3 {
		held = append(held, trickle(t, addr))
	}
	lo := netip.MustParseAddr("127.0.0.1")
	testenv.Eventually(t, 10*time.Second, "three requests in flight", func() bool { return s.conns.inFlight(lo) == 3 })
	res, err := http.Post(ts.URL+"/webhooks/twilio/inbound", "application/x-www-form-urlencoded", strings.NewReader("Body=TD"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "concurrent") {
		t.Errorf("a fourth request while three are held: HTTP %d %s, want 429", res.StatusCode, b)
	}
	for _, c := range held {
		c.Close()
	}
	testenv.Eventually(t, 10*time.Second, "the held requests end", func() bool { return s.conns.inFlight(lo) == 0 })
	if code := get(t, ts.URL+"/u/not-a-token", nil); code != http.StatusBadRequest {
		t.Errorf("after they ended: HTTP %d, want 400 (a bad token, not a limit)", code)
	}
}
