package worker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// sendLog is one contact the gate let through.
type sendLog struct {
	in intent.Intent
	ch intent.Channel
	at time.Time
}

// TestGateNeverBreaksPolicy: for random intents, clocks and zones, through
// the real gate on a real Redis, a contact never happens at a forbidden
// local time and no cap or gap is ever exceeded — per debtor, and per
// phone number across the debtors who share one; an intent id reused by
// upstream (for the same debtor, or another) is never sent twice, and
// never decided for a second debtor. The checks below count the contacts
// themselves; they do not ask the policy or the gate.
func TestGateNeverBreaksPolicy(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	profiles := map[string]*policy.Profile{"cn-bank": loadProfile(t, "cn-bank"), "us-regf": loadProfile(t, "us-regf")}
	rapid.Check(t, func(rt *rapid.T) {
		name := rapid.SampledFrom([]string{"cn-bank", "us-regf"}).Draw(rt, "profile")
		prof := profiles[name]
		prefix := testenv.Prefix(t)
		defer func() {
			keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
			if len(keys) > 0 {
				rdb.Del(context.Background(), keys...)
			}
		}()
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rapid.IntRange(0, 364*24*60).Draw(rt, "start minute")) * time.Minute)
		clock := start
		sb, _ := sandbox.New(sandbox.Config{Idempotent: true})
		w := replica(t, rdb, prefix, prof, sb, "prop", func() time.Time { return clock })
		st, _ := store.New(rdb, store.Config{Prefix: prefix})

		type debtor struct {
			id, tz, phone string
			zones         []string
		}
		// A burst packs the steps into hours, and up to four debtors share
		// a family phone: the daily caps, per number too, are reached.
		burst := rapid.Bool().Draw(rt, "burst")
		stride, maxSteps, ndebtors := 8*60, 40, rapid.IntRange(1, 3).Draw(rt, "debtors")
		cnPhones, usPhones := []string{"+8613800138000", "+8613900139000"}, []string{"+12125550123", "+12125550188"}
		if burst {
			stride, maxSteps, ndebtors = 45, 80, rapid.IntRange(2, 4).Draw(rt, "debtors at one phone")
			cnPhones, usPhones = cnPhones[:1], usPhones[:1]
		}
		var debtors []debtor
		for i := 0; i < ndebtors; i++ {
			d := debtor{id: fmt.Sprintf("D-%d", i)}
			if name == "cn-bank" {
				d.tz = rapid.SampledFrom([]string{"Asia/Shanghai", "Asia/Urumqi", "Europe/London", "America/New_York"}).Draw(rt, "tz")
				if burst {
					d.tz = "Asia/Shanghai" // the number's own zone: every debtor's window opens
				}
				// A family phone: debtors may share a number.
				d.phone = rapid.SampledFrom(cnPhones).Draw(rt, "phone")
				d.zones = []string{d.tz}
			} else {
				d.tz = rapid.SampledFrom([]string{"America/New_York", "America/Chicago", "America/Los_Angeles"}).Draw(rt, "tz")
				// New York numbers: with another zone the location is ambiguous.
				d.phone = rapid.SampledFrom(usPhones).Draw(rt, "phone")
				d.zones = []string{d.tz, "America/New_York"}
			}
			debtors = append(debtors, d)
		}

		var sends []sendLog
		type waiting struct {
			in    intent.Intent
			until time.Time
		}
		var pending []waiting
		owner := map[string]string{} // intent id → the debtor it was first decided for
		decide := func(in intent.Intent) {
			before, _ := st.GetFor(context.Background(), in.DebtorID, in.ID)
			if _, err := w.Decide(context.Background(), msgOf(t, in)); err != nil {
				rt.Fatalf("decide: %v", err)
			}
			if o, ok := owner[in.ID]; ok && o != in.DebtorID {
				// A reused id with another debtor: a conflict, nothing
				// recorded under the second debtor.
				if _, err := st.GetFor(context.Background(), in.DebtorID, in.ID); !errors.Is(err, store.ErrNotFound) {
					rt.Fatalf("%s, first %s's, was decided for %s too (%v)", in.ID, o, in.DebtorID, err)
				}
				return
			}
			owner[in.ID] = in.DebtorID
			rec, err := st.GetFor(context.Background(), in.DebtorID, in.ID)
			if err != nil {
				rt.Fatal(err)
			}
			switch rec.State {
			case status.Sent:
				if before.State != status.Sent {
					sends = append(sends, sendLog{in: in, ch: intent.Channel(rec.Channel), at: clock})
				}
			case status.Deferred:
				until := rec.Last().Until
				if until == nil || !until.After(clock) {
					rt.Fatalf("deferred without a future time: %+v", rec.Last())
				}
				pending = append(pending, waiting{in: in, until: *until})
			}
		}
		steps := rapid.IntRange(1, maxSteps).Draw(rt, "steps")
		for s := 0; s < steps; s++ {
			clock = clock.Add(time.Duration(rapid.IntRange(0, stride).Draw(rt, "advance minutes")) * time.Minute)
			// The scheduler's part: what is due goes through the gate again.
			var still []waiting
			for _, p := range pending {
				if !clock.Before(p.until) {
					decide(p.in)
				} else {
					still = append(still, p)
				}
			}
			pending = still
			d := debtors[rapid.IntRange(0, len(debtors)-1).Draw(rt, "debtor")]
			id := fmt.Sprintf("I-%d", s)
			if s > 0 && rapid.IntRange(0, 4).Draw(rt, "reuse an id") == 0 {
				// Upstream reuses an id: for the same debtor or another.
				id = fmt.Sprintf("I-%d", rapid.IntRange(0, s-1).Draw(rt, "reused"))
			}
			chans := rapid.SliceOfNDistinct(rapid.SampledFrom(intent.Channels), 1, 3, func(c intent.Channel) intent.Channel { return c }).Draw(rt, "channels")
			if burst {
				// Calls and SMS to the shared phone.
				chans = []intent.Channel{rapid.SampledFrom([]intent.Channel{intent.Voice, intent.SMS}).Draw(rt, "phone channel")}
			}
			in := intent.Intent{
				ID: id, DebtorID: d.id, DebtID: "L-" + d.id, Template: "overdue_notice", Locale: "zh-CN",
				Channels: chans, Fallback: rapid.Bool().Draw(rt, "fallback"),
				To:       intent.Address{Phone: d.phone, Email: "zhang@example.cn", WeChatOpenID: "oX1abcdefgh"},
				Params:   map[string]string{"name": "张三", "amount": "1,234.00", "due_date": "2026-11-20"},
				Timezone: d.tz,
			}
			decide(in)
		}

		zonesOf := map[string][]*time.Location{}
		for _, d := range debtors {
			for _, z := range d.zones {
				loc, _ := time.LoadLocation(z)
				zonesOf[d.id] = append(zonesOf[d.id], loc)
			}
		}
		sentIDs := map[string]bool{}
		for _, s := range sends {
			if sentIDs[s.in.ID] {
				rt.Fatalf("%s sent twice", s.in.ID)
			}
			sentIDs[s.in.ID] = true
		}
		sort.Slice(sends, func(i, j int) bool { return sends[i].at.Before(sends[j].at) })
		for i, s := range sends {
			for _, z := range zonesOf[s.in.DebtorID] {
				lt := s.at.In(z)
				mins := lt.Hour()*60 + lt.Minute()
				last := 22 * 60
				if name == "us-regf" {
					last = 21 * 60
				}
				if mins < 8*60 || mins >= last {
					rt.Fatalf("%s sent on %s at %s local in %s", s.in.ID, s.ch, lt.Format(time.RFC3339), z)
				}
				if name == "cn-bank" && s.ch == intent.Voice && cnHoliday(lt) {
					rt.Fatalf("%s called on holiday %s", s.in.ID, lt.Format("2006-01-02"))
				}
			}
			for _, r := range prof.Rules {
				if (r.Kind != policy.KindCap && r.Kind != policy.KindGap) || !r.Applies(s.ch) || r.Stream.Event != policy.EventAttempt {
					continue
				}
				limit := r.Limit
				if r.Kind == policy.KindGap {
					limit = 1
				}
				for _, z := range zonesOf[s.in.DebtorID] {
					n := 0
					for _, o := range sends[:i+1] {
						if !sameStream(r.Stream, s, o) {
							continue
						}
						if r.CalendarDay {
							if o.at.In(z).Format("2006-01-02") == s.at.In(z).Format("2006-01-02") {
								n++
							}
						} else if o.at.After(s.at.Add(-r.Sliding)) {
							n++
						}
					}
					if n > limit {
						rt.Fatalf("rule %s: %d contacts in its window up to %s (%s), limit %d", r.ID, n, s.in.ID, s.at, limit)
					}
				}
			}
		}
	})
}

// sameStream reports whether contact o counts in s's stream.
func sameStream(st policy.Stream, s, o sendLog) bool {
	if st.Channel != policy.ChannelAny && string(o.ch) != st.Channel {
		return false
	}
	switch st.Scope {
	case policy.ScopeDebt:
		return o.in.DebtID == s.in.DebtID && o.in.DebtorID == s.in.DebtorID
	case policy.ScopeNumber:
		return o.in.To.Phone == s.in.To.Phone // whichever debtor it was for
	}
	return o.in.DebtorID == s.in.DebtorID
}

// cnHoliday: the State Council's 2026 days off, written out here again so
// the check does not trust the calendar file it checks.
func cnHoliday(t time.Time) bool {
	d := t.Format("01-02")
	for _, r := range [][2]string{{"01-01", "01-03"}, {"02-15", "02-23"}, {"04-04", "04-06"}, {"05-01", "05-05"},
		{"06-19", "06-21"}, {"09-25", "09-27"}, {"10-01", "10-07"}} {
		if t.Year() == 2026 && d >= r[0] && d <= r[1] {
			return true
		}
	}
	return false
}
