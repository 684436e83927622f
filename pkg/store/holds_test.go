package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// Holds live in the debtor's opt-out hash as "hold:<id>" fields, with the
// "holds" list optout.lua keeps for the gate. A hold without until cancels
// the debtor's (or the debt's) intents at the gate; one with until defers
// them to it (rule hold); lifting it lets them through; opt-out readers do
// not see holds. On Redis and on the 3-master Cluster.
func TestGateHolds(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
		st := newStore(t, rdb, prefix, now)
		hold := func(id, debt string, until time.Time) {
			v := map[string]any{"debtor_id": "D-H", "channel": "hold:" + id, "reason": "paid", "debt_id": debt}
			if !until.IsZero() {
				v["until_ms"] = until.UnixMilli()
			}
			b, _ := json.Marshal(v)
			if err := st.SetOptOut(ctx, "D-H", "hold:"+id, b); err != nil {
				t.Fatal(err)
			}
		}
		seq := 0
		gate := func(debt string) store.GateResult {
			seq++
			g, err := st.Gate(ctx, store.GateRequest{ID: "I-" + time.Duration(seq).String(), DebtorID: "D-H", DebtID: debt, Owner: "w", Template: "t", Now: now,
				LeaseUntil: now.Add(time.Minute), Retention: time.Hour, Entry: status.Entry{At: now, Inputs: &status.Inputs{Zones: []string{"UTC"}}},
				Candidates: []store.Candidate{{Channel: "sms", To: "x", WindowOK: true}}})
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		// A pause of debt L-1 until tomorrow.
		until := now.Add(24 * time.Hour)
		hold("H-pause", "L-1", until)
		if g := gate("L-1"); g.Outcome != store.Deferred || g.Rule != "hold" || g.Entry.Reason != "hold" || !g.Until.Equal(until) {
			t.Errorf("paused debt: %+v, want deferred by hold until %v", g, until)
		}
		if g := gate("L-2"); g.Outcome != store.Claimed {
			t.Errorf("another debt: %s, want claimed", g.Outcome)
		}
		// A cancel of the whole debtor.
		hold("H-stop", "", time.Time{})
		g := gate("L-2")
		if g.Outcome != store.Canceled || g.State != status.Canceled || g.Rule != "paid" || g.Entry.Rule != "hold" {
			t.Errorf("canceled debtor: %+v, want canceled (paid) by hold", g)
		}
		if h, err := st.OptOutsOf(ctx, "D-H"); err != nil || len(h) != 0 {
			t.Errorf("opt-out readers see %v (%v), want no holds", h, err)
		}
		if h, err := st.HoldsOf(ctx, "D-H"); err != nil || len(h) != 2 {
			t.Errorf("HoldsOf = %d holds (%v), want 2", len(h), err)
		}
		// Lifted: the pause stays, the cancel goes.
		if err := st.RemoveOptOut(ctx, "D-H", "hold:H-stop"); err != nil {
			t.Fatal(err)
		}
		if g := gate(""); g.Outcome != store.Claimed {
			t.Errorf("after the cancel is lifted: %s, want claimed", g.Outcome)
		}
		if err := st.RemoveOptOut(ctx, "D-H", "hold:H-pause"); err != nil {
			t.Fatal(err)
		}
		if n := rdb.HExists(ctx, st.Keys().OptOuts("D-H"), "holds").Val(); n {
			t.Error("the holds list outlives its last hold")
		}
	})
}

// PendingOf lists a debtor's accepted and deferred intents with their debt.
func TestPendingOf(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	st := newStore(t, rdb, prefix, now)
	req := func(id string, ok bool) store.GateRequest {
		return store.GateRequest{ID: id, DebtorID: "D-P", DebtID: "L-" + id, Owner: "w", Template: "t", Now: now, LeaseUntil: now.Add(time.Minute),
			Retention: time.Hour, Entry: status.Entry{At: now, Inputs: &status.Inputs{Zones: []string{"UTC"}}},
			Candidates: []store.Candidate{{Channel: "sms", To: "x", WindowOK: ok, WindowNext: now.Add(time.Hour), WindowRule: "w", WindowKind: "window"}}}
	}
	for _, r := range []store.GateRequest{req("d1", false), req("d2", false), req("s1", true)} {
		if _, err := st.Gate(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.Accept(ctx, "a1", "D-P", "t", status.Entry{At: now, State: status.Accepted}); err != nil {
		t.Fatal(err)
	}
	p, err := st.PendingOf(ctx, "D-P")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, x := range p {
		got[x.ID] = string(x.State) + "/" + x.DebtID
	}
	if len(got) != 3 || got["d1"] != "deferred/L-d1" || got["d2"] != "deferred/L-d2" || got["a1"] != "accepted/" {
		t.Errorf("pending %v, want d1, d2 deferred with their debts and a1 accepted", got)
	}
}
