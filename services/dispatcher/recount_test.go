package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// The contact streams survive the whole dev service being killed: its
// in-process Redis starts empty, and the claims on reminders.status count
// again, so a debtor messaged just before the restart is not messaged
// again inside the profile's one-hour gap — the second SMS is deferred by
// the gap rule to an hour after the first. The numbers' state survives it
// too: two debtors messaged at one shared number before the restart fill
// its 2 SMS a day, so a third debtor there is deferred by the number's
// rule after it; a STOP from a number never messaged, replied before the
// restart, suppresses an SMS to it for a new debtor after it.
func TestDevGapSurvivesRestart(t *testing.T) {
	dataDir, journal, port := t.TempDir(), t.TempDir()+"/journal", freePort(t)
	profile, err := filepath.Abs("testdata/gap1h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := sample.New(13, 20, time.Now())
	first, second := g.Next(), g.Next()
	first.DebtorID = "D-GAP-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	second.DebtorID = first.DebtorID
	first.Channels, second.Channels = []intent.Channel{intent.SMS}, []intent.Channel{intent.SMS}
	first.Fallback, second.Fallback = false, false

	tag := strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	sharedPhone, stopPhone := "+86139"+fmt.Sprintf("%08s", tag), "+86137"+fmt.Sprintf("%08s", tag)
	at := func(debtor, phone string) intent.Intent {
		in := g.Next()
		in.DebtorID, in.To.Phone = debtor+"-"+tag, phone
		in.Channels, in.Fallback = []intent.Channel{intent.SMS}, false
		return in
	}
	shareA, shareB, shareC := at("D-SH-A", sharedPhone), at("D-SH-B", sharedPhone), at("D-SH-C", sharedPhone)
	stopped := at("D-STOP", stopPhone)

	d := startDevWith(t, dataDir, port, journal, profile)
	post := func(in intent.Intent) {
		t.Helper()
		res := api(t, http.MethodPost, d.api+"/v1/intents", string(mustJSON(t, in)))
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted && res.StatusCode != http.StatusOK {
			t.Fatalf("POST intent: HTTP %d %s", res.StatusCode, b)
		}
	}
	post(first)
	var rec status.Record
	testenv.Eventually(t, 60*time.Second, "the first SMS sent", func() bool {
		return getJSON(t, d.api+"/v1/intents/"+first.ID, &rec) == http.StatusOK && rec.State == status.Sent
	})
	sentAt := rec.UpdatedAt
	post(shareA)
	post(shareB)
	for _, in := range []intent.Intent{shareA, shareB} {
		testenv.Eventually(t, 60*time.Second, "the SMS at the shared number sent", func() bool {
			var r status.Record
			return getJSON(t, d.api+"/v1/intents/"+in.ID, &r) == http.StatusOK && r.State == status.Sent
		})
	}
	res, err := http.PostForm(d.api+"/webhooks/twilio/inbound", url.Values{"From": {stopPhone}, "Body": {"TD"}, "MessageSid": {"SM" + tag}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("STOP reply: HTTP %d", res.StatusCode)
	}
	d.stop(t, syscall.SIGKILL)

	d = startDevWith(t, dataDir, port, journal, profile)
	defer d.stop(t, syscall.SIGTERM)
	post(second)
	testenv.Eventually(t, 60*time.Second, "the second SMS decided", func() bool {
		return getJSON(t, d.api+"/v1/intents/"+second.ID, &rec) == http.StatusOK && rec.State != status.Accepted
	})
	last := rec.Last()
	if rec.State != status.Deferred || last.Rule != "test.min-gap" || last.Until == nil ||
		last.Until.Before(sentAt.Add(59*time.Minute)) {
		t.Fatalf("second SMS after the restart: %s by %q until %v (first sent %v); want deferred by test.min-gap to an hour after the first",
			rec.State, last.Rule, last.Until, sentAt)
	}
	post(shareC)
	post(stopped)
	decided := func(in intent.Intent) status.Record {
		var r status.Record
		testenv.Eventually(t, 60*time.Second, in.DebtorID+"'s SMS decided", func() bool {
			return getJSON(t, d.api+"/v1/intents/"+in.ID, &r) == http.StatusOK && r.State != status.Accepted
		})
		return r
	}
	if r := decided(shareC); r.State != status.Deferred || r.Last().Rule != "test.sms-per-number" {
		t.Errorf("a third debtor at the shared number after the restart: %s by %q; want deferred by test.sms-per-number", r.State, r.Last().Rule)
	}
	if r := decided(stopped); r.State != status.Suppressed || r.Reason != "opted_out" {
		t.Errorf("SMS to the number that replied TD before the restart: %s/%s; want suppressed/opted_out", r.State, r.Reason)
	}
	if sends, _ := journalCounts(t, journal); sends[first.ID] != 1 || sends[second.ID] != 0 || sends[shareC.ID] != 0 || sends[stopped.ID] != 0 {
		t.Errorf("sends: first %d, second %d, third at the shared number %d, to the stopped number %d; want 1, 0, 0, 0",
			sends[first.ID], sends[second.ID], sends[shareC.ID], sends[stopped.ID])
	}
	t.Logf("first sent at %v; the second, after the restart, deferred by %s until %v", sentAt, last.Rule, last.Until)
}
