package main

import (
	"context"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel/email/smtptest"
	"github.com/contactd/dispatcher/pkg/channel/twilio/twiliotest"
	"github.com/contactd/dispatcher/pkg/channel/wechat/wechattest"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

const (
	twSID   = "AC00000000000000000000000000000001"
	twToken = "authtoken0001"
	wxApp   = "wx0000000000000001"
	wxSec   = "secret0001"
)

// fakes are local servers speaking each provider's wire format.
type fakes struct {
	twilio *twiliotest.Server
	smtp   *smtptest.Server
	wechat *wechattest.Server
}

func startFakes(t *testing.T) *fakes {
	f := &fakes{
		twilio: twiliotest.NewServer(twSID, twToken),
		smtp:   smtptest.NewServer(t, smtptest.WithoutSTARTTLS()),
		wechat: wechattest.NewServer(wxApp, wxSec),
	}
	t.Cleanup(f.twilio.Close)
	t.Cleanup(f.wechat.Close)
	return f
}

// vars configures every channel with its real provider, pointed at the fakes.
func (f *fakes) vars() map[string]string {
	return map[string]string{
		"DISPATCHER_SMS_PROVIDER": "twilio", "DISPATCHER_VOICE_PROVIDER": "twilio",
		"DISPATCHER_EMAIL_PROVIDER": "smtp", "DISPATCHER_WECHAT_PROVIDER": "wechat",
		"DISPATCHER_TWILIO_ACCOUNT_SID": twSID, "DISPATCHER_TWILIO_AUTH_TOKEN": twToken,
		"DISPATCHER_TWILIO_FROM": "+15005550006", "DISPATCHER_TWILIO_BASE_URL": f.twilio.URL(),
		"DISPATCHER_SMTP_ADDR": f.smtp.Addr(), "DISPATCHER_SMTP_FROM": "示例银行 <noreply@bank.example>",
		"DISPATCHER_SMTP_TLS":     "none",
		"DISPATCHER_WECHAT_APPID": wxApp, "DISPATCHER_WECHAT_SECRET": wxSec, "DISPATCHER_WECHAT_BASE_URL": f.wechat.URL(),
		"DISPATCHER_WECHAT_TEMPLATE_IDS": "overdue_notice=TPL-OVERDUE,payment_due_soon=TPL-SOON,promise_to_pay_reminder=TPL-PROMISE",
		"DISPATCHER_PUBLIC_BASE_URL":     "https://collect.bank.example",
	}
}

// numbered makes n intents on the given channels, each to its own number,
// address and openid so a provider's requests can be told apart.
func numbered(g *sample.Generator, n int, chans []intent.Channel, fallback bool, tag int) []intent.Intent {
	var out []intent.Intent
	for i := 0; i < n; i++ {
		in := g.Next()
		in.DebtorID = fmt.Sprintf("D-%d-%04d", tag, i)
		in.Channels, in.Fallback = chans, fallback
		in.To.Phone = fmt.Sprintf("+86139%04d%04d", tag, i)
		in.To.Email = fmt.Sprintf("d%d.%d@example.cn", tag, i)
		in.To.WeChatOpenID = fmt.Sprintf("oX1t%dn%06d", tag, i)
		out = append(out, in)
	}
	return out
}

func (h *harness) produceIntents(ins []intent.Intent) {
	var msgs []kafka.Message
	for _, in := range ins {
		msgs = append(msgs, kafka.Message{Key: []byte(in.DebtorID), Value: mustJSON(h.t, in)})
	}
	h.produce(msgs)
}

func (h *harness) statesOf(svc *running, ins []intent.Intent) map[status.State]int {
	n := map[status.State]int{}
	for _, in := range ins {
		rec, err := svc.Store().GetFor(context.Background(), in.DebtorID, in.ID)
		if err == nil {
			n[rec.State]++
		}
	}
	return n
}

// TestProviders: every channel through its real provider's wire format.
func TestProviders(t *testing.T) {
	h := newHarness(t, 12)
	f := startFakes(t)
	h.vars = f.vars()
	svc := h.start(Roles{Worker: true, API: true, Dev: true}) // dev: plaintext SMTP to the local server
	g := sample.New(31, 1000, time.Now())
	var ins []intent.Intent
	for i, ch := range intent.Channels {
		ins = append(ins, numbered(g, 3, []intent.Channel{ch}, false, i)...)
	}
	h.produceIntents(ins)
	testenv.Eventually(t, 30*time.Second, "12 intents sent", func() bool { return h.statesOf(svc, ins)[status.Sent] == 12 })

	// Twilio: 3 messages, 3 calls, exact parameters.
	var msgs, calls int
	for _, r := range f.twilio.Created() {
		switch {
		case strings.HasSuffix(r.Path, "/Messages.json"):
			msgs++
			body := r.Form.Get("Body")
			if r.Form.Get("From") != "+15005550006" || !strings.HasPrefix(r.Form.Get("To"), "+86139") ||
				!(strings.HasSuffix(body, "回复TD退订") || strings.HasSuffix(body, "Reply STOP to opt out")) ||
				!strings.HasPrefix(r.Form.Get("StatusCallback"), "https://collect.bank.example/webhooks/twilio/status?debtor_id=D-") {
				t.Errorf("SMS parameters %v", r.Form)
			}
		case strings.HasSuffix(r.Path, "/Calls.json"):
			calls++
			if !strings.Contains(r.Form.Get("Twiml"), "<Say") {
				t.Errorf("call without TwiML: %v", r.Form)
			}
		}
	}
	if msgs != 3 || calls != 3 {
		t.Errorf("twilio created %d messages and %d calls, want 3 and 3", msgs, calls)
	}
	// SMTP: 3 mails.
	if got := f.smtp.Messages(); len(got) != 3 {
		t.Errorf("smtp received %d messages, want 3", len(got))
	} else if m, err := mail.ReadMessage(strings.NewReader(string(got[0].Data))); err != nil || m.Header.Get("X-Dispatcher-Intent") == "" {
		t.Errorf("mail: %v %v", err, m)
	}
	// WeChat: 3 template messages, client_msg_id = intent id, token fetched once.
	ids := map[string]bool{}
	for _, in := range ins {
		ids[in.ID] = true
	}
	for _, s := range f.wechat.Sends() {
		if !ids[s.Body.ClientMsgID] || !strings.HasPrefix(s.Body.TemplateID, "TPL-") {
			t.Errorf("wechat send %+v", s.Body)
		}
	}
	if f.wechat.Delivered() != 3 || f.wechat.TokensIssued() != 1 {
		t.Errorf("wechat delivered %d with %d tokens, want 3 with 1", f.wechat.Delivered(), f.wechat.TokensIssued())
	}
	// The receipts are on the records.
	rec, _ := svc.Store().GetFor(context.Background(), ins[0].DebtorID, ins[0].ID)
	if last := rec.Last(); last.Provider != "twilio" || !strings.HasPrefix(last.ProviderID, "SM") {
		t.Errorf("sent entry %+v, want a twilio SM id", last)
	}
}

// TestProviderOutage: Twilio answers 500 to everything. Its breaker opens
// after the configured number of calls; e-mail keeps sending; intents that
// allow fallback go by WeChat; SMS-only intents wait. When Twilio recovers,
// every waiting intent is sent exactly once.
func TestProviderOutage(t *testing.T) {
	h := newHarness(t, 12)
	f := startFakes(t)
	h.vars = f.vars()
	for k, v := range map[string]string{
		"DISPATCHER_BREAKER_MIN_REQUESTS": "5", "DISPATCHER_BREAKER_FAILURE_RATIO": "0.5", "DISPATCHER_BREAKER_COOL_DOWN": "4s",
		"DISPATCHER_RETRY_BASE": "500ms", "DISPATCHER_RETRY_MAX": "2s", "DISPATCHER_RETRY_LIMIT": "50",
	} {
		h.vars[k] = v
	}
	f.twilio.Fail(-1, 500, 0)
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	g := sample.New(41, 1000, time.Now())
	smsOnly := numbered(g, 20, []intent.Channel{intent.SMS}, false, 10)
	fallback := numbered(g, 10, []intent.Channel{intent.SMS, intent.WeChat}, true, 11)
	mails := numbered(g, 10, []intent.Channel{intent.Email}, false, 12)
	h.produceIntents(append(append(append([]intent.Intent{}, smsOnly...), fallback...), mails...))

	testenv.Eventually(t, 30*time.Second, "the SMS breaker to open", func() bool {
		return scrape(t, svc.base)[`dispatcher_breaker_state{provider="twilio-sms"}`] == 2
	})
	// The cool-down is long enough that no half-open trial call has run
	// by the time the test sees the breaker open, even on a loaded machine.
	failedWhenOpened := f.twilio.Count()
	// At least the configured 5; at most one call per SMS-capable intent
	// (30): none is retried before the breaker opens. (Calls in flight on
	// 12 lanes when it trips make the exact count vary with the load.)
	if failedWhenOpened < 5 || failedWhenOpened > len(smsOnly)+len(fallback) {
		t.Errorf("%d calls to Twilio before its breaker opened; want the configured 5, at most one per SMS-capable intent", failedWhenOpened)
	}
	testenv.Eventually(t, 30*time.Second, "e-mail and fallback intents sent while Twilio is down", func() bool {
		return h.statesOf(svc, mails)[status.Sent] == 10 && h.statesOf(svc, fallback)[status.Sent] == 10
	})
	if n := h.statesOf(svc, smsOnly); n[status.Sent] != 0 || n[status.Deferred] != 20 {
		t.Fatalf("SMS-only intents while Twilio is down: %v, want 20 deferred", n)
	}
	rec, _ := svc.Store().GetFor(context.Background(), smsOnly[0].DebtorID, smsOnly[0].ID)
	if r := rec.Last().Reason; r != "retry" && r != "provider_down" {
		t.Errorf("a waiting SMS says %q, want retry or provider_down", r)
	}
	var summary struct {
		Providers []struct{ Provider, State string } `json:"providers"`
	}
	testenv.Eventually(t, 15*time.Second, "the ops summary to show the open breaker", func() bool {
		getJSON(t, svc.base+"/v1/ops/summary", &summary)
		for _, p := range summary.Providers {
			if p.Provider == "twilio-sms" && p.State != "closed" {
				return true
			}
		}
		return false
	})
	during := f.twilio.Count()

	f.twilio.Clear()
	testenv.Eventually(t, 60*time.Second, "every SMS sent after Twilio recovered", func() bool {
		return h.statesOf(svc, smsOnly)[status.Sent] == 20
	})
	perNumber := map[string]int{}
	for _, r := range f.twilio.Created() {
		perNumber[r.Form.Get("To")]++
	}
	for _, in := range smsOnly {
		if perNumber[in.To.Phone] != 1 {
			t.Errorf("SMS-only intent %s delivered %d times, want 1", in.ID, perNumber[in.To.Phone])
		}
	}
	wechat := map[string]int{}
	for _, s := range f.wechat.Sends() {
		if s.Delivered() {
			wechat[s.Body.ClientMsgID]++
		}
	}
	for _, in := range fallback {
		if n := wechat[in.ID] + perNumber[in.To.Phone]; n != 1 {
			t.Errorf("fallback intent %s delivered %d times, want 1", in.ID, n)
		}
	}
	t.Logf("Twilio calls: %d before the breaker opened, %d while it was open or half-open, %d messages after recovery; fallback intents by WeChat: %d of 10",
		failedWhenOpened, during-failedWhenOpened, len(f.twilio.Created()), len(wechat))
}

// TestProviderTimeoutNotResent: Twilio takes longer than the send deadline;
// the messages may have been created, so they end sent_unconfirmed and are
// never sent again.
func TestProviderTimeoutNotResent(t *testing.T) {
	h := newHarness(t, 3)
	f := startFakes(t)
	h.vars = f.vars()
	h.vars["DISPATCHER_SEND_TIMEOUT"] = "300ms"
	h.vars["DISPATCHER_RETRY_BASE"] = "100ms"
	f.twilio.Delay(time.Second)
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	ins := numbered(sample.New(51, 100, time.Now()), 5, []intent.Channel{intent.SMS}, false, 20)
	h.produceIntents(ins)
	testenv.Eventually(t, 30*time.Second, "5 unconfirmed", func() bool { return h.statesOf(svc, ins)[status.SentUnconfirmed] == 5 })
	time.Sleep(1500 * time.Millisecond) // time enough for any retry to show
	if n := len(f.twilio.Created()); n != 5 {
		t.Errorf("Twilio created %d messages, want 5: an unknown outcome was resent", n)
	}
	if n := h.statesOf(svc, ins)[status.SentUnconfirmed]; n != 5 {
		t.Errorf("%d unconfirmed after waiting, want 5", n)
	}

	// Ops checked Twilio's console: the message went out.
	post := func(body string) int {
		res := api(t, http.MethodPost, svc.base+"/v1/intents/"+ins[0].ID+"/resolution", body)
		res.Body.Close()
		return res.StatusCode
	}
	if code := post(`{"state":"maybe"}`); code != http.StatusBadRequest {
		t.Errorf("a bad resolution: HTTP %d, want 400", code)
	}
	if code := post(`{"state":"sent","note":"found in the Twilio console"}`); code != http.StatusOK {
		t.Errorf("resolution: HTTP %d, want 200", code)
	}
	if code := post(`{"state":"failed"}`); code != http.StatusConflict {
		t.Errorf("a second resolution: HTTP %d, want 409", code)
	}
	rec, _ := svc.Store().GetFor(context.Background(), ins[0].DebtorID, ins[0].ID)
	if rec.State != status.Sent || rec.Last().Reason != "resolved" || rec.Last().Detail != "found in the Twilio console" {
		t.Errorf("after the resolution: %s %+v", rec.State, rec.Last())
	}
	if n := len(f.twilio.Created()); n != 5 {
		t.Errorf("a resolution sent something: %d messages", n)
	}
}

// TestDevOneRealProvider: dev mode with only SMS pointed at a Twilio-shaped
// server sends SMS there while the other channels stay in the sandbox.
func TestDevOneRealProvider(t *testing.T) {
	h := newHarness(t, 3)
	f := startFakes(t)
	h.vars = map[string]string{}
	for k, v := range f.vars() {
		if strings.HasPrefix(k, "DISPATCHER_TWILIO_") {
			h.vars[k] = v
		}
	}
	h.vars["DISPATCHER_SMS_PROVIDER"] = "twilio"
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	g := sample.New(81, 100, time.Now())
	sms := numbered(g, 2, []intent.Channel{intent.SMS}, false, 50)
	mails := numbered(g, 2, []intent.Channel{intent.Email}, false, 51)
	h.produceIntents(append(sms, mails...))
	testenv.Eventually(t, 30*time.Second, "4 sent", func() bool { return h.statesOf(svc, append(sms, mails...))[status.Sent] == 4 })
	if n := len(f.twilio.Created()); n != 2 {
		t.Errorf("Twilio got %d messages, want the 2 SMS", n)
	}
	var outbox struct {
		Entries []struct {
			Channel string `json:"channel"`
		} `json:"entries"`
	}
	getJSON(t, svc.base+"/v1/sandbox/outbox", &outbox)
	if len(outbox.Entries) != 2 || outbox.Entries[0].Channel != "email" {
		t.Errorf("sandbox outbox %+v, want the 2 e-mails", outbox.Entries)
	}
}

// TestProviderRetryAfter: a 429 with Retry-After: 2 is honoured.
func TestProviderRetryAfter(t *testing.T) {
	h := newHarness(t, 3)
	f := startFakes(t)
	h.vars = f.vars()
	h.vars["DISPATCHER_RETRY_BASE"] = "100ms"
	f.twilio.FailWith(1, twiliotest.Failure{Status: 429, RetryAfter: "2"})
	svc := h.start(Roles{Worker: true, Dev: true})
	ins := numbered(sample.New(61, 100, time.Now()), 1, []intent.Channel{intent.SMS}, false, 30)
	h.produceIntents(ins)
	testenv.Eventually(t, 30*time.Second, "sent after the 429", func() bool { return h.statesOf(svc, ins)[status.Sent] == 1 })
	rec, _ := svc.Store().GetFor(context.Background(), ins[0].DebtorID, ins[0].ID)
	var deferred, sent status.Entry
	for _, e := range rec.Timeline {
		switch e.State {
		case status.Deferred:
			deferred = e
		case status.Sent:
			sent = e
		}
	}
	if deferred.Reason != "retry" || deferred.Until == nil || deferred.Until.Sub(deferred.At) < 2*time.Second || sent.At.Sub(deferred.At) < 2*time.Second {
		t.Errorf("deferred %+v, sent at %s: want a retry at least 2 s later", deferred, sent.At)
	}
	if len(f.twilio.Requests()) != 2 {
		t.Errorf("%d requests to Twilio, want 2", len(f.twilio.Requests()))
	}
}

// TestWeChatTokenShared: two worker replicas share one WeChat access token
// through Redis: it is fetched once.
func TestWeChatTokenShared(t *testing.T) {
	h := newHarness(t, 12)
	f := startFakes(t)
	h.vars = f.vars()
	a := h.start(Roles{Worker: true, Dev: true})
	b := h.start(Roles{Worker: true, Dev: true})
	g := sample.New(71, 100, time.Now())
	var ins []intent.Intent
	// Keep producing until both replicas have partitions and send intents
	// (consuming is not enough: after a rebalance a replica may consume an
	// intent the other one holds and leave the send to it).
	testenv.Eventually(t, 60*time.Second, "both replicas to send", func() bool {
		more := numbered(g, 10, []intent.Channel{intent.WeChat}, false, 40+len(ins)/10)
		ins = append(ins, more...)
		h.produceIntents(more)
		time.Sleep(300 * time.Millisecond)
		return scrape(t, "http://"+a.Addr())["dispatcher_sends_total"] > 0 &&
			scrape(t, "http://"+b.Addr())["dispatcher_sends_total"] > 0
	})
	testenv.Eventually(t, 60*time.Second, "every intent sent", func() bool { return h.statesOf(a, ins)[status.Sent] == len(ins) })
	workers := map[string]bool{}
	for _, in := range ins {
		rec, _ := b.Store().GetFor(context.Background(), in.DebtorID, in.ID)
		workers[rec.Last().Worker] = true
	}
	if len(workers) != 2 {
		t.Errorf("sent by %d workers, want both", len(workers))
	}
	if f.wechat.Delivered() != len(ins) || f.wechat.TokensIssued() != 1 {
		t.Errorf("delivered %d of %d with %d tokens issued, want all with 1", f.wechat.Delivered(), len(ins), f.wechat.TokensIssued())
	}
}
