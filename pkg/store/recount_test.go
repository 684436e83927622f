package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// After a flush, contacts put back with ApplyContacts hold the gate's caps
// and gaps as the live counts did — per debtor, per debt and per number
// (by the number's keyed digest only) — applying twice changes nothing, a
// contact older than the retention is skipped, and ApplyNumbers brings the
// number index back; on one Redis and on the 3-master Cluster.
func TestApplyContactsRestoresCaps(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC) // across a year boundary
		st := newStore(t, rdb, prefix, now)
		phone := "+8613800000001"
		digest := st.Keys().AddressDigest(phone)
		if digest == "" || digest == phone || len(digest) != 24 {
			t.Fatalf("digest %q", digest)
		}
		anyDebtor := store.Stream{Event: "attempt", Channel: "any", Scope: "debtor"}
		perDebt := store.Stream{Event: "attempt", Channel: "voice", Scope: "debt", ScopeID: "L-1"}
		perNumber := func(s store.Stream) store.Stream {
			return store.Stream{Event: "attempt", Channel: "voice", Scope: "number", ScopeID: s.ScopeID, Digest: s.Digest}
		}
		req := func(id string, at time.Time) store.GateRequest {
			return store.GateRequest{ID: id, DebtorID: "D-R", Owner: "w", Template: "t", Now: at, LeaseUntil: at.Add(time.Minute),
				Retention: 48 * time.Hour, DebtID: "L-1",
				Entry: status.Entry{At: at, Profile: "p", Inputs: &status.Inputs{Zones: []string{"Asia/Shanghai"}}},
				Candidates: []store.Candidate{{Channel: "voice", To: "+86***", Address: phone, WindowOK: true,
					Checks: []store.Check{
						{Stream: anyDebtor, Since: at.Add(-time.Hour), Limit: 1, Sliding: time.Hour, Rule: "gap", Kind: "gap"},
						{Stream: perDebt, Since: at.Add(-24 * time.Hour), Limit: 2, Until: at.Add(24 * time.Hour), Rule: "debt.daily", Kind: "cap"},
						{Stream: perNumber(store.Stream{ScopeID: phone}), Since: at.Add(-24 * time.Hour), Limit: 3, Until: at.Add(24 * time.Hour), Rule: "number.daily", Kind: "cap"},
					},
					CountIn: []store.Stream{anyDebtor, perDebt, perNumber(store.Stream{ScopeID: phone})}}}}
		}
		// The claim's entry carries what the rebuild needs: the debt and
		// the number's digest, never the number.
		g, err := st.Gate(ctx, req("I-0", now.Add(-2*time.Hour)))
		if err != nil || g.Outcome != store.Claimed || g.Entry.DebtID != "L-1" || g.Entry.ToDigest != digest {
			t.Fatalf("claim: %+v %v", g, err)
		}
		if rec, _ := st.GetFor(ctx, "D-R", "I-0"); rec.Last().ToDigest != "" || rec.Last().DebtID != "" {
			t.Fatalf("the record keeps the rebuild's fields: %+v", rec.Last())
		}

		flush(t, rdb, prefix)
		if err := st.MarkRebuilt(ctx, now); err != nil {
			t.Fatal(err)
		}
		// Rebuilt from events: the number by its digest alone.
		byDigest := perNumber(store.Stream{Digest: digest})
		cs := []store.Contact{
			{DebtorID: "D-R", Member: "I-0", At: now.Add(-2 * time.Hour), Streams: []store.Stream{anyDebtor, perDebt, byDigest}},
			{DebtorID: "D-R", Member: "I-1", At: now.Add(-time.Minute), Streams: []store.Stream{anyDebtor, perDebt, byDigest}},
			{DebtorID: "D-R", Member: "I-old", At: now.Add(-72 * time.Hour), Streams: []store.Stream{anyDebtor, perDebt, byDigest}},
		}
		for range 2 {
			n, err := st.ApplyContacts(ctx, cs, now, 48*time.Hour)
			if err != nil || n != 2 {
				t.Fatalf("apply contacts: %d %v, want 2 (the old one skipped)", n, err)
			}
		}
		// A minute after I-1 every rule sees the rebuilt counts: the gap
		// (1 in the hour), the debt's cap (2 of 2) and the number's (2).
		g, err = st.Gate(ctx, req("I-2", now))
		c := g.Entry.Inputs.Counts
		if err != nil || g.Outcome != store.Deferred || g.Rule != "debt.daily" || c["gap"] != 1 || c["debt.daily"] != 2 || c["number.daily"] != 2 {
			t.Fatalf("after the rebuild, a minute after a contact: %+v %v %v, want deferred with counts gap 1, debt 2, number 2", g, c, err)
		}
		for _, s := range []store.Stream{anyDebtor, perDebt, byDigest} {
			if n := rdb.ZCard(ctx, st.Keys().Stream("D-R", s)).Val(); n != 2 {
				t.Errorf("%s: %d members, want 2", s.Event+":"+s.Channel+":"+s.Scope, n)
			}
		}

		if err := st.ApplyNumbers(ctx, []store.NumberDebtor{{Digest: digest, DebtorID: "D-R"}, {Digest: digest, DebtorID: "D-S"}}); err != nil {
			t.Fatal(err)
		}
		if ds, err := st.DebtorsAt(ctx, phone); err != nil || len(ds) != 2 {
			t.Fatalf("number index after the rebuild: %v %v", ds, err)
		}
	})
}

// flush deletes every key of this test's prefix, on every master: the
// state lost as a FLUSHALL would lose it, without touching the keys of tests
// running at the same time against the same server.
func flush(t *testing.T, rdb redis.UniversalClient, prefix string) {
	t.Helper()
	ctx := context.Background()
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, del)
	case *redis.Client:
		err = del(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// An outcome whose record vanished (Redis lost its data while the provider
// was called) counts its contact again in the claim's streams, at the
// outcome's time; a failed send that releases its streams does not; on one
// Redis and on the 3-master Cluster.
func TestFinishCountsAgainWhenTheClaimVanished(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
		st := newStore(t, rdb, prefix, now)
		gap := store.Stream{Event: "attempt", Channel: "any", Scope: "debtor"}
		flush(t, rdb, prefix)
		seqs, err := st.FinishBatch(ctx, []store.FinishRequest{
			{ID: "I-1", DebtorID: "D-V", Owner: "w", Now: now, State: status.Sent, Channel: "sms",
				Entry: status.Entry{At: now}, CountIn: []store.Stream{gap}, Retention: 48 * time.Hour},
			{ID: "I-2", DebtorID: "D-W", Owner: "w", Now: now, State: status.Failed, Channel: "sms",
				Entry: status.Entry{At: now}, CountIn: []store.Stream{gap}, Release: []store.Stream{gap}, Retention: 48 * time.Hour},
		})
		if err != nil || seqs[0] != -1 || seqs[1] != -1 {
			t.Fatalf("finish on a flushed Redis: %v %v, want -1 -1", seqs, err)
		}
		if ev, err := st.Recent(ctx, "D-V", gap, now.Add(-time.Hour), 10); err != nil || len(ev) != 1 || ev[0].IntentID != "I-1" || !ev[0].At.Equal(now) {
			t.Errorf("sent: %+v %v, want I-1 counted at the outcome's time", ev, err)
		}
		if ev, _ := st.Recent(ctx, "D-W", gap, now.Add(-time.Hour), 10); len(ev) != 0 {
			t.Errorf("released: %+v, want nothing counted", ev)
		}
	})
}
