package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/channel/twilio/twiliotest"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// lockedBuffer collects logs written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoPersonalData runs intents through every real provider
// (including failures, a provider opt-out, DLQ rejections, an SMS STOP
// reply and a delivery callback) with debug logs captured, and fails if any
// phone number, e-mail address, openid or template parameter value from the
// inputs appears in them.
func TestLogsHoldNoPersonalData(t *testing.T) {
	h := newHarness(t, 6)
	logs := &lockedBuffer{}
	h.logs = logs
	f := startFakes(t)
	h.vars = f.vars()
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	g := sample.New(101, 100, time.Now())
	var ins []intent.Intent
	for i, ch := range intent.Channels {
		for _, in := range numbered(g, 4, []intent.Channel{ch}, false, 60+i) {
			in.Params["due_date"] = "2031-07-19" // not a date a log line carries
			if p, ok := in.Params["promise_date"]; ok && p != "" {
				in.Params["promise_date"] = "2031-07-19"
			}
			ins = append(ins, in)
		}
	}
	// Failures: a recipient Twilio says unsubscribed, one it says is invalid.
	f.twilio.FailNumber(ins[0].To.Phone, 400, 21610)
	f.twilio.FailNumber(ins[1].To.Phone, 400, 21211)
	h.produceIntents(ins)
	// Rejections whose reasons mention the fields that hold personal data.
	bad := g.Next()
	bad.To.Phone, bad.To.Email, bad.Channels = "13800138000x", "not-an-address@", []intent.Channel{intent.SMS, intent.Email}
	h.produce([]kafka.Message{{Key: []byte(bad.DebtorID), Value: mustJSON(t, bad)}})
	testenv.Eventually(t, 30*time.Second, "every intent decided", func() bool {
		n := h.statesOf(svc, ins)
		return n[status.Sent]+n[status.Failed]+n[status.Suppressed] == len(ins)
	})
	// An SMS reply and a delivery callback, signed as Twilio signs them.
	form := url.Values{"From": {ins[2].To.Phone}, "Body": {"退订"}}
	res := signedPost(t, svc.base, "/webhooks/twilio/inbound", form)
	res.Body.Close()
	cb := fmt.Sprintf("/webhooks/twilio/status?debtor_id=%s&intent_id=%s", ins[3].DebtorID, ins[3].ID)
	rec, _ := svc.Store().GetFor(context.Background(), ins[3].DebtorID, ins[3].ID)
	res = signedPost(t, svc.base, cb, url.Values{"MessageSid": {rec.Last().ProviderID}, "MessageStatus": {"delivered"}, "To": {ins[3].To.Phone}})
	res.Body.Close()

	out := logs.String()
	if !strings.Contains(out, `"level":"DEBUG"`) || !strings.Contains(out, "intent decided") {
		t.Fatalf("no debug decision logs were captured:\n%.2000s", out)
	}
	var secrets []string
	for _, in := range append(ins, bad) {
		secrets = append(secrets, in.To.Phone, in.To.Email, in.To.WeChatOpenID)
		// The national number without the country code, too.
		secrets = append(secrets, strings.TrimPrefix(in.To.Phone, "+86"))
		for _, v := range in.Params {
			secrets = append(secrets, v)
		}
	}
	for _, s := range secrets {
		if len(s) >= 4 && strings.Contains(out, s) {
			i := strings.Index(out, s)
			t.Errorf("personal data %q in the logs: …%s…", s, out[max(0, i-120):min(len(out), i+80)])
		}
	}
	t.Logf("%d bytes of debug logs checked against %d values", len(out), len(secrets))
}

// signedPost posts a form to a Twilio webhook signed with the test token.
func signedPost(t *testing.T, base, path string, form url.Values) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twiliotest.Sign(twToken, "https://collect.bank.example"+path, form))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestOpsPage: after a run with sends, deferrals, failures and DLQ records,
// headless Chromium signs in to /ops (the POST form; the cookie holds a
// session id), reads the funnel and a breaker state, opens an intent's
// timeline through the search box, saves a screenshot and signs out.
func TestOpsPage(t *testing.T) {
	browser := testenv.Browser(t)
	h := newHarness(t, 3)
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	svc.Sandbox.SetFault(intent.Voice, sandbox.Fault{Kind: channel.Permanent, Code: "21211"})
	g := sample.New(111, 100, time.Now())
	sms := numbered(g, 6, []intent.Channel{intent.SMS}, false, 70)
	calls := numbered(g, 2, []intent.Channel{intent.Voice}, false, 71)
	h.produceIntents(append(sms, calls...))
	h.produce([]kafka.Message{{Key: []byte("D-x"), Value: []byte(`{"id":`)}})
	testenv.Eventually(t, 30*time.Second, "decided", func() bool {
		return h.statesOf(svc, sms)[status.Sent] == 6 && h.statesOf(svc, calls)[status.Failed] == 2
	})
	var sum struct {
		Activity struct {
			Hour struct {
				ByState map[string]int `json:"by_state"`
			} `json:"last_hour"`
		} `json:"activity"`
		Providers []struct{ Provider string } `json:"providers"`
	}
	testenv.Eventually(t, 30*time.Second, "the ops data published", func() bool {
		getJSON(t, svc.base+"/v1/ops/summary", &sum)
		return sum.Activity.Hour.ByState["sent"] == 6 && sum.Activity.Hour.ByState["failed"] == 2 && len(sum.Providers) > 0
	})

	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(svc.base+"/ops"),
		chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), testAPIKey),
		chromedp.Click(chromedp.ID("login-go")),
		chromedp.WaitVisible(chromedp.ID("funnel-hour")),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	if got := text("#hour-sent"); got != "6" {
		t.Errorf("sent in the last hour shows %q, want 6", got)
	}
	if got := text("#hour-failed"); got != "2" {
		t.Errorf("failed in the last hour shows %q, want 2", got)
	}
	if got := text("#breaker-sandbox-sms"); got != "closed" {
		t.Errorf("SMS breaker shows %q, want closed", got)
	}
	if !strings.Contains(text("#failures"), calls[0].ID) && !strings.Contains(text("#failures"), calls[1].ID) {
		t.Errorf("recent failures do not list the failed calls:\n%s", text("#failures"))
	}
	if !strings.Contains(text("#dlq"), "malformed_json") {
		t.Errorf("DLQ reasons:\n%s", text("#dlq"))
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("search"), sms[0].ID),
		chromedp.Click(chromedp.ID("search-go")),
		chromedp.WaitVisible(chromedp.ID("timeline")),
	); err != nil {
		t.Fatalf("search: %v", err)
	}
	if got := text("#timeline-state"); got != "sent" {
		t.Errorf("timeline state %q, want sent", got)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := t.TempDir() + "/ops.png"
	if d := os.Getenv("DISPATCHER_SCREENSHOT_DIR"); d != "" {
		shot = d + "/ops.png"
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", shot, len(png))
	// Signing out ends the session: the page asks for a key again.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.Navigate(svc.base+"/ops"),
		chromedp.WaitVisible(chromedp.ID("key")),
	); err != nil {
		t.Fatalf("sign out: %v", err)
	}
}
