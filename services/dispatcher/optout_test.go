package main

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// TestOptOutRace: an opt-out posted through one replica's API while 100
// intents for that debtor are queued at the workers: none of those passes
// the gate after the opt-out's 200 reply.
func TestOptOutRace(t *testing.T) {
	h := newHarness(t, 12)
	h.vars = map[string]string{"DISPATCHER_SANDBOX_LATENCY": "10ms"}
	a := h.start(Roles{Worker: true, API: true, Dev: true})
	h.start(Roles{Worker: true, Dev: true})
	g := sample.New(91, 10, time.Now())
	var ins []intent.Intent
	for i := 0; i < 100; i++ {
		in := g.Next()
		in.DebtorID, in.Channels, in.Fallback = "D-RACE", []intent.Channel{intent.SMS}, false
		ins = append(ins, in)
	}
	h.produceIntents(ins)
	testenv.Eventually(t, 30*time.Second, "the first sends", func() bool { return h.statesOf(a, ins)[status.Sent] >= 5 })

	res := api(t, http.MethodPut, a.base+"/v1/debtors/D-RACE/optouts/sms", `{"reason":"called the bank"}`)
	res.Body.Close()
	replied := time.Now()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("opt-out: HTTP %d", res.StatusCode)
	}
	testenv.Eventually(t, 60*time.Second, "every intent decided", func() bool {
		n := h.statesOf(a, ins)
		return n[status.Sent]+n[status.Suppressed] == 100
	})
	n := h.statesOf(a, ins)
	late := 0
	for _, in := range ins {
		rec, _ := a.Store().GetFor(context.Background(), in.DebtorID, in.ID)
		if rec.State == status.Sent && !rec.Timeline[0].At.Before(replied) {
			late++
			t.Errorf("intent %s passed the gate at %s, after the opt-out's reply at %s", in.ID, rec.Timeline[0].At, replied)
		}
		if rec.State == status.Suppressed && rec.Reason != status.ReasonOptedOut {
			t.Errorf("intent %s suppressed for %q", in.ID, rec.Reason)
		}
	}
	t.Logf("sent before the opt-out %d, suppressed after it %d, passed the gate after the reply %d", n[status.Sent], n[status.Suppressed], late)
	if n[status.Suppressed] < 50 {
		t.Errorf("only %d suppressed: the opt-out came too late to prove anything", n[status.Suppressed])
	}
}

// TestOptOutInBrowser: the debtor opens the link in a sandbox SMS in
// headless Chromium, presses the button, sees the confirmation, and the
// next SMS intent for them ends suppressed/opted_out.
func TestOptOutInBrowser(t *testing.T) {
	browser := testenv.Browser(t)
	h := newHarness(t, 3)
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	h.vars = map[string]string{"DISPATCHER_HTTP_ADDR": "127.0.0.1:" + strconv.Itoa(port), "DISPATCHER_PUBLIC_BASE_URL": base}
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	g := sample.New(93, 10, time.Now())
	first := g.Next()
	first.DebtorID, first.Channels, first.Locale = "D-BROWSER", []intent.Channel{intent.SMS}, "zh-CN"
	h.produceIntents([]intent.Intent{first})
	testenv.Eventually(t, 30*time.Second, "the SMS sent", func() bool { return h.statesOf(svc, []intent.Intent{first})[status.Sent] == 1 })

	var outbox struct {
		Entries []struct {
			IntentID  string `json:"intent_id"`
			Body      string `json:"body"`
			OptOutURL string `json:"optout_url"`
		} `json:"entries"`
	}
	getJSON(t, base+"/v1/sandbox/outbox", &outbox)
	if len(outbox.Entries) != 1 || !strings.HasPrefix(outbox.Entries[0].OptOutURL, base+"/u/") {
		t.Fatalf("outbox %+v, want the SMS with its opt-out link", outbox.Entries)
	}
	link := outbox.Entries[0].OptOutURL

	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("confirm")),
	); err != nil {
		t.Fatalf("browser: open the link: %v", err)
	}
	heading, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("result")),
	); err != nil {
		t.Fatalf("browser: press the button: %v", err)
	}
	result, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("result")))
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	shot := t.TempDir() + "/optout.png"
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(result, "退订") && !strings.Contains(result, "unsubscribed") {
		t.Errorf("confirmation %q, want it to say the SMS are unsubscribed", result)
	}
	t.Logf("page %q → %q (%d-byte screenshot)", heading, result, len(png))

	var v struct {
		Stopped []string `json:"stopped"`
	}
	getJSON(t, base+"/v1/debtors/D-BROWSER/optouts", &v)
	if strings.Join(v.Stopped, ",") != "sms" {
		t.Errorf("stopped %v, want sms", v.Stopped)
	}
	next := g.Next()
	next.DebtorID, next.Channels = "D-BROWSER", []intent.Channel{intent.SMS}
	h.produceIntents([]intent.Intent{next})
	testenv.Eventually(t, 30*time.Second, "the next SMS decided", func() bool {
		return h.statesOf(svc, []intent.Intent{next})[status.Suppressed] == 1
	})
	var rec status.Record
	getJSON(t, base+"/v1/intents/"+next.ID, &rec)
	if rec.Reason != status.ReasonOptedOut {
		t.Errorf("next intent %s/%s, want suppressed/opted_out", rec.State, rec.Reason)
	}
}
