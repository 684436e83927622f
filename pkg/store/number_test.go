package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// shared is one family phone number every test debtor below gives.
const shared = "+8613800138000"

// numberVoice is a voice candidate at shared under a per-number daily cap
// of limit (cn-bank's cn.voice.attempts-per-number-daily), counted also in
// the debtor's own stream.
func numberVoice(now time.Time, limit int) store.Candidate {
	num := store.Stream{Event: "attempt", Channel: "voice", Scope: "number", ScopeID: shared}
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	return store.Candidate{Channel: "voice", To: "+86***8000", Address: shared, WindowOK: true,
		Checks: []store.Check{{Stream: num, Since: day, Limit: limit, Until: day.AddDate(0, 0, 1),
			Rule: "cn.voice.attempts-per-number-daily", Kind: "cap"}},
		CountIn: []store.Stream{{Event: "attempt", Channel: "any", Scope: "debtor"}, num}}
}

func numberReq(id, debtor string, now time.Time, cs ...store.Candidate) store.GateRequest {
	return store.GateRequest{ID: id, DebtorID: debtor, Owner: "w-" + id, Template: "t", Now: now, LeaseUntil: now.Add(time.Minute),
		Retention: 48 * time.Hour, Entry: status.Entry{At: now, Profile: "p", Inputs: &status.Inputs{Zones: []string{"Asia/Shanghai"}}},
		Candidates: cs}
}

// members lists the ids in a number stream.
func members(t *testing.T, rdb redis.UniversalClient, st *store.Store, s store.Stream) []string {
	t.Helper()
	m, err := rdb.ZRange(context.Background(), st.Keys().Stream("", s), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Seven debtors share one number; each gets one call at local noon under
// cn-bank's ≤ 6 attempts per number per day: six are placed and the
// seventh is deferred by the per-number rule to the number's next local
// midnight — called one after the other and all in one batch, on one Redis
// and on the Cluster, where the seven debtors and the number fall in
// different slots.
func TestNumberCapCountsEveryDebtor(t *testing.T) {
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	noon := time.Date(2026, 12, 2, 12, 0, 0, 0, shanghai)
	midnight := time.Date(2026, 12, 3, 0, 0, 0, 0, shanghai)
	num := store.Stream{Event: "attempt", Channel: "voice", Scope: "number", ScopeID: shared}
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
				ctx := context.Background()
				st := newStore(t, rdb, prefix, noon)
				var rs []store.GateRequest
				for i := 1; i <= 7; i++ {
					rs = append(rs, numberReq(fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i), noon.Add(time.Duration(i)*time.Second), numberVoice(noon, 6)))
				}
				if c, ok := rdb.(*redis.ClusterClient); ok {
					// The debtors and the number are in different slots.
					slots := map[int64]bool{c.ClusterKeySlot(ctx, st.Keys().NumberPending(st.Digest(shared))).Val(): true}
					for _, r := range rs {
						slots[c.ClusterKeySlot(ctx, st.Keys().OptOuts(r.DebtorID)).Val()] = true
					}
					if len(slots) != 8 {
						t.Fatalf("the 7 debtors and the number span %d slots, want 8", len(slots))
					}
				}
				var res []store.GateResult
				if batch {
					var err error
					if res, err = st.GateBatch(ctx, rs); err != nil {
						t.Fatal(err)
					}
				} else {
					for _, r := range rs {
						g, err := st.Gate(ctx, r)
						if err != nil {
							t.Fatal(err)
						}
						res = append(res, g)
					}
				}
				for i, g := range res[:6] {
					if g.Outcome != store.Claimed || g.Channel != "voice" {
						t.Fatalf("call %d of debtor D-%d: %+v, want claimed", i+1, i+1, g)
					}
					if n := g.Entry.Inputs.Counts["cn.voice.attempts-per-number-daily"]; n != i {
						t.Errorf("call %d: the decision counts %d earlier calls to the number, want %d", i+1, n, i)
					}
				}
				g := res[6]
				if g.Outcome != store.Deferred || g.Rule != "cn.voice.attempts-per-number-daily" || !g.Until.Equal(midnight) {
					t.Fatalf("the seventh debtor's call: %+v, want deferred by the per-number rule to %v", g, midnight)
				}
				if g.Entry.Reason != "frequency_cap" || g.Entry.Inputs.Counts["cn.voice.attempts-per-number-daily"] != 6 {
					t.Fatalf("the seventh's entry: reason %q counts %v", g.Entry.Reason, g.Entry.Inputs.Counts)
				}
				if m := members(t, rdb, st, num); len(m) != 6 {
					t.Fatalf("the number's stream holds %v, want the six placed calls", m)
				}
				if p := rdb.HLen(ctx, st.Keys().NumberPending(st.Digest(shared))).Val(); p != 0 {
					t.Fatalf("%d reservations left pending after the gate settled", p)
				}
			})
		})
	}
}

// A reservation on the number is released when the debtor's own rules
// defer the intent, kept only on the channel claimed, and an opt-out of the
// debtor (not of the number) leaves the number's count as it was.
func TestNumberReservationSettles(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
		st := newStore(t, rdb, prefix, now)
		numVoice := store.Stream{Event: "attempt", Channel: "voice", Scope: "number", ScopeID: shared}
		numSMS := store.Stream{Event: "attempt", Channel: "sms", Scope: "number", ScopeID: shared}
		gap := store.Stream{Event: "attempt", Channel: "any", Scope: "debtor"}

		// D-G was contacted a minute ago: its one-hour gap defers it.
		if _, err := st.ApplyContacts(ctx, []store.Contact{{DebtorID: "D-G", Member: "I-0", At: now.Add(-time.Minute), Streams: []store.Stream{gap}}}, now, 48*time.Hour); err != nil {
			t.Fatal(err)
		}
		v := numberVoice(now, 6)
		v.Checks = append(v.Checks, store.Check{Stream: gap, Since: now.Add(-time.Hour), Limit: 1, Sliding: time.Hour, Rule: "min-gap", Kind: "gap"})
		g, err := st.Gate(ctx, numberReq("I-G", "D-G", now, v))
		if err != nil || g.Outcome != store.Deferred || g.Rule != "min-gap" {
			t.Fatalf("gate: %+v %v, want deferred by the debtor's gap", g, err)
		}
		if m := members(t, rdb, st, numVoice); len(m) != 0 {
			t.Fatalf("a deferred call still counts on the number: %v", m)
		}

		// SMS first, voice as fallback, both counted per number: the SMS
		// is claimed, so only the SMS stream keeps the contact.
		sms := store.Candidate{Channel: "sms", To: "+86***", Address: shared, WindowOK: true,
			CountIn: []store.Stream{gap, numSMS}}
		g, err = st.Gate(ctx, numberReq("I-F", "D-F", now, sms, numberVoice(now, 6)))
		if err != nil || g.Outcome != store.Claimed || g.Channel != "sms" {
			t.Fatalf("gate: %+v %v, want SMS claimed", g, err)
		}
		if m := members(t, rdb, st, numSMS); len(m) != 1 || m[0] != "I-F" {
			t.Fatalf("SMS stream of the number: %v", m)
		}
		if m := members(t, rdb, st, numVoice); len(m) != 0 {
			t.Fatalf("the voice fallback not taken still counts: %v", m)
		}

		// The debtor opted out of voice: suppressed, nothing counted.
		if err := st.SetOptOut(ctx, "D-O", "voice", []byte(`{"source":"bank_request"}`)); err != nil {
			t.Fatal(err)
		}
		g, err = st.Gate(ctx, numberReq("I-O", "D-O", now, numberVoice(now, 6)))
		if err != nil || g.Outcome != store.Suppressed || g.Rule != "opted_out" {
			t.Fatalf("gate: %+v %v, want suppressed/opted_out", g, err)
		}
		if m := members(t, rdb, st, numVoice); len(m) != 0 {
			t.Fatalf("a suppressed call counts on the number: %v", m)
		}

		// A send that failed for certain before a provider took it is
		// released from the number's stream too.
		g, err = st.Gate(ctx, numberReq("I-R", "D-R", now, numberVoice(now, 6)))
		if err != nil || g.Outcome != store.Claimed {
			t.Fatalf("gate: %+v %v", g, err)
		}
		if _, err := st.Finish(ctx, store.FinishRequest{ID: "I-R", DebtorID: "D-R", Owner: "w-I-R", Now: now, State: status.Failed,
			Reason: "no_provider", Channel: "voice", Entry: status.Entry{At: now}, Release: numberVoice(now, 6).CountIn}); err != nil {
			t.Fatal(err)
		}
		if m := members(t, rdb, st, numVoice); len(m) != 0 {
			t.Fatalf("a released call still counts on the number: %v", m)
		}
	})
}

// A worker that crashed between the number's reservation and the debtor's
// gate leaves a pending reservation: while it is pending another debtor at
// the number waits for it to settle (deferred to its hold end, not to
// midnight); once the hold ends it counts as a contact (an over-count,
// never an under-count); the crashed intent's own retry is not held back by
// it and is not counted twice.
func TestNumberCrashedReservation(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		shanghai, _ := time.LoadLocation("Asia/Shanghai")
		now := time.Date(2026, 12, 2, 12, 0, 0, 0, shanghai)
		st := newStore(t, rdb, prefix, now)
		num := store.Stream{Event: "attempt", Channel: "voice", Scope: "number", ScopeID: shared}
		if err := st.ReserveNumberOnly(ctx, numberReq("I-X", "D-X", now, numberVoice(now, 1))); err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Second)
		g, err := st.Gate(ctx, numberReq("I-Y", "D-Y", at, numberVoice(now, 1)))
		if err != nil || g.Outcome != store.Deferred || !g.Until.Equal(now.Add(store.PendingHold+time.Millisecond)) {
			t.Fatalf("while the reservation is pending: %+v %v, want deferred to its hold end", g, err)
		}
		at = now.Add(store.PendingHold + time.Second)
		g, err = st.Gate(ctx, numberReq("I-Y", "D-Y", at, numberVoice(now, 1)))
		if err != nil || g.Outcome != store.Deferred || !g.Until.Equal(time.Date(2026, 12, 3, 0, 0, 0, 0, shanghai)) {
			t.Fatalf("after the hold: %+v %v, want deferred to midnight (the leftover counts)", g, err)
		}
		g, err = st.Gate(ctx, numberReq("I-X", "D-X", at, numberVoice(now, 1)))
		if err != nil || g.Outcome != store.Claimed {
			t.Fatalf("the crashed intent's retry: %+v %v, want claimed", g, err)
		}
		if m := members(t, rdb, st, num); len(m) != 1 || m[0] != "I-X" {
			t.Fatalf("the number's stream: %v, want I-X once", m)
		}
	})
}

// An SMS keyword opt-out of the number suppresses SMS to it for any debtor,
// whose record says the number opted out; a voice fallback is still
// allowed; the debtor's own opt-out hash is untouched.
func TestNumberOptOutStopsSMS(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
		st := newStore(t, rdb, prefix, now)
		if err := rdb.HSet(ctx, st.Keys().NumberOptOuts(st.Digest(shared)), "sms", `{"source":"sms_keyword"}`).Err(); err != nil {
			t.Fatal(err)
		}
		sms := store.Candidate{Channel: "sms", To: "+86***", Address: shared, WindowOK: true,
			CountIn: []store.Stream{{Event: "attempt", Channel: "any", Scope: "debtor"}}}
		for _, d := range []string{"D-1", "D-2"} {
			g, err := st.Gate(ctx, numberReq("I-"+d, d, now, sms))
			if err != nil || g.Outcome != store.Suppressed || g.Rule != "opted_out" || g.Entry.Detail == "opted out of sms" {
				t.Fatalf("SMS to a number that replied STOP, debtor %s: %+v (detail %q) %v", d, g, g.Entry.Detail, err)
			}
		}
		g, err := st.Gate(ctx, numberReq("I-V", "D-3", now, sms, numberVoice(now, 6)))
		if err != nil || g.Outcome != store.Claimed || g.Channel != "voice" {
			t.Fatalf("SMS with a voice fallback: %+v %v, want voice claimed", g, err)
		}
		if h := rdb.HLen(ctx, st.Keys().OptOuts("D-1")).Val(); h != 0 {
			t.Fatalf("the debtor's own opt-outs changed: %d fields", h)
		}
	})
}

// A cluster node that lost its scripts (restarted) answers NOSCRIPT for the
// calls on its slots: the gate loads the scripts and runs those calls
// again, and only those — a reservation made on another node is not made
// a second time, so when the debtors' gaps defer every intent, no number
// keeps a contact.
func TestNumberReservationsAfterScriptLoss(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisCluster(t)})
	t.Cleanup(func() { rdb.Close() })
	prefix := testenv.Prefix(t)
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	st := newStore(t, rdb, prefix, now)
	gap := store.Stream{Event: "attempt", Channel: "any", Scope: "debtor"}
	var rs []store.GateRequest
	var nums []store.Stream
	for i := 0; i < 24; i++ {
		debtor, phone := fmt.Sprintf("D-S%d", i), fmt.Sprintf("+86138001%05d", i)
		if _, err := st.ApplyContacts(ctx, []store.Contact{{DebtorID: debtor, Member: "earlier", At: now.Add(-time.Minute), Streams: []store.Stream{gap}}}, now, 48*time.Hour); err != nil {
			t.Fatal(err)
		}
		num := store.Stream{Event: "attempt", Channel: "voice", Scope: "number", ScopeID: phone}
		c := store.Candidate{Channel: "voice", To: "+86***", Address: phone, WindowOK: true,
			Checks: []store.Check{{Stream: num, Since: now.Add(-4 * time.Hour), Limit: 6, Until: now.Add(20 * time.Hour), Rule: "per-number", Kind: "cap"},
				{Stream: gap, Since: now.Add(-time.Hour), Limit: 1, Sliding: time.Hour, Rule: "min-gap", Kind: "gap"}},
			CountIn: []store.Stream{gap, num}}
		rs, nums = append(rs, numberReq(fmt.Sprintf("I-S%d", i), debtor, now, c)), append(nums, num)
	}
	// Load the scripts everywhere, then lose them on one master.
	if _, err := st.GateBatch(ctx, rs[:1]); err != nil {
		t.Fatal(err)
	}
	flushed := false
	masters, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range masters {
		for _, n := range sh.Nodes {
			if n.Role == "master" && !flushed {
				c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("%s:%d", n.IP, n.Port)})
				flushed = c.ScriptFlush(ctx).Err() == nil
				c.Close()
			}
		}
	}
	if !flushed {
		t.Fatal("could not flush the scripts of a master")
	}
	res, err := st.GateBatch(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range res {
		if g.Outcome != store.Deferred || g.Rule != "min-gap" {
			t.Fatalf("%s: %+v, want deferred by the gap", rs[i].ID, g)
		}
	}
	for i, num := range nums {
		if m := members(t, rdb, st, num); len(m) != 0 {
			t.Errorf("number %d keeps %v after every intent was deferred", i, m)
		}
	}
}

// A number stream both phone channels count in ("any"): the SMS candidate
// reserved it first, the debtor's gate claimed the voice fallback (SMS
// opted out) — the contact stays counted there, once.
func TestNumberStreamOfBothChannelsKept(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
		st := newStore(t, rdb, prefix, now)
		both := store.Stream{Event: "attempt", Channel: "any", Scope: "number", ScopeID: shared}
		cand := func(ch string) store.Candidate {
			return store.Candidate{Channel: ch, To: "+86***", Address: shared, WindowOK: true,
				Checks:  []store.Check{{Stream: both, Since: now.Add(-time.Hour), Limit: 3, Until: now.Add(time.Hour), Rule: "per-number", Kind: "cap"}},
				CountIn: []store.Stream{{Event: "attempt", Channel: "any", Scope: "debtor"}, both}}
		}
		if err := st.SetOptOut(ctx, "D-B", "sms", []byte(`{"source":"bank_request"}`)); err != nil {
			t.Fatal(err)
		}
		g, err := st.Gate(ctx, numberReq("I-B", "D-B", now, cand("sms"), cand("voice")))
		if err != nil || g.Outcome != store.Claimed || g.Channel != "voice" {
			t.Fatalf("gate: %+v %v, want the voice fallback claimed", g, err)
		}
		if m := members(t, rdb, st, both); len(m) != 1 || m[0] != "I-B" {
			t.Fatalf("the number's stream of both channels: %v, want I-B", m)
		}
	})
}
