package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// From 60 days before the holiday calendars stop covering, /readyz (still
// ready), /v1/ops/summary and the ops page say so; before that, nothing.
func TestCalendarNotices(t *testing.T) {
	s, _ := newServer(t, "cn-bank", time.Date(2027, 11, 15, 2, 0, 0, 0, time.UTC))
	var ready struct {
		Ready   bool     `json:"ready"`
		Notices []string `json:"notices"`
	}
	rr := serve(t, s, "GET", "/readyz", "")
	if err := json.Unmarshal(rr.Body.Bytes(), &ready); err != nil {
		t.Fatal(err)
	}
	if rr.Code != http.StatusOK || !ready.Ready || len(ready.Notices) != 1 || !strings.Contains(ready.Notices[0], "end on 2027-12-31") {
		t.Fatalf("readyz %d %s, want ready with a notice that the calendars end on 2027-12-31", rr.Code, rr.Body)
	}
	var sum Summary
	rr = serve(t, s, "GET", "/v1/ops/summary", "")
	if err := json.Unmarshal(rr.Body.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Notices) != 1 || sum.Notices[0] != ready.Notices[0] {
		t.Errorf("summary notices %q, want %q", sum.Notices, ready.Notices)
	}
	page := serveAs(t, s, readKey, "GET", "/ops", "")
	if !strings.Contains(page.Body.String(), `id="notice"`) || !strings.Contains(page.Body.String(), "2027-12-31") {
		t.Errorf("ops page (%d) shows no calendar banner", page.Code)
	}

	early, _ := newServer(t, "cn-bank", time.Date(2027, 10, 1, 2, 0, 0, 0, time.UTC))
	rr = serve(t, early, "GET", "/readyz", "")
	if strings.Contains(rr.Body.String(), "notices") {
		t.Errorf("readyz 92 days before the end: %s", rr.Body)
	}
}

// Under us-regf a call without debt_id is a 400 naming the field and the
// rule that needs it, not an accepted intent.
func TestRequiredFieldOverHTTP(t *testing.T) {
	s, _ := newServer(t, "us-regf", time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC))
	body := intentWith("I-NODEBT", func(m map[string]any) {
		delete(m, "debt_id")
		m["channels"] = []string{"voice"}
		m["to"] = map[string]any{"phone": "+12125550123"}
		m["timezone"] = "America/New_York"
		delete(m, "not_before")
		delete(m, "expires_at")
	})
	rr := serveAs(t, s, writeKey, "POST", "/v1/intents", body)
	if rr.Code != http.StatusBadRequest || !strings.Contains(rr.Body.String(), `"field":"debt_id"`) ||
		!strings.Contains(rr.Body.String(), "required_by_profile") || !strings.Contains(rr.Body.String(), "regf.call-frequency") {
		t.Fatalf("POST without debt_id: %d %s, want 400 naming debt_id and regf.call-frequency", rr.Code, rr.Body)
	}
}

// GET /v1/intents/{id} shows the legal source of the profile version that
// decided, not of the profile loaded now; a version no process recorded
// shows none rather than a text that did not decide.
func TestIntentSourcesByVersion(t *testing.T) {
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	s, st := newServer(t, "cn-bank", now)
	ctx := context.Background()
	if err := st.PutProfile(ctx, "0ld0ld0ld0ld0ld0", store.ProfileText{Name: "cn-bank", Sources: map[string]string{"cn.sms.daily": "the 2025 text"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, version, want string }{
		{"I-OLD", "0ld0ld0ld0ld0ld0", "the 2025 text"},
		{"I-NOW", s.Profile.Version, s.Profile.Source("cn.sms.daily")},
		{"I-GONE", "5eeee5eeee5eeee5", ""},
	} {
		until := now.Add(time.Hour)
		if _, err := st.ApplyEvents(ctx, []status.Event{{Kind: status.KindTransition, ID: c.id, DebtorID: "D-V", Seq: 1,
			State: status.Deferred, Reason: "frequency_cap", Channel: "sms", At: now, Rule: "cn.sms.daily", Profile: "cn-bank",
			Version: c.version, Until: &until, Inputs: &status.Inputs{Zones: []string{"Asia/Shanghai"}}}}, now); err != nil {
			t.Fatal(err)
		}
		rr := serve(t, s, "GET", "/v1/intents/"+c.id, "")
		var rec status.Record
		if err := json.Unmarshal(rr.Body.Bytes(), &rec); err != nil || len(rec.Timeline) == 0 {
			t.Fatalf("%s: %d %s", c.id, rr.Code, rr.Body)
		}
		if got := rec.Timeline[0].Source; got != c.want {
			t.Errorf("%s (version %s): source %q, want %q", c.id, c.version, got, c.want)
		}
	}
}
