package httpapi

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// opsClient posts forms without following redirects.
type opsClient struct {
	t      *testing.T
	base   string
	origin string
	c      *http.Client
}

func newOpsClient(t *testing.T, base string) *opsClient {
	jar, _ := cookiejar.New(nil)
	return &opsClient{t: t, base: base, origin: base, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (o *opsClient) post(path, ctype string, body []byte) *http.Response {
	o.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, o.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if o.origin != "" {
		req.Header.Set("Origin", o.origin)
	}
	res, err := o.c.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	res.Body.Close()
	return res
}

func (o *opsClient) login(key string) *http.Response {
	return o.post("/ops/login", "application/x-www-form-urlencoded", []byte(url.Values{"key": {key}}.Encode()))
}

func (o *opsClient) page() int {
	o.t.Helper()
	res, err := o.c.Get(o.base + "/ops")
	if err != nil {
		o.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func (o *opsClient) cookie() *http.Cookie {
	u, _ := url.Parse(o.base + "/ops")
	for _, c := range o.c.Jar.Cookies(u) {
		if c.Name == opsCookie {
			return c
		}
	}
	return nil
}

// TestOpsSignIn: /ops/login takes a key only from a POST form body of
// bounded size, from the page's own origin, a few guesses at a time; it
// keeps a random session id in the cookie (the session in Redis, with its
// scope and expiry) and never the key; sign-out ends the session.
func TestOpsSignIn(t *testing.T) {
	t.Run("the key only in a form body of bounded size", func(t *testing.T) {
		_, ts := newEdgeServer(t, HTTPConfig{}, nil)
		o := newOpsClient(t, ts.URL)
		if res := o.post("/ops/login?key="+readKey, "application/x-www-form-urlencoded", nil); res.StatusCode == http.StatusSeeOther {
			t.Errorf("a key in the query string signed in")
		}
		var mp bytes.Buffer
		w := multipart.NewWriter(&mp)
		w.WriteField("key", readKey)
		fw, _ := w.CreateFormFile("junk", "junk.bin")
		fw.Write(bytes.Repeat([]byte("x"), 1<<20))
		w.Close()
		if res := o.post("/ops/login", w.FormDataContentType(), mp.Bytes()); res.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("a 1 MB multipart sign-in: HTTP %d, want 415", res.StatusCode)
		}
		big := []byte(url.Values{"key": {readKey}, "pad": {strings.Repeat("x", 8<<10)}}.Encode())
		if res := o.post("/ops/login", "application/x-www-form-urlencoded", big); res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("an 8 KB form: HTTP %d, want 413", res.StatusCode)
		}
		if o.cookie() != nil {
			t.Errorf("a refused sign-in set a cookie")
		}
	})
	t.Run("origin", func(t *testing.T) {
		_, ts := newEdgeServer(t, HTTPConfig{}, nil)
		o := newOpsClient(t, ts.URL)
		for _, origin := range []string{"", "https://evil.example", "null"} {
			o.origin = origin
			if res := o.login(readKey); res.StatusCode != http.StatusForbidden {
				t.Errorf("sign-in with Origin %q: HTTP %d, want 403", origin, res.StatusCode)
			}
		}
		o.origin = "https://collect.bank.example" // the public base URL
		if res := o.login(readKey); res.StatusCode != http.StatusSeeOther {
			t.Errorf("sign-in from the public origin: HTTP %d, want 303", res.StatusCode)
		}
	})
	t.Run("a session, not the key", func(t *testing.T) {
		s, ts := newEdgeServer(t, HTTPConfig{}, nil)
		for _, key := range []string{readKey, adminKey} {
			o := newOpsClient(t, ts.URL)
			if res := o.login(key); res.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-in: HTTP %d", res.StatusCode)
			}
			ck := o.cookie()
			if ck == nil || len(ck.Value) < 40 || strings.Contains(ck.Value, key) || strings.Contains(key, ck.Value) || ck.Value == HashAPIKey(key) {
				t.Fatalf("the cookie %v is not a random session id", ck)
			}
			if code := o.page(); code != http.StatusOK {
				t.Errorf("the ops page with the session: HTTP %d", code)
			}
			// Redis holds the session by a digest, with its scope, and no key.
			v := sessionValue(t, s, ck.Value)
			if strings.Contains(v, key) || strings.Contains(v, HashAPIKey(key)) || strings.Contains(v, ck.Value) || !strings.Contains(v, `"scope"`) {
				t.Errorf("the session in Redis carries the key, its hash or the session id, or no scope: %s", v)
			}
			// Sign-out ends it: the old cookie no longer opens the page.
			old := ck.Value
			if res := o.post("/ops/logout", "application/x-www-form-urlencoded", nil); res.StatusCode != http.StatusSeeOther {
				t.Errorf("sign-out: HTTP %d, want 303", res.StatusCode)
			}
			if c := o.cookie(); c != nil {
				t.Errorf("sign-out left the cookie %v", c)
			}
			if code := withCookie(t, ts.URL, old); code != http.StatusUnauthorized {
				t.Errorf("the ops page with a signed-out session: HTTP %d, want 401", code)
			}
		}
		if code := withCookie(t, ts.URL, readKey); code != http.StatusUnauthorized {
			t.Errorf("the ops page with a raw key as the cookie: HTTP %d, want 401", code)
		}
	})
	t.Run("sessions expire", func(t *testing.T) {
		clk := &clock{t: now}
		_, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) { d.Now = clk.Now })
		o := newOpsClient(t, ts.URL)
		o.login(readKey)
		ck := o.cookie()
		clk.Add(12*time.Hour + time.Second)
		if code := withCookie(t, ts.URL, ck.Value); code != http.StatusUnauthorized {
			t.Errorf("a session after 12 h: HTTP %d, want 401", code)
		}
	})
	t.Run("guesses are rate-limited", func(t *testing.T) {
		_, ts := newEdgeServer(t, HTTPConfig{}, nil)
		o := newOpsClient(t, ts.URL)
		limited := 0
		for range 200 {
			if o.login("guess").StatusCode == http.StatusTooManyRequests {
				limited++
			}
		}
		if limited != 195 {
			t.Errorf("%d of 200 wrong guesses got 429, want 195 (5 at once, the clock stopped)", limited)
		}
	})
}

// sessionValue is what Redis holds for the session id.
func sessionValue(t *testing.T, s *Server, id string) string {
	t.Helper()
	b, err := s.Sessions.Session(context.Background(), sessionDigest(id))
	if err != nil {
		t.Fatalf("the session is not in Redis: %v", err)
	}
	return string(b)
}

func withCookie(t *testing.T, base, value string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/ops", nil)
	req.AddCookie(&http.Cookie{Name: opsCookie, Value: value})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
