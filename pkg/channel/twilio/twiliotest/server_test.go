package twiliotest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	sid   = "AC0123456789abcdef0123456789abcdef"
	token = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
	to    = "+8613800138000"
)

func post(t *testing.T, s *Server, resource, user, pass string, form url.Values) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/2010-04-01/Accounts/"+sid+"/"+resource+".json", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("reply %q is not JSON: %v", b, err)
	}
	return resp.StatusCode, resp.Header, body
}

func sms() url.Values {
	return url.Values{"To": {to}, "From": {"+15005550006"}, "Body": {"hello"}}
}

func TestReplies(t *testing.T) {
	cases := []struct {
		name     string
		setup    func(*Server)
		resource string
		user     string
		form     url.Values
		status   int
		want     map[string]any // fields of the reply
	}{
		{name: "message created", resource: "Messages", user: sid, form: sms(), status: 201,
			want: map[string]any{"status": "queued", "to": to, "from": "+15005550006", "body": "hello", "account_sid": sid}},
		{name: "call created", resource: "Calls", user: sid,
			form:   url.Values{"To": {to}, "From": {"+15005550006"}, "Twiml": {"<Response/>"}},
			status: 201, want: map[string]any{"status": "queued", "to": to, "from": "+15005550006"}},
		{name: "no credentials", resource: "Messages", form: sms(), status: 401,
			want: map[string]any{"code": 20003.0, "status": 401.0, "more_info": "https://www.twilio.com/docs/errors/20003"}},
		{name: "unsubscribed number", setup: func(s *Server) { s.FailNumber(to, 400, 21610) }, resource: "Messages", user: sid, form: sms(),
			status: 400, want: map[string]any{"code": 21610.0, "status": 400.0, "more_info": "https://www.twilio.com/docs/errors/21610"}},
		{name: "missing body", resource: "Messages", user: sid, form: url.Values{"To": {to}, "From": {"+15005550006"}},
			status: 400, want: map[string]any{"code": 21602.0}},
		{name: "call without a script", resource: "Calls", user: sid, form: url.Values{"To": {to}, "From": {"+15005550006"}},
			status: 400, want: map[string]any{"code": 21205.0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(sid, token)
			defer s.Close()
			if tc.setup != nil {
				tc.setup(s)
			}
			status, _, body := post(t, s, tc.resource, tc.user, token, tc.form)
			if status != tc.status {
				t.Fatalf("status = %d, want %d (%v)", status, tc.status, body)
			}
			for k, v := range tc.want {
				if body[k] != v {
					t.Errorf("%s = %v, want %v", k, body[k], v)
				}
			}
			if status == 201 {
				id, _ := body["sid"].(string)
				if len(id) != 34 || id[:2] != map[string]string{"Messages": "SM", "Calls": "CA"}[tc.resource] {
					t.Errorf("sid = %q", id)
				}
				if _, err := time.Parse(time.RFC1123Z, body["date_created"].(string)); err != nil {
					t.Errorf("date_created: %v", err)
				}
			}
			if r := s.Requests(); len(r) != 1 || r[0].Status != tc.status || r[0].Form.Get("To") != tc.form.Get("To") {
				t.Errorf("recorded %+v", r)
			}
		})
	}
}

func TestFailCounts(t *testing.T) {
	cases := []struct {
		name  string
		n     int
		clear bool
		want  []int
	}{
		{name: "next two", n: 2, want: []int{503, 503, 201, 201}},
		{name: "until cleared", n: -1, want: []int{503, 503, 503, 503}},
		{name: "cleared", n: -1, clear: true, want: []int{201, 201}},
		{name: "zero stops", n: 0, want: []int{201}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(sid, token)
			defer s.Close()
			s.FailWith(tc.n, Failure{Status: 503, RetryAfter: "2"})
			if tc.clear {
				s.Clear()
			}
			for i, want := range tc.want {
				status, h, _ := post(t, s, "Messages", sid, token, sms())
				if status != want {
					t.Errorf("request %d: status %d, want %d", i, status, want)
				}
				if status == 503 && h.Get("Retry-After") != "2" {
					t.Errorf("request %d: Retry-After %q", i, h.Get("Retry-After"))
				}
			}
			if s.Count() != len(tc.want) {
				t.Errorf("Count = %d, want %d", s.Count(), len(tc.want))
			}
		})
	}
}

func TestConcurrentRequests(t *testing.T) {
	s := NewServer(sid, token)
	defer s.Close()
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, s.URL()+"/2010-04-01/Accounts/"+sid+"/Messages.json", strings.NewReader(sms().Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(sid, token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range s.Created() {
		seen[r.SID] = true
	}
	if len(seen) != n || s.Count() != n {
		t.Fatalf("%d distinct SIDs of %d requests, want %d", len(seen), s.Count(), n)
	}
	r := s.Requests()
	r[0].Form.Set("To", "changed")
	if s.Requests()[0].Form.Get("To") != to {
		t.Error("Requests shares its forms with the server")
	}
}

func TestCloseEndsDelayedRequests(t *testing.T) {
	s := NewServer(sid, token)
	s.Delay(time.Minute)
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/2010-04-01/Accounts/"+sid+"/Messages.json", strings.NewReader(sms().Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(sid, token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for s.Count() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close waits for the delay")
	}
	if err := <-errc; err == nil {
		t.Error("a held request was answered by Close; want the connection dropped")
	}
	if len(s.Created()) != 1 {
		t.Error("the held request was not created")
	}
}
