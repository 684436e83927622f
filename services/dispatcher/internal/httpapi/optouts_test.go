package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel/twilio/twiliotest"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

var now = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)

func TestAPIKeys(t *testing.T) {
	s, _ := newServer(t, "cn-bank", now)
	for _, tc := range []struct {
		name, key, method, path string
		code                    int
	}{
		{"no key", "", http.MethodGet, "/v1/debtors/D-1/optouts", http.StatusUnauthorized},
		{"unknown key", "nope", http.MethodGet, "/v1/debtors/D-1/optouts", http.StatusUnauthorized},
		{"read key reads", readKey, http.MethodGet, "/v1/debtors/D-1/optouts", http.StatusOK},
		{"read key cannot write", readKey, http.MethodPut, "/v1/debtors/D-1/optouts/sms", http.StatusForbidden},
		{"write key writes", writeKey, http.MethodPut, "/v1/debtors/D-1/optouts/sms", http.StatusOK},
		{"write key cannot resolve", writeKey, http.MethodPost, "/v1/intents/I-1/resolution", http.StatusForbidden},
		{"health needs no key", "", http.MethodGet, "/healthz", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rr := serveAs(t, s, tc.key, tc.method, tc.path, ""); rr.Code != tc.code {
				t.Errorf("HTTP %d (%s), want %d", rr.Code, rr.Body, tc.code)
			}
		})
	}
}

func TestOptOutAPI(t *testing.T) {
	s, st := newServer(t, "cn-bank", now)
	ctx := context.Background()
	steps := []struct {
		method, path, body string
		code               int
		stopped            string
	}{
		{http.MethodPut, "/v1/debtors/D-5/optouts/sms", `{"reason":"asked at the branch"}`, 200, "sms"},
		{http.MethodPut, "/v1/debtors/D-5/optouts/sms", ``, 200, "sms"}, // twice is fine
		{http.MethodPut, "/v1/debtors/D-5/optouts/fax", ``, 400, ""},
		{http.MethodPut, "/v1/debtors/D-5/optouts/sms", `{"source":"rumour"}`, 400, ""},
		{http.MethodPut, "/v1/debtors/D-5/optouts/dispute_open", ``, 200, "email,sms,voice,wechat"},
		{http.MethodDelete, "/v1/debtors/D-5/optouts/dispute_open", ``, 200, "sms"},
		{http.MethodDelete, "/v1/debtors/D-5/optouts", ``, 200, ""},
		{http.MethodPut, "/v1/debtors/D-5/optouts", ``, 200, "email,sms,voice,wechat"},
	}
	for _, st := range steps {
		rr := serve(t, s, st.method, st.path, st.body)
		if rr.Code != st.code {
			t.Fatalf("%s %s: HTTP %d %s, want %d", st.method, st.path, rr.Code, rr.Body, st.code)
		}
		if rr.Code != 200 {
			continue
		}
		var v OptOutView
		json.Unmarshal(rr.Body.Bytes(), &v)
		if got := strings.Join(v.Stopped, ","); got != st.stopped {
			t.Errorf("%s %s: stopped %q, want %q", st.method, st.path, got, st.stopped)
		}
	}
	// The gate's view agrees: "all" is set, the dnc aggregate is gone.
	h, _ := st.OptOutsOf(ctx, "D-5")
	if _, ok := h["all"]; !ok || len(h) != 1 {
		t.Errorf("redis opt-outs %v, want all only", h)
	}
	var o optout.OptOut
	json.Unmarshal([]byte(h["all"]), &o)
	if o.Source != optout.SourceBankRequest || o.At.IsZero() {
		t.Errorf("opt-out %+v, want source bank_request and a time", o)
	}
}

// twilioSign signs a request as Twilio does.
func twilioSign(token, u string, form url.Values) string { return twiliotest.Sign(token, u, form) }

func webhook(t *testing.T, s *Server, path string, form url.Values, sig string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set("X-Twilio-Signature", sig)
	}
	rr := httptest.NewRecorder()
	s.Handler().ServeHTTP(rr, req)
	return rr
}

// indexNumber makes phone's SMS replies lead to debtor, as a sent SMS does.
func indexNumber(t *testing.T, st *store.Store, debtor, phone string) {
	t.Helper()
	id := "I-" + debtor
	ctx := context.Background()
	if _, err := st.Claim(ctx, store.ClaimRequest{ID: id, DebtorID: debtor, Owner: "w", Now: now, LeaseUntil: now.Add(time.Minute),
		Target: status.Sending, Channel: "sms", Entry: status.Entry{At: now, State: status.Sending}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Finish(ctx, store.FinishRequest{ID: id, DebtorID: debtor, Owner: "w", Now: now, State: status.Sent,
		Channel: "sms", Entry: status.Entry{At: now, ProviderID: "SM" + debtor}, Number: phone}); err != nil {
		t.Fatal(err)
	}
}

// TestInboundSMS: keywords in any case, full-width or with spaces opt the
// number out of SMS (a record of the number, not of its debtors) and back
// in; other text and HELP change nothing.
func TestInboundSMS(t *testing.T) {
	s, st := newServer(t, "cn-bank", now)
	ctx := context.Background()
	const phone = "+8613800138000"
	const path = "/webhooks/twilio/inbound"
	full := "https://collect.bank.example" + path
	seq := 0
	send := func(body string) *httptest.ResponseRecorder {
		seq++
		form := url.Values{"From": {phone}, "To": {"+15005550006"}, "Body": {body}, "MessageSid": {fmt.Sprintf("SMin%d", seq)}}
		return webhook(t, s, path, form, twilioSign(twilioToken, full, form))
	}
	stopped := func() bool {
		h, err := st.NumberOptOutsOf(ctx, st.Digest(phone))
		if err != nil {
			t.Fatal(err)
		}
		_, ok := h["sms"]
		return ok
	}
	for _, tc := range []struct {
		body    string
		stopped bool
		reply   string
	}{
		{"hello", false, "<Response></Response>"},
		{"ＴＤ", true, "您已退订"},
		{"START", false, "您已重新订阅"},
		{" 退订 ", true, "您已退订"},
		{"unstop", false, "重新订阅"},
		{"Stop!", true, "您已退订"},
		{"help", true, "95500"},
	} {
		rr := send(tc.body)
		if rr.Code != 200 || !strings.Contains(rr.Body.String(), tc.reply) || rr.Header().Get("Content-Type") != "application/xml" {
			t.Errorf("%q: HTTP %d %s, want a TwiML reply with %q", tc.body, rr.Code, rr.Body, tc.reply)
		}
		if stopped() != tc.stopped {
			t.Errorf("after %q: SMS to the number stopped %v, want %v", tc.body, stopped(), tc.stopped)
		}
	}
	var o optout.OptOut
	h, _ := st.NumberOptOutsOf(ctx, st.Digest(phone))
	json.Unmarshal([]byte(h["sms"]), &o)
	if o.Source != optout.SourceSMSKeyword || o.Number != st.Digest(phone) || o.DebtorID != "" || o.Reason != "reply stop" || o.Actor != optout.ActorDebtor {
		t.Errorf("number opt-out %+v, want source sms_keyword, the number's digest, no debtor, reason reply stop, actor debtor", o)
	}
}

func TestWebhookSignature(t *testing.T) {
	s, st := newServer(t, "cn-bank", now)
	const phone = "+8613900139000"
	indexNumber(t, st, "D-SIG", phone)
	const path = "/webhooks/twilio/inbound"
	full := "https://collect.bank.example" + path
	form := url.Values{"From": {phone}, "Body": {"TD"}}
	good := twilioSign(twilioToken, full, form)
	changed := url.Values{"From": {phone}, "Body": {"TD "}}
	changes := func() int {
		ctx := context.Background()
		n, _ := st.NumberOptOutsOf(ctx, st.Digest(phone))
		d, _ := st.OptOutsOf(ctx, "D-SIG")
		return len(n) + len(d)
	}
	for _, tc := range []struct {
		name string
		form url.Values
		sig  string
		code int
	}{
		{"no signature", form, "", 403},
		{"a changed parameter", changed, good, 403},
		{"signed for another URL", form, twilioSign(twilioToken, "https://elsewhere.example"+path, form), 403},
		{"signed with another token", form, twilioSign("other", full, form), 403},
		{"a changed signature", form, good[:len(good)-2] + "AA", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rr := webhook(t, s, path, tc.form, tc.sig); rr.Code != tc.code {
				t.Errorf("HTTP %d, want %d", rr.Code, tc.code)
			}
			if n := changes(); n != 0 {
				t.Fatalf("a refused webhook changed %d opt-outs", n)
			}
		})
	}
	if rr := webhook(t, s, path, form, good); rr.Code != 200 {
		t.Errorf("a well-signed request: HTTP %d", rr.Code)
	}
	if n, _ := st.NumberOptOutsOf(context.Background(), st.Digest(phone)); len(n) != 1 {
		t.Errorf("the signed STOP was not recorded: %v", n)
	}
}

func TestStatusCallbacks(t *testing.T) {
	s, st := newServer(t, "cn-bank", now)
	ctx := context.Background()
	indexNumber(t, st, "D-CB", "+8613700137000") // intent I-D-CB, sent, provider id SMD-CB
	path := "/webhooks/twilio/status?debtor_id=D-CB&intent_id=I-D-CB"
	full := "https://collect.bank.example" + path
	post := func(status string, sid string) {
		form := url.Values{"MessageSid": {sid}, "MessageStatus": {status}}
		if rr := webhook(t, s, path, form, twilioSign(twilioToken, full, form)); rr.Code != http.StatusNoContent {
			t.Fatalf("%s: HTTP %d %s", status, rr.Code, rr.Body)
		}
	}
	state := func() status.State {
		rec, _ := st.GetFor(ctx, "D-CB", "I-D-CB")
		return rec.State
	}
	post("sent", "SMD-CB")
	if state() != status.Sent {
		t.Errorf("after sent: %s", state())
	}
	post("delivered", "SMD-CB")
	post("sent", "SMD-CB")      // late
	post("delivered", "SMD-CB") // repeated
	post("undelivered", "SMD-CB")
	post("failed", "SMX-OTHER") // another message's id
	rec, _ := st.GetFor(ctx, "D-CB", "I-D-CB")
	if rec.State != status.Delivered || len(rec.Timeline) != 3 {
		t.Errorf("state %s with %d entries, want delivered with sending, sent, delivered", rec.State, len(rec.Timeline))
	}

	// A call answered counts as connected for the voice caps — only a call
	// we placed: the intent's record holds its CallSid (SMD-CALL here).
	indexNumber(t, st, "D-CALL", "+8613600136000")
	cpath := "/webhooks/twilio/status?debtor_id=D-CALL&intent_id=I-D-CALL"
	call := func(path, sid, cs string) {
		form := url.Values{"CallSid": {sid}, "CallStatus": {cs}}
		webhook(t, s, path, form, twilioSign(twilioToken, "https://collect.bank.example"+path, form))
	}
	for _, cs := range []string{"ringing", "in-progress", "completed", "completed"} {
		call(cpath, "SMD-CALL", cs)
	}
	call(cpath, "CA-NOT-OURS", "completed")                                                     // another call's id
	call("/webhooks/twilio/status?debtor_id=D-CALL&intent_id=I-NEVER-SENT", "CA2", "completed") // no such intent
	key := st.Keys().Stream("D-CALL", store.Stream{Event: policy.EventConnected, Channel: "voice", Scope: policy.ScopeDebtor})
	rdbStates, _ := st.Counters(ctx, "D-CALL", []store.Check{{Stream: store.Stream{Event: policy.EventConnected, Channel: "voice", Scope: policy.ScopeDebtor}, Since: now.Add(-time.Hour), Limit: 3}})
	if rdbStates[0].Count != 1 {
		t.Errorf("connected calls counted %d (key %s), want 1", rdbStates[0].Count, key)
	}
}

func TestUnsubscribePage(t *testing.T) {
	s, st := newServer(t, "cn-bank", now)
	s.Now = time.Now
	ctx := context.Background()
	old, _ := optout.ParseKeys("k1:old-secret-0123456789abcdef")
	tok, err := old.Sign(optout.Claims{DebtorID: "D-U", Channel: "email", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, lang string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Accept-Language", lang)
		rr := httptest.NewRecorder()
		s.Handler().ServeHTTP(rr, req)
		return rr
	}
	post := func(path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rr := httptest.NewRecorder()
		s.Handler().ServeHTTP(rr, req)
		return rr
	}
	emailStopped := func() bool { h, _ := st.OptOutsOf(ctx, "D-U"); _, ok := h["email"]; return ok }

	rr := get("/u/"+tok, "en-US,en;q=0.9")
	if rr.Code != 200 || !strings.Contains(rr.Body.String(), `id="confirm"`) || !strings.Contains(rr.Body.String(), `lang="en"`) || emailStopped() {
		t.Fatalf("GET: HTTP %d, stopped %v:\n%s", rr.Code, emailStopped(), rr.Body)
	}
	if rr := get("/u/"+tok+"?lang=zh-CN", "en"); !strings.Contains(rr.Body.String(), `lang="zh-CN"`) {
		t.Errorf("?lang=zh-CN did not win")
	}
	tampered := tok[:len(tok)-3] + "AAA"
	if rr := post("/u/"+tampered, ""); rr.Code != 400 || !strings.Contains(rr.Body.String(), `id="error"`) || emailStopped() {
		t.Errorf("tampered POST: HTTP %d, stopped %v", rr.Code, emailStopped())
	}
	expired, _ := old.Sign(optout.Claims{DebtorID: "D-U", Channel: "email", Expires: time.Now().Add(-time.Second)})
	if rr := post("/u/"+expired, "List-Unsubscribe=One-Click"); rr.Code != 400 || emailStopped() {
		t.Errorf("expired one-click: HTTP %d, stopped %v", rr.Code, emailStopped())
	}
	// The old key still verifies links it signed (rotation).
	if rr := post("/u/"+tok, ""); rr.Code != 200 || !strings.Contains(rr.Body.String(), `id="result"`) || !emailStopped() {
		t.Errorf("confirm: HTTP %d, stopped %v", rr.Code, emailStopped())
	}
	if rr := post("/u/"+tok, ""); rr.Code != 200 {
		t.Errorf("twice: HTTP %d", rr.Code)
	}
	// RFC 8058 one-click for another channel, no page.
	wx, _ := old.Sign(optout.Claims{DebtorID: "D-U", Channel: "wechat", Expires: time.Now().Add(time.Hour)})
	if rr := post("/u/"+wx, "List-Unsubscribe=One-Click"); rr.Code != 200 || strings.Contains(rr.Body.String(), "<html") {
		t.Errorf("one-click: HTTP %d %s", rr.Code, rr.Body)
	}
	h, _ := st.OptOutsOf(ctx, "D-U")
	if _, ok := h["wechat"]; !ok {
		t.Errorf("one-click did not opt out: %v", h)
	}
}
