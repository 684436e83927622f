package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/breaker"
	"github.com/contactd/dispatcher/pkg/channel/wechat/wechattest"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/testenv"
)

var _ breaker.Sender = (*Client)(nil)

const (
	appID  = "wx0123456789abcdef"
	secret = "s3cret"
	openID = "oX1abcdefghijklmn0123456789"
)

var templates = map[string]string{
	"overdue_notice": "TPL-overdue-1",
	"final_notice":   "TPL-final-2",
}

// clock is a settable time for the client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newServer(t *testing.T) *wechattest.Server {
	t.Helper()
	s := wechattest.NewServer(appID, secret)
	t.Cleanup(s.Close)
	return s
}

// newClient makes a client of srv with its own token store over rdb.
func newClient(t *testing.T, baseURL string, rdb redis.UniversalClient, prefix string, edit func(*Config)) *Client {
	t.Helper()
	cfg := Config{AppID: appID, Secret: secret, BaseURL: baseURL, TemplateIDs: templates, Timeout: 2 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg, NewTokenStore(rdb, prefix))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func message(id string) channel.Message {
	return channel.Message{
		IntentID: id, DebtorID: "D-1001", Channel: intent.WeChat, To: openID, Locale: "zh-CN",
		Template: "overdue_notice", Title: "还款提醒",
		Fields: []channel.Field{{Key: "keyword2", Value: "1,234.00"}, {Key: "amount", Value: "¥1,234.00"}, {Key: "first", Value: "您好"}},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSendRequestShape(t *testing.T) {
	cases := []struct {
		name     string
		linkURL  string
		edit     func(*channel.Message)
		template string // the template_id WeChat must see
		url      string // "" means the key is absent
	}{
		{name: "opt-out link", template: "TPL-overdue-1", url: "https://bank.example/u/tok1",
			edit: func(m *channel.Message) { m.OptOutURL = "https://bank.example/u/tok1" }},
		{name: "opt-out link wins over the default link", linkURL: "https://bank.example/app", template: "TPL-overdue-1", url: "https://bank.example/u/tok2",
			edit: func(m *channel.Message) { m.OptOutURL = "https://bank.example/u/tok2" }},
		{name: "default link", linkURL: "https://bank.example/app?a=1&b=2", template: "TPL-overdue-1", url: "https://bank.example/app?a=1&b=2"},
		{name: "no link at all", template: "TPL-overdue-1"},
		{name: "another template", template: "TPL-final-2",
			edit: func(m *channel.Message) {
				m.Template = "final_notice"
				m.Fields = []channel.Field{{Key: "z", Value: "1"}, {Key: "a", Value: "<2> & \"3\""}}
			}},
		{name: "no fields", template: "TPL-overdue-1", edit: func(m *channel.Message) { m.Fields = nil }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			rdb, prefix := testenv.Redis(t)
			c := newClient(t, srv.URL(), rdb, prefix, func(c *Config) { c.LinkURL = tc.linkURL })
			m := message("01JD3X0000000000000000000" + strconv.Itoa(i))
			if tc.edit != nil {
				tc.edit(&m)
			}
			if c.Name() != "wechat" || !c.Idempotent() {
				t.Errorf("name %q idempotent %v, want wechat, true", c.Name(), c.Idempotent())
			}
			r, err := c.Send(ctxT(t), m)
			if err != nil {
				t.Fatal(err)
			}
			sends := srv.Sends()
			if len(sends) != 1 {
				t.Fatalf("%d requests, want 1", len(sends))
			}
			s := sends[0]
			b := s.Body
			if b.ToUser != openID || b.TemplateID != tc.template || b.ClientMsgID != m.IntentID {
				t.Errorf("touser %q template_id %q client_msg_id %q, want %q %q %q", b.ToUser, b.TemplateID, b.ClientMsgID, openID, tc.template, m.IntentID)
			}
			if has := slices.Contains(b.Keys, "url"); has != (tc.url != "") || b.URL != tc.url {
				t.Errorf("url %q (key present %v), want %q", b.URL, has, tc.url)
			}
			var want wechattest.Data
			for _, f := range m.Fields {
				want = append(want, wechattest.Field{Key: f.Key, Value: f.Value})
			}
			if !slices.Equal(b.Data, want) {
				t.Errorf("data %v, want %v in this order", b.Data, want)
			}
			if !slices.Contains(b.Keys, "data") {
				t.Error("data must be sent, even empty")
			}
			if r.Provider != "wechat" || r.ProviderID != strconv.FormatInt(s.MsgID, 10) || r.At.IsZero() {
				t.Errorf("receipt %+v, want provider wechat and msgid %d", r, s.MsgID)
			}
		})
	}
}

func TestSendRefusesBeforeCallingWeChat(t *testing.T) {
	cases := []struct {
		name string
		edit func(*channel.Message)
		code string
	}{
		{"template with no template id", func(m *channel.Message) { m.Template = "court_notice" }, "template_not_configured"},
		{"repeated field key", func(m *channel.Message) { m.Fields = append(m.Fields, channel.Field{Key: "amount", Value: "x"}) }, "bad_message"},
		{"empty field key", func(m *channel.Message) { m.Fields = append(m.Fields, channel.Field{Value: "x"}) }, "bad_message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			rdb, prefix := testenv.Redis(t)
			c := newClient(t, srv.URL(), rdb, prefix, nil)
			m := message("01JD3XBAD")
			tc.edit(&m)
			_, err := c.Send(ctxT(t), m)
			var ce *channel.Error
			if !errors.As(err, &ce) || ce.Kind != channel.Permanent || ce.Code != tc.code {
				t.Fatalf("got %v, want a permanent %s", err, tc.code)
			}
			if n := len(srv.Sends()); n != 0 {
				t.Errorf("%d requests reached WeChat, want none", n)
			}
		})
	}
}

// Two replicas, each with its own token store over the same Redis, start
// sending at once: one token request between them.
func TestReplicasShareOneToken(t *testing.T) {
	srv := newServer(t)
	rdb, prefix := testenv.Redis(t)
	o, _ := redis.ParseURL(testenv.RedisURL(t))
	rdb2 := redis.NewClient(o)
	t.Cleanup(func() { rdb2.Close() })
	replicas := []*Client{
		newClient(t, srv.URL(), rdb, prefix, nil),
		newClient(t, srv.URL(), rdb2, prefix, nil),
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r, c := range replicas {
		for g := range 8 {
			wg.Go(func() {
				_, err := c.Send(ctx, message("01JD3XREPLICA"+strconv.Itoa(r)+"-"+strconv.Itoa(g)))
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.TokensIssued(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	if n := srv.Delivered(); n != 16 {
		t.Errorf("%d delivered, want 16", n)
	}
	if v, err := rdb.Get(ctx, prefix+"wechat:token:"+appID).Result(); err != nil || !strings.Contains(v, srv.Sends()[0].Token) {
		t.Errorf("token key holds %q (%v), want the token in use", v, err)
	}
}

// WeChat refuses the token in the middle of a run.
func TestTokenRefusedMidRun(t *testing.T) {
	cases := []struct {
		name     string
		replicas int
		fault    func(*wechattest.Server)
		issued   int // token requests in all
		forced   int
		kind     channel.Kind // 0: the send succeeds
		code     string
	}{
		// The token expired: a normal refresh brings a new one.
		{name: "expired", replicas: 1, fault: (*wechattest.Server).ExpireTokens, issued: 2},
		{name: "expired under two replicas at once", replicas: 2, fault: (*wechattest.Server).ExpireTokens, issued: 2},
		// WeChat refuses a token it still hands out in normal mode: only
		// a forced refresh replaces it.
		{name: "refused while current", replicas: 1, fault: func(s *wechattest.Server) { s.Fail(1, 40001) }, issued: 3, forced: 1},
		// Still refused after the one refresh and retry.
		{name: "refused again after the refresh", replicas: 1, fault: func(s *wechattest.Server) { s.Fail(2, 42001) },
			issued: 3, forced: 1, kind: channel.Retryable, code: "42001"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			rdb, prefix := testenv.Redis(t)
			var cs []*Client
			for range tc.replicas {
				cs = append(cs, newClient(t, srv.URL(), rdb, prefix, nil))
			}
			ctx := ctxT(t)
			if _, err := cs[0].Send(ctx, message("01JD3XWARM")); err != nil {
				t.Fatal(err)
			}
			first := srv.Sends()[0].Token
			tc.fault(srv)
			var wg sync.WaitGroup
			errs := make([]error, len(cs))
			for i, c := range cs {
				wg.Go(func() { _, errs[i] = c.Send(ctx, message("01JD3XMID"+strconv.Itoa(i))) })
			}
			wg.Wait()
			for i, err := range errs {
				switch {
				case tc.kind == 0 && err != nil:
					t.Errorf("replica %d: %v", i, err)
				case tc.kind != 0:
					var ce *channel.Error
					if !errors.As(err, &ce) || ce.Kind != tc.kind || ce.Code != tc.code {
						t.Errorf("replica %d: got %v, want %s %s", i, err, tc.kind, tc.code)
					}
				}
			}
			if n := srv.TokensIssued(); n != tc.issued {
				t.Errorf("%d token requests, want %d", n, tc.issued)
			}
			if n := srv.ForcedRefreshes(); n != tc.forced {
				t.Errorf("%d forced refreshes, want %d", n, tc.forced)
			}
			want := 1 + len(cs)
			if tc.kind != 0 {
				want = 1
			}
			if n := srv.Delivered(); n != want {
				t.Errorf("%d delivered, want %d", n, want)
			}
			if tc.kind == 0 {
				sends := srv.Sends()
				if last := sends[len(sends)-1]; last.Token == first || !last.Delivered() {
					t.Errorf("the retry went with the old token or failed: %+v", last)
				}
			}
		})
	}
}

// A token near its expiry is replaced before WeChat refuses it.
func TestRefreshBeforeExpiry(t *testing.T) {
	cases := []struct {
		name    string
		elapsed time.Duration // client time between the first send and the second
		issued  int
	}{
		{name: "well before the refresh time", elapsed: 30 * time.Second, issued: 1},
		{name: "inside RefreshBefore", elapsed: 45 * time.Second, issued: 2},
		// Past its expiry on the client's clock; the server still takes
		// it, so only a proactive refresh gets a new token.
		{name: "past expiry", elapsed: 90 * time.Second, issued: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			srv.TokenTTL(time.Minute)
			rdb, prefix := testenv.Redis(t)
			clk := &clock{t: time.Date(2026, 11, 23, 9, 0, 0, 0, shanghai)}
			c := newClient(t, srv.URL(), rdb, prefix, func(c *Config) { c.RefreshBefore = 20 * time.Second })
			c.now = clk.Now
			ctx := ctxT(t)
			if _, err := c.Send(ctx, message("01JD3XEARLY1")); err != nil {
				t.Fatal(err)
			}
			clk.Add(tc.elapsed)
			if _, err := c.Send(ctx, message("01JD3XEARLY2")); err != nil {
				t.Fatal(err)
			}
			// Straight after, the token just stored is fresh.
			if _, err := c.Send(ctx, message("01JD3XEARLY3")); err != nil {
				t.Fatal(err)
			}
			if n := srv.TokensIssued(); n != tc.issued {
				t.Errorf("%d token requests, want %d", n, tc.issued)
			}
			s := srv.Sends()
			if changed := s[1].Token != s[0].Token; changed != (tc.issued == 2) {
				t.Errorf("second send's token changed: %v, want %v", changed, tc.issued == 2)
			}
			for _, x := range s {
				if x.Errcode != 0 {
					t.Errorf("WeChat refused a send with %d: the refresh came too late", x.Errcode)
				}
			}
		})
	}
}

// Failures as WeChat reports them, read by a real client.
func TestClassificationAgainstServer(t *testing.T) {
	// 23:30 in Shanghai: the quota resets in half an hour.
	at := time.Date(2026, 11, 23, 23, 30, 0, 0, shanghai)
	cases := []struct {
		name   string
		fault  func(*wechattest.Server)
		closed bool // the server is gone
		kind   channel.Kind
		code   string
		optOut bool
		until  time.Time
	}{
		{name: "not a follower", fault: func(s *wechattest.Server) { s.FailUser(openID, 43004) }, kind: channel.Permanent, code: "43004"},
		{name: "user refused messages", fault: func(s *wechattest.Server) { s.FailUser(openID, 43101) }, kind: channel.Permanent, code: "43101", optOut: true},
		{name: "invalid openid", fault: func(s *wechattest.Server) { s.FailUser(openID, 40003) }, kind: channel.Permanent, code: "40003"},
		{name: "daily quota spent", fault: func(s *wechattest.Server) { s.Fail(1, 45009) }, kind: channel.Retryable, code: "45009",
			until: time.Date(2026, 11, 24, 0, 0, 0, 0, shanghai)},
		{name: "minute quota", fault: func(s *wechattest.Server) { s.Fail(1, 45011) }, kind: channel.Retryable, code: "45011"},
		{name: "system busy", fault: func(s *wechattest.Server) { s.Fail(1, -1) }, kind: channel.Retryable, code: "-1"},
		{name: "HTTP 500", fault: func(s *wechattest.Server) { s.FailHTTP(1, 500) }, kind: channel.Retryable, code: "http_500"},
		{name: "server gone", closed: true, kind: channel.Retryable, code: "connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			rdb, prefix := testenv.Redis(t)
			c := newClient(t, srv.URL(), rdb, prefix, nil)
			c.now = func() time.Time { return at }
			ctx := ctxT(t)
			if _, err := c.Send(ctx, message("01JD3XWARM")); err != nil {
				t.Fatal(err)
			}
			if tc.closed {
				// Gone: nothing listens, and the keep-alive connection of
				// the warm-up send is dropped too, so the next send dials.
				// (A send on a kept connection the server closed midway is
				// an unknown outcome instead: it may have arrived.)
				srv.Close()
				_ = c.Close()
			} else {
				tc.fault(srv)
			}
			_, err := c.Send(ctx, message("01JD3XFAULT"))
			var ce *channel.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a channel error", err)
			}
			if ce.Kind != tc.kind || ce.Code != tc.code || ce.OptOut != tc.optOut || !ce.Until.Equal(tc.until) {
				t.Errorf("got %s %q optout %v until %v, want %s %q %v %v", ce.Kind, ce.Code, ce.OptOut, ce.Until, tc.kind, tc.code, tc.optOut, tc.until)
			}
			if strings.Contains(err.Error(), openID) || strings.Contains(err.Error(), srv.Sends()[0].Token) {
				t.Errorf("error text %q holds the openid or the access token", err)
			}
			if n := srv.Delivered(); n != 1 {
				t.Errorf("%d delivered, want only the first", n)
			}
		})
	}
}

// A reply slower than the timeout leaves the outcome unknown; sending the
// same intent again is recognised by WeChat and delivers nothing new.
func TestTimeoutThenRepeat(t *testing.T) {
	srv := newServer(t)
	rdb, prefix := testenv.Redis(t)
	c := newClient(t, srv.URL(), rdb, prefix, func(c *Config) { c.Timeout = 150 * time.Millisecond })
	ctx := ctxT(t)
	if _, err := c.Send(ctx, message("01JD3XWARM")); err != nil {
		t.Fatal(err)
	}
	srv.Delay(time.Second)
	m := message("01JD3XSLOW")
	_, err := c.Send(ctx, m)
	var ce *channel.Error
	if !errors.As(err, &ce) || ce.Kind != channel.Unknown || ce.Code != "timeout" {
		t.Fatalf("got %v, want an unknown outcome (timeout)", err)
	}
	if strings.Contains(err.Error(), "access_token") {
		t.Errorf("error text %q holds the request URL", err)
	}
	srv.Delay(0)
	r, err := c.Send(ctx, m)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	sends := srv.Sends()
	if len(sends) != 3 || !sends[2].Repeat {
		t.Fatalf("want the repeat answered as one: %+v", sends)
	}
	if r.ProviderID != strconv.FormatInt(sends[1].MsgID, 10) {
		t.Errorf("repeat's msgid %s, want the first one's %d", r.ProviderID, sends[1].MsgID)
	}
	if n := srv.Delivered(); n != 2 {
		t.Errorf("%d delivered, want 2 (the warm-up and the slow one, once)", n)
	}
}

// Another replica holds the refresh lock and does not finish.
func TestTokenLockHeldElsewhere(t *testing.T) {
	cases := []struct {
		name  string
		stale bool // a token is cached, past its refresh time but unexpired
		ok    bool
	}{
		{name: "no token yet: give up for now", stale: false, ok: false},
		{name: "stale token: keep using it", stale: true, ok: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			rdb, prefix := testenv.Redis(t)
			c := newClient(t, srv.URL(), rdb, prefix, nil)
			c.tokens.polls = 2
			ctx := ctxT(t)
			issued := 0
			if tc.stale {
				if _, err := c.Send(ctx, message("01JD3XWARM")); err != nil {
					t.Fatal(err)
				}
				issued = 1
				key := prefix + "wechat:token:" + appID
				var st stored
				b, _ := rdb.Get(ctx, key).Bytes()
				if err := json.Unmarshal(b, &st); err != nil {
					t.Fatal(err)
				}
				st.Refresh = time.Now().Add(-time.Minute).UnixMilli()
				b, _ = json.Marshal(st)
				rdb.Set(ctx, key, b, time.Hour)
			}
			rdb.Set(ctx, prefix+"wechat:token-lock:"+appID, "someone-else", time.Minute)
			_, err := c.Send(ctx, message("01JD3XLOCKED"))
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok {
				var ce *channel.Error
				if !errors.As(err, &ce) || ce.Kind != channel.Retryable || ce.Code != "token_busy" {
					t.Fatalf("got %v, want retryable token_busy", err)
				}
			}
			if n := srv.TokensIssued(); n != issued {
				t.Errorf("%d token requests while another replica holds the lock, want %d", n, issued)
			}
		})
	}
}

func TestTokenFetchFailures(t *testing.T) {
	cases := []struct {
		name   string
		secret string
		reply  http.HandlerFunc // instead of the WeChat server
		code   string
	}{
		{name: "wrong secret", secret: "wrong", code: "40125"},
		{name: "token endpoint down", reply: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(502) }, code: "http_502"},
		{name: "not JSON", reply: func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>")) }, code: "bad_reply"},
		{name: "no lifetime", reply: func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"access_token":"x"}`)) }, code: "bad_reply"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			base := srv.URL()
			if tc.reply != nil {
				h := httptest.NewServer(tc.reply)
				t.Cleanup(h.Close)
				base = h.URL
			}
			rdb, prefix := testenv.Redis(t)
			c := newClient(t, base, rdb, prefix, func(c *Config) {
				if tc.secret != "" {
					c.Secret = tc.secret
				}
			})
			_, err := c.Send(ctxT(t), message("01JD3XNOTOKEN"))
			var ce *channel.Error
			if !errors.As(err, &ce) || ce.Kind != channel.Retryable || ce.Code != tc.code {
				t.Fatalf("got %v, want retryable %s", err, tc.code)
			}
			if strings.Contains(err.Error(), secret) || tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error text %q holds the secret", err)
			}
			if n := len(srv.Sends()); n != 0 {
				t.Errorf("%d sends without a token", n)
			}
		})
	}
}

// WeChat's errmsg is passed on, without the openid should it ever hold one.
func TestErrorTextHidesOpenID(t *testing.T) {
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "stable_token") {
			w.Write([]byte(`{"access_token":"tok","expires_in":7200}`))
			return
		}
		w.Write([]byte(`{"errcode":40003,"errmsg":"invalid openid ` + openID + ` rid: 1"}`))
	}))
	t.Cleanup(h.Close)
	rdb, prefix := testenv.Redis(t)
	c := newClient(t, h.URL, rdb, prefix, nil)
	_, err := c.Send(ctxT(t), message("01JD3XLEAK"))
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), openID) {
		t.Errorf("error text %q holds the openid", err)
	}
	if !strings.Contains(err.Error(), "40003") || !strings.Contains(err.Error(), intent.MaskOpenID(openID)) {
		t.Errorf("error text %q should keep the code and the masked openid", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := func() Config { return Config{AppID: appID, Secret: secret, TemplateIDs: templates} }
	cases := []struct {
		name string
		edit func(*Config)
		want string // "" means valid
	}{
		{name: "minimal", edit: func(*Config) {}},
		{name: "no app id", edit: func(c *Config) { c.AppID = "" }, want: "app id"},
		{name: "no secret", edit: func(c *Config) { c.Secret = "" }, want: "secret"},
		{name: "no templates", edit: func(c *Config) { c.TemplateIDs = nil }, want: "template id"},
		{name: "empty template id", edit: func(c *Config) { c.TemplateIDs = map[string]string{"x": ""} }, want: "empty name"},
		{name: "relative base url", edit: func(c *Config) { c.BaseURL = "api.weixin.qq.com" }, want: "base url"},
		{name: "bad link url", edit: func(c *Config) { c.LinkURL = "ftp://x" }, want: "link url"},
		{name: "negative timeout", edit: func(c *Config) { c.Timeout = -time.Second }, want: "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			err := c.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
			if tc.want == "" {
				if _, err := New(c, nil); err == nil {
					t.Error("New without a token store should fail")
				}
			}
		})
	}
}
