package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
)

// not_before is honoured: an intent is not contacted before it, the
// deferral names the rule not-before and its source; once it has passed
// the usual rules apply.
func TestNotBefore(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC) // 11:00 in Shanghai, allowed
	for _, c := range []struct {
		name       string
		notBefore  time.Time
		state      status.State
		rule       string
		until      time.Time
		jitterFrom time.Time // the until may fall in [jitterFrom, jitterFrom+jitter)
	}{
		{name: "two days ahead, inside the window", notBefore: now.Add(48 * time.Hour), state: status.Deferred, rule: policy.RuleNotBefore, until: now.Add(48 * time.Hour)},
		{name: "an hour ahead", notBefore: now.Add(time.Hour), state: status.Deferred, rule: policy.RuleNotBefore, until: now.Add(time.Hour)},
		{name: "ahead but inside quiet hours then: the window decides", notBefore: time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC), // 23:00 Shanghai
			state: status.Deferred, rule: "cn.quiet-hours", jitterFrom: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)},
		{name: "already passed", notBefore: now.Add(-time.Hour), state: status.Sent},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, true)
			f.w.Profile = loadProfile(t, "cn-bank")
			f.now = now
			in := sampleIntent("I-nb")
			in.NotBefore, in.ExpiresAt = &c.notBefore, nil
			recs, err := f.w.Decide(ctx, msgOf(t, in))
			if err != nil {
				t.Fatal(err)
			}
			rec := f.record(t, in.ID)
			e := rec.Timeline[0]
			if rec.State != c.state {
				t.Fatalf("state %s (entry %+v), want %s", rec.State, e, c.state)
			}
			if c.state != status.Deferred {
				return
			}
			if e.Rule != c.rule || e.Until == nil {
				t.Fatalf("entry %+v, want deferred by %s", e, c.rule)
			}
			if c.rule == policy.RuleNotBefore {
				if rec.Reason != "not_before" || !e.Until.Equal(c.until) {
					t.Errorf("reason %s until %v, want not_before until %v", rec.Reason, e.Until, c.until)
				}
				if evs := events(t, recs); len(evs) == 0 || evs[0].Source != f.w.Profile.Source(policy.RuleNotBefore) || evs[0].Source == "" {
					t.Errorf("the deferral does not cite not-before's source: %+v", evs)
				}
			} else if e.Until.Before(c.jitterFrom) || !e.Until.Before(c.jitterFrom.Add(f.w.Profile.Jitter)) {
				t.Errorf("until %v, want within the jitter after %v", e.Until, c.jitterFrom)
			}
		})
	}
}

// Deferred overnight with expires_at 08:05 local: the window opens at 08:00,
// so the intent is released before 08:05, never suppressed as expired
// because the jitter (08:00–08:30) would pass it.
func TestExpiryNotDecidedByJitter(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true)
	f.w.Profile = loadProfile(t, "cn-bank")
	f.now = time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC) // 23:00 in Shanghai
	exp := time.Date(2026, 11, 24, 0, 5, 0, 0, time.UTC)   // 08:05 in Shanghai
	for i := 0; i < 12; i++ {
		in := sampleIntent(fmt.Sprintf("I-exp-%02d", i))
		in.DebtorID = fmt.Sprintf("D-exp-%02d", i)
		in.ExpiresAt = &exp
		if _, err := f.w.Decide(ctx, msgOf(t, in)); err != nil {
			t.Fatal(err)
		}
		rec, err := f.st.GetFor(ctx, in.DebtorID, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		e := rec.Timeline[0]
		if rec.State != status.Deferred || e.Until == nil {
			t.Fatalf("%s: %s/%s, want deferred (entry %+v)", in.ID, rec.State, rec.Reason, e)
		}
		if open := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC); e.Until.Before(open) || !e.Until.Before(exp) {
			t.Errorf("%s: released at %v, want in [08:00, 08:05) Shanghai", in.ID, e.Until)
		}
	}
	// A window that opens only after expires_at still expires.
	in := sampleIntent("I-exp-late")
	in.DebtorID = "D-exp-late"
	early := time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC) // 07:00 in Shanghai
	in.ExpiresAt = &early
	if _, err := f.w.Decide(ctx, msgOf(t, in)); err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.st.GetFor(ctx, in.DebtorID, in.ID); rec.State != status.Suppressed || rec.Reason != status.ReasonExpired {
		t.Errorf("expires 07:00, window opens 08:00: %s/%s, want suppressed/expired", rec.State, rec.Reason)
	}
}

// The same intent id for another debtor over Kafka: dead-lettered with
// id_conflict, never sent, and the record stays the first debtor's; an
// invalid record reusing the id does not overwrite it either. By Decide and by a
// lane.
func TestIDConflictOverKafka(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true)
	f.w.Profile = loadProfile(t, "cn-bank")
	f.now = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	first := sampleIntent("I-shared")
	if _, err := f.w.Decide(ctx, msgOf(t, first)); err != nil {
		t.Fatal(err)
	}
	dlqCode := func(recs []kafka.Message) string {
		for _, r := range recs {
			if r.Topic == kafkaio.DefaultTopics.DLQ {
				return kafkaio.Header(r, kafkaio.HeaderCode)
			}
		}
		return ""
	}
	other := first
	other.DebtorID = "D-OTHER"
	f.now = f.now.Add(2 * time.Hour)
	recs, err := f.w.Decide(ctx, msgOf(t, other))
	if err != nil {
		t.Fatal(err)
	}
	if c := dlqCode(recs); c != CodeIDConflict {
		t.Errorf("DLQ code %q, want %s", c, CodeIDConflict)
	}
	if len(events(t, recs)) != 0 {
		t.Error("a conflicting intent published status events")
	}
	invalid := other
	invalid.Template = "no_such_template"
	recs, err = f.w.Decide(ctx, msgOf(t, invalid))
	if err != nil {
		t.Fatal(err)
	}
	if dlqCode(recs) == "" || len(events(t, recs)) != 0 {
		t.Errorf("an invalid intent reusing the id: %d records, events %v", len(recs), events(t, recs))
	}
	// And in a batch, between two valid intents of D-OTHER.
	a, b := sampleIntent("I-a"), sampleIntent("I-b")
	a.DebtorID, b.DebtorID = "D-OTHER", "D-OTHER"
	b.Channels, b.To.Email = []intent.Channel{intent.Email}, "o@example.cn"
	r, pub := &feedReader{msgs: onPartition(0, keyed(t, a), keyed(t, other), keyed(t, b))}, &collector{}
	runLanes(t, f.w, r, pub, 3)
	if dlqCode(pub.recs) != CodeIDConflict {
		t.Errorf("lane: DLQ code %q, want %s", dlqCode(pub.recs), CodeIDConflict)
	}
	if n := f.sb.Counts()["I-shared"]; n != 1 {
		t.Errorf("I-shared handed to the provider %d times, want 1", n)
	}
	rec, err := f.st.Get(ctx, "I-shared")
	if err != nil || rec.DebtorID != "D-1001" || rec.State != status.Sent {
		t.Errorf("GET I-shared = %s/%s %v, want D-1001's sent record", rec.DebtorID, rec.State, err)
	}
}
