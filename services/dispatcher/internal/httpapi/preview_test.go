package httpapi

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

// POST /v1/intents/preview answers what the gate would decide then, counting
// the debtor's real contacts and opt-outs, and leaves Redis as it was.
func TestPreview(t *testing.T) {
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC) // 11:00 in Shanghai
	s, st := newServer(t, "cn-bank", now)
	s.Previewer = worker.NewPreviewer(st, s.Templates.(worker.Templates), s.Profile)
	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	preview := func(t *testing.T, at, body string) worker.Preview {
		t.Helper()
		path := "/v1/intents/preview"
		if at != "" {
			path += "?at=" + strings.ReplaceAll(at, "+", "%2B")
		}
		rr := serveAs(t, s, readKey, "POST", path, body)
		var p worker.Preview
		if rr.Code != 200 || json.Unmarshal(rr.Body.Bytes(), &p) != nil {
			t.Fatalf("preview: %d %s", rr.Code, rr.Body)
		}
		return p
	}
	voice := intentWith("I-P", func(m map[string]any) {
		m["channels"] = []string{"voice"}
		delete(m, "expires_at")
		delete(m, "not_before")
	})
	// The keys of this server's store only: other packages' tests share the
	// Redis server.
	dbsize := func() int {
		keys, err := rdb.Keys(ctx, st.Keys().Prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}

	t.Run("a holiday call", func(t *testing.T) {
		before := dbsize()
		p := preview(t, "2027-02-07T10:00:00+08:00", voice)
		if p.Decision != worker.PreviewDefer || p.Rule != "cn.voice.holidays" || p.Reason != "holiday" || p.Source != s.Profile.Source("cn.voice.holidays") {
			t.Fatalf("preview %+v, want defer by cn.voice.holidays with its source", p)
		}
		if lo := time.Date(2027, 2, 14, 0, 0, 0, 0, time.UTC); p.Until == nil || p.Until.Before(lo) || !p.Until.Before(lo.Add(s.Profile.Jitter)) {
			t.Errorf("until %v, want 2027-02-14 08:00 Shanghai plus jitter", p.Until)
		}
		if p.ProfileVersion != s.Profile.Version || len(p.Zones) != 1 || p.Zones[0] != "Asia/Shanghai" || len(p.LocalTimes) == 0 {
			t.Errorf("preview %+v lacks the version or zones", p)
		}
		if after := dbsize(); after != before {
			t.Errorf("preview changed Redis: %d keys, then %d", before, after)
		}
	})
	t.Run("a send, then the cap the real contacts fill", func(t *testing.T) {
		sms := intentWith("I-Q", func(m map[string]any) { m["channels"] = []string{"sms"}; m["fallback"] = false })
		p := preview(t, "2026-11-23T11:00:00+08:00", sms)
		if p.Decision != worker.PreviewSend || p.Channel != "sms" || p.Sources["cn.sms.daily"] == "" || p.Sources[policy.RuleOptOut] == "" {
			t.Fatalf("preview %+v, want send by sms naming every rule's source", p)
		}
		for i, at := range []time.Time{now.Add(-2 * time.Hour), now.Add(-90 * time.Minute)} {
			for _, ch := range []string{"sms", policy.ChannelAny} {
				if err := st.RecordEvent(ctx, "D-1001", store.Stream{Event: policy.EventAttempt, Channel: ch, Scope: policy.ScopeDebtor}, "I-sent-"+string(rune('a'+i)), at, 48*time.Hour); err != nil {
					t.Fatal(err)
				}
			}
		}
		p = preview(t, "2026-11-23T11:00:00+08:00", sms)
		if p.Decision != worker.PreviewDefer || p.Rule != "cn.sms.daily" || p.Reason != "frequency_cap" {
			t.Fatalf("preview %+v, want defer by cn.sms.daily", p)
		}
		var daily bool
		for _, c := range p.Checks {
			if c.Rule == "cn.sms.daily" && c.Count != nil && *c.Count == 2 && c.Limit == 2 {
				daily = true
			}
		}
		if !daily {
			t.Errorf("checks %+v: cn.sms.daily not at 2 of 2", p.Checks)
		}
		if rec := serve(t, s, "GET", "/v1/intents/I-Q", ""); rec.Code != 404 {
			t.Errorf("GET of a previewed id: %d, want 404 (nothing recorded)", rec.Code)
		}
	})
	t.Run("an opt-out", func(t *testing.T) {
		if err := st.SetOptOut(ctx, "D-1001", "voice", []byte(`{"source":"bank_request"}`)); err != nil {
			t.Fatal(err)
		}
		p := preview(t, "2026-11-24T10:00:00+08:00", voice)
		if p.Decision != worker.PreviewSuppress || p.Reason != "opted_out" || p.Rule != policy.RuleOptOut || p.Source == "" {
			t.Errorf("preview %+v, want suppress by opt-out with its source", p)
		}
	})
	t.Run("an intent the worker would reject", func(t *testing.T) {
		p := preview(t, "", intentWith("I-R", func(m map[string]any) {
			m["params"] = map[string]any{"name": "张三", "amount": "0.00 pay at http://x", "due_date": "2026-11-30"}
		}))
		if p.Decision != worker.PreviewReject || len(p.Errors) != 1 || p.Errors[0].Field != "params.amount" {
			t.Errorf("preview %+v, want reject naming params.amount", p)
		}
	})
}
