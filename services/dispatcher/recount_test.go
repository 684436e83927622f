package main

import (
	"io"
	"net/http"
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
// the gap rule to an hour after the first.
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
	if sends, _ := journalCounts(t, journal); sends[first.ID] != 1 || sends[second.ID] != 0 {
		t.Errorf("sends: first %d, second %d; want 1 and 0", sends[first.ID], sends[second.ID])
	}
	t.Logf("first sent at %v; the second, after the restart, deferred by %s until %v", sentAt, last.Rule, last.Until)
}
