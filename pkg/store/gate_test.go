package store_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// A preview decides what Gate would, on the same record, opt-outs and
// streams, and leaves Redis exactly as it was; on one Redis and on the
// 3-master Cluster.
func TestGatePreviewWritesNothing(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
		st := newStore(t, rdb, prefix, now)
		daily := store.Stream{Event: "attempt", Channel: "sms", Scope: "debtor"}
		req := func(id string) store.GateRequest {
			return store.GateRequest{ID: id, DebtorID: "D-P", Owner: "w", Template: "t", Now: now, LeaseUntil: now.Add(time.Minute),
				Retention: 48 * time.Hour, Entry: status.Entry{At: now, Profile: "p", Inputs: &status.Inputs{Zones: []string{"Asia/Shanghai"}}},
				Candidates: []store.Candidate{{Channel: "sms", To: "+86***", WindowOK: true,
					Checks:  []store.Check{{Stream: daily, Since: now.Add(-8 * time.Hour), Limit: 2, Until: now.Add(13 * time.Hour), Rule: "sms.daily", Kind: "cap"}},
					CountIn: []store.Stream{daily}}}}
		}
		keys := func() map[string]string {
			out := map[string]string{}
			var mu sync.Mutex // ForEachMaster scans the masters at once
			scan := func(ctx context.Context, c *redis.Client) error {
				iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
				for iter.Next(ctx) {
					v := c.Dump(ctx, iter.Val()).Val()
					mu.Lock()
					out[iter.Val()] = v
					mu.Unlock()
				}
				return iter.Err()
			}
			switch c := rdb.(type) {
			case *redis.ClusterClient:
				_ = c.ForEachMaster(ctx, scan)
			case *redis.Client:
				_ = scan(ctx, c)
			}
			return out
		}
		same := func(a, b map[string]string) bool {
			if len(a) != len(b) {
				return false
			}
			for k, v := range a {
				if b[k] != v {
					return false
				}
			}
			return true
		}

		before := keys()
		p, err := st.GatePreview(ctx, req("I-1"))
		if err != nil || p.Outcome != store.Claimed || p.Channel != "sms" || p.Entry.Inputs.Counts["sms.daily"] != 0 {
			t.Fatalf("preview of a free contact: %+v %v", p, err)
		}
		if after := keys(); !same(before, after) {
			t.Fatalf("preview changed Redis: %d keys before, %d after", len(before), len(after))
		}
		// Two real sends fill the cap; the preview then sees it.
		for _, id := range []string{"I-1", "I-2"} {
			g, err := st.Gate(ctx, req(id))
			if err != nil || g.Outcome != store.Claimed {
				t.Fatalf("gate %s: %+v %v", id, g, err)
			}
		}
		before = keys()
		p, err = st.GatePreview(ctx, req("I-3"))
		if err != nil || p.Outcome != store.Deferred || p.Rule != "sms.daily" || p.Entry.Inputs.Counts["sms.daily"] != 2 || !p.Until.Equal(now.Add(13*time.Hour)) {
			t.Fatalf("preview at the cap: %+v %v", p, err)
		}
		// A record being sent: busy, and its lease untouched.
		if p, err = st.GatePreview(ctx, req("I-1")); err != nil || p.Outcome != store.Busy {
			t.Fatalf("preview of an intent being sent: %+v %v", p, err)
		}
		// Opted out: suppressed, still nothing written.
		if err := rdb.HSet(ctx, st.Keys().OptOuts("D-P"), "sms", `{"source":"test"}`).Err(); err != nil {
			t.Fatal(err)
		}
		before = keys()
		if p, err = st.GatePreview(ctx, req("I-4")); err != nil || p.Outcome != store.Suppressed || p.Rule != "opted_out" {
			t.Fatalf("preview opted out: %+v %v", p, err)
		}
		after := keys()
		if !same(before, after) {
			var names []string
			for k := range after {
				names = append(names, k)
			}
			sort.Strings(names)
			t.Fatalf("preview changed Redis: %v", names)
		}
		if n := rdb.ZCard(ctx, st.Keys().Stream("D-P", daily)).Val(); n != 2 {
			t.Errorf("%d contacts counted, want the 2 real sends", n)
		}
	})
}

// A candidate held by the window names its rule and the reason its kind
// maps to; not_before has a reason of its own.
func TestGateDeferralReasons(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	st := newStore(t, rdb, prefix, now)
	for i, c := range []struct{ rule, kind, reason string }{
		{"not-before", "not_before", "not_before"},
		{"cn.quiet-hours", "window", "outside_hours"},
		{"cn.voice.holidays", "holiday", "holiday"},
		{"provider-unavailable:twilio", "breaker", "provider_down"},
	} {
		next := now.Add(time.Duration(i+1) * time.Hour)
		g, err := st.Gate(ctx, store.GateRequest{ID: "I-" + c.kind, DebtorID: "D-R", Owner: "w", Template: "t", Now: now, LeaseUntil: now.Add(time.Minute),
			Retention: time.Hour, Entry: status.Entry{At: now, Inputs: &status.Inputs{Zones: []string{"UTC"}}},
			Candidates: []store.Candidate{{Channel: "sms", To: "x", WindowNext: next, WindowRule: c.rule, WindowKind: c.kind}}})
		if err != nil {
			t.Fatal(err)
		}
		if g.Outcome != store.Deferred || g.Rule != c.rule || g.Entry.Reason != c.reason || !g.Until.Equal(next) {
			t.Errorf("%s: %+v, want deferred/%s by %s until %v", c.kind, g, c.reason, c.rule, next)
		}
	}
}

// An id recorded canceled — before its intent arrived, or rebuilt from its
// status event after Redis lost the record — never passes the gate.
func TestCanceledNeverPassesTheGate(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	st := newStore(t, rdb, prefix, now)
	e := status.Entry{At: now, State: status.Canceled, Reason: "paid", Detail: "canceled by api-key:intake"}
	res, err := st.Claim(ctx, store.ClaimRequest{ID: "I-C", DebtorID: "D-C", Owner: "api/cancel", Now: now, Target: status.Canceled, Reason: "paid", Entry: e})
	if err != nil || res.Outcome != store.Claimed {
		t.Fatalf("cancel of an unknown id: %+v %v", res, err)
	}
	gate := func() store.GateResult {
		g, err := st.Gate(ctx, store.GateRequest{ID: "I-C", DebtorID: "D-C", Owner: "w", Template: "t", Now: now, LeaseUntil: now.Add(time.Minute),
			Retention: time.Hour, Entry: status.Entry{At: now, Inputs: &status.Inputs{Zones: []string{"UTC"}}},
			Candidates: []store.Candidate{{Channel: "sms", To: "x", WindowOK: true}}})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := gate(); g.Outcome != store.Duplicate || g.State != status.Canceled {
		t.Fatalf("gate of a canceled id: %+v", g)
	}
	// Redis loses the record; the rebuild applies the published event.
	rec, err := st.GetFor(ctx, "D-C", "I-C")
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, st.Keys().Record("D-C", "I-C")).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyEvents(ctx, []status.Event{status.TransitionEvent("I-C", "D-C", rec.Timeline[0])}, now); err != nil {
		t.Fatal(err)
	}
	if g := gate(); g.Outcome != store.Duplicate || g.State != status.Canceled {
		t.Fatalf("gate after the rebuild: %+v", g)
	}
	// A second cancellation finds it decided.
	if res, err := st.Claim(ctx, store.ClaimRequest{ID: "I-C", DebtorID: "D-C", Owner: "api/cancel", Now: now, Target: status.Canceled, Reason: "paid", Entry: e}); err != nil || res.Outcome != store.Duplicate || res.State != status.Canceled {
		t.Errorf("second cancel: %+v %v", res, err)
	}
}
