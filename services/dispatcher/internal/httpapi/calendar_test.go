package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
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
