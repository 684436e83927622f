package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// An intent id binds to the first debtor it is given for: accepting,
// claiming or gating it for another debtor is a conflict that writes
// nothing, and the id's record stays the first debtor's. On one Redis and
// on the 3-master Cluster, where the id's index and the two debtors' records
// are in different slots.
func TestIDBindsToOneDebtor(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
		st := newStore(t, rdb, prefix, now)
		if c, ok := rdb.(*redis.ClusterClient); ok {
			s1 := c.ClusterKeySlot(ctx, st.Keys().Record("D-1", "I-1")).Val()
			s2 := c.ClusterKeySlot(ctx, st.Keys().Record("D-2", "I-1")).Val()
			s3 := c.ClusterKeySlot(ctx, st.Keys().Index("I-1")).Val()
			if s1 == s2 || s1 == s3 {
				t.Fatalf("slots %d %d %d: the test needs the records and the index in different slots", s1, s2, s3)
			}
		}
		gate := func(id, debtor string) store.GateRequest {
			return store.GateRequest{ID: id, DebtorID: debtor, Owner: "w", Template: "t", Now: now, LeaseUntil: now.Add(time.Minute),
				Retention: time.Hour, Entry: status.Entry{At: now, Inputs: &status.Inputs{Zones: []string{"UTC"}}},
				Candidates: []store.Candidate{{Channel: "sms", To: "x", WindowOK: true}}}
		}
		if g, err := st.Gate(ctx, gate("I-1", "D-1")); err != nil || g.Outcome != store.Claimed {
			t.Fatalf("first gate: %+v %v", g, err)
		}
		// The same id for D-2, by every path.
		if _, _, err := st.Accept(ctx, "I-1", "D-2", "t", status.Entry{At: now, State: status.Accepted}); !errors.Is(err, store.ErrIDConflict) {
			t.Errorf("accept for another debtor: %v, want ErrIDConflict", err)
		}
		if res, err := st.Claim(ctx, store.ClaimRequest{ID: "I-1", DebtorID: "D-2", Owner: "w", Now: now, Target: status.Rejected, Reason: "invalid",
			Entry: status.Entry{At: now, State: status.Rejected}}); err != nil || res.Outcome != store.Conflict {
			t.Errorf("claim for another debtor: %+v %v", res, err)
		}
		res, err := st.GateBatch(ctx, []store.GateRequest{gate("I-2", "D-2"), gate("I-1", "D-2"), gate("I-3", "D-2")})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Outcome != store.Claimed || res[1].Outcome != store.Conflict || res[2].Outcome != store.Deferred && res[2].Outcome != store.Claimed {
			t.Errorf("batch outcomes %s %s %s, want claimed, conflict, decided", res[0].Outcome, res[1].Outcome, res[2].Outcome)
		}
		if p, err := st.GatePreview(ctx, gate("I-1", "D-2")); err != nil || p.Outcome != store.Conflict {
			t.Errorf("preview for another debtor: %+v %v", p, err)
		}
		if _, err := st.GetFor(ctx, "D-2", "I-1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a record of I-1 exists under D-2: %v", err)
		}
		rec, err := st.Get(ctx, "I-1")
		if err != nil || rec.DebtorID != "D-1" || rec.State != status.Sending {
			t.Errorf("GET I-1 = %s/%s %v, want D-1's record", rec.DebtorID, rec.State, err)
		}
		// The same debtor again is no conflict (a redelivery).
		if err := st.Bind(ctx, "I-1", "D-1"); err != nil {
			t.Errorf("bind for its own debtor: %v", err)
		}
	})
}
