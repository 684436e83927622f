package wechattest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

const (
	app    = "wxapp"
	secret = "sec"
)

type reply struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	Errcode     int    `json:"errcode"`
	MsgID       int64  `json:"msgid"`
	status      int
}

func post(t *testing.T, url string, body any) reply {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func getToken(t *testing.T, s *Server, appid, sec string, force bool) reply {
	return post(t, s.URL()+"/cgi-bin/stable_token", map[string]any{
		"grant_type": "client_credential", "appid": appid, "secret": sec, "force_refresh": force,
	})
}

func send(t *testing.T, s *Server, tok, openid, id string) reply {
	return post(t, s.URL()+"/cgi-bin/message/template/send?access_token="+tok, map[string]any{
		"touser": openid, "template_id": "T1", "client_msg_id": id, "data": map[string]any{"k": map[string]string{"value": "v"}},
	})
}

func TestStableToken(t *testing.T) {
	t.Run("wrong credentials", func(t *testing.T) {
		s := NewServer(app, secret)
		defer s.Close()
		if r := getToken(t, s, "other", secret, false); r.Errcode != 40013 {
			t.Errorf("wrong appid: errcode %d, want 40013", r.Errcode)
		}
		if r := getToken(t, s, app, "other", false); r.Errcode != 40125 {
			t.Errorf("wrong secret: errcode %d, want 40125", r.Errcode)
		}
		if n := s.TokensIssued(); n != 0 {
			t.Errorf("%d issued, want 0", n)
		}
	})
	t.Run("normal mode hands the current token out again", func(t *testing.T) {
		s := NewServer(app, secret)
		defer s.Close()
		a, b := getToken(t, s, app, secret, false), getToken(t, s, app, secret, false)
		if a.AccessToken == "" || a.AccessToken != b.AccessToken || a.ExpiresIn != 7200 {
			t.Errorf("got %+v then %+v, want the same token for 7200 s", a, b)
		}
		if n := s.TokensIssued(); n != 2 {
			t.Errorf("%d issued, want 2", n)
		}
	})
	t.Run("forced refresh invalidates the old token, at most every 30 s", func(t *testing.T) {
		s := NewServer(app, secret)
		defer s.Close()
		a := getToken(t, s, app, secret, false)
		b := getToken(t, s, app, secret, true)
		if b.AccessToken == a.AccessToken {
			t.Fatal("a forced refresh must return a new token")
		}
		if r := send(t, s, a.AccessToken, "o1", "m1"); r.Errcode != 40001 {
			t.Errorf("old token after a forced refresh: errcode %d, want 40001", r.Errcode)
		}
		if c := getToken(t, s, app, secret, true); c.AccessToken != b.AccessToken || s.ForcedRefreshes() != 1 {
			t.Errorf("a second forced refresh within 30 s must change nothing (%d forced)", s.ForcedRefreshes())
		}
	})
	t.Run("a short lifetime renews on every call, the old token still valid", func(t *testing.T) {
		s := NewServer(app, secret)
		defer s.Close()
		s.TokenTTL(time.Minute)
		a, b := getToken(t, s, app, secret, false), getToken(t, s, app, secret, false)
		if a.AccessToken == b.AccessToken || a.ExpiresIn != 60 {
			t.Errorf("got %+v then %+v, want two tokens of 60 s", a, b)
		}
		if r := send(t, s, a.AccessToken, "o1", "m1"); r.Errcode != 0 {
			t.Errorf("the older token: errcode %d, want 0", r.Errcode)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		s := NewServer(app, secret)
		defer s.Close()
		a := getToken(t, s, app, secret, false)
		s.ExpireTokens()
		if r := send(t, s, a.AccessToken, "o1", "m1"); r.Errcode != 42001 {
			t.Errorf("expired token: errcode %d, want 42001", r.Errcode)
		}
		if r := send(t, s, "made-up", "o1", "m1"); r.Errcode != 40001 {
			t.Errorf("unknown token: errcode %d, want 40001", r.Errcode)
		}
		if b := getToken(t, s, app, secret, false); b.AccessToken == a.AccessToken {
			t.Error("after expiry, normal mode must issue a new token")
		}
	})
}

func TestTemplateSend(t *testing.T) {
	cases := []struct {
		name      string
		setup     func(*Server)
		sends     [][2]string // openid, client_msg_id
		pause     time.Duration
		errcodes  []int
		repeats   []bool
		delivered int
	}{
		{name: "repeat of openid and client_msg_id", sends: [][2]string{{"o1", "m1"}, {"o1", "m1"}},
			errcodes: []int{0, 0}, repeats: []bool{false, true}, delivered: 1},
		{name: "same id to another openid", sends: [][2]string{{"o1", "m1"}, {"o2", "m1"}},
			errcodes: []int{0, 0}, repeats: []bool{false, false}, delivered: 2},
		{name: "no client_msg_id", sends: [][2]string{{"o1", ""}, {"o1", ""}},
			errcodes: []int{0, 0}, repeats: []bool{false, false}, delivered: 2},
		{name: "repeat after the window", setup: func(s *Server) { s.DedupWindow(20 * time.Millisecond) },
			sends: [][2]string{{"o1", "m1"}, {"o1", "m1"}}, pause: 30 * time.Millisecond,
			errcodes: []int{0, 0}, repeats: []bool{false, false}, delivered: 2},
		{name: "a failed send is not remembered", setup: func(s *Server) { s.Fail(1, -1) },
			sends: [][2]string{{"o1", "m1"}, {"o1", "m1"}}, errcodes: []int{-1, 0}, repeats: []bool{false, false}, delivered: 1},
		{name: "one user refuses", setup: func(s *Server) { s.FailUser("o1", 43101) },
			sends: [][2]string{{"o1", "m1"}, {"o2", "m2"}, {"o1", "m3"}}, errcodes: []int{43101, 0, 43101}, repeats: []bool{false, false, false}, delivered: 1},
		{name: "HTTP failure", setup: func(s *Server) { s.FailHTTP(1, 503) },
			sends: [][2]string{{"o1", "m1"}, {"o1", "m1"}}, errcodes: []int{0, 0}, repeats: []bool{false, false}, delivered: 1},
		{name: "reset clears faults and memory", setup: func(s *Server) { s.Fail(5, -1); s.FailUser("o1", 43004); s.Reset() },
			sends: [][2]string{{"o1", "m1"}}, errcodes: []int{0}, repeats: []bool{false}, delivered: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(app, secret)
			defer s.Close()
			tok := getToken(t, s, app, secret, false).AccessToken
			if tc.setup != nil {
				tc.setup(s)
			}
			for i, x := range tc.sends {
				if i > 0 {
					time.Sleep(tc.pause)
				}
				send(t, s, tok, x[0], x[1])
			}
			got := s.Sends()
			if len(got) != len(tc.sends) {
				t.Fatalf("%d sends recorded, want %d", len(got), len(tc.sends))
			}
			for i, g := range got {
				if g.Errcode != tc.errcodes[i] || g.Repeat != tc.repeats[i] {
					t.Errorf("send %d: errcode %d repeat %v, want %d %v", i, g.Errcode, g.Repeat, tc.errcodes[i], tc.repeats[i])
				}
				if g.Repeat && g.MsgID != got[0].MsgID {
					t.Errorf("send %d: a repeat answered msgid %d, want the first %d", i, g.MsgID, got[0].MsgID)
				}
			}
			if n := s.Delivered(); n != tc.delivered {
				t.Errorf("%d delivered, want %d", n, tc.delivered)
			}
		})
	}
}

func TestDataKeepsOrder(t *testing.T) {
	var b Body
	raw := []byte(`{"touser":"o","data":{"z":{"value":"1"},"a":{"value":"2","color":"#000"}},"template_id":"T"}`)
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	want := Data{{"z", "1"}, {"a", "2"}}
	if len(b.Data) != 2 || b.Data[0] != want[0] || b.Data[1] != want[1] || b.Data.Get("a") != "2" {
		t.Errorf("data %v, want %v", b.Data, want)
	}
	if k := keys(raw); len(k) != 3 || k[0] != "touser" || k[1] != "data" || k[2] != "template_id" {
		t.Errorf("keys %v", k)
	}
}
