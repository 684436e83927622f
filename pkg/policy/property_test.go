package policy

import (
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/contactd/dispatcher/pkg/intent"
)

// refDays lists, per profile, the days off and make-up working days as the
// official schedules state them, independently of the calendar files.
// A day of a year outside years is a day off for every holiday rule (the
// fail-safe of a calendar that runs out).
var refDays = map[string]struct {
	off, work map[string]bool
	years     map[int]bool
}{
	"cn-bank": {
		off: dateSet(
			"2026-01-01..2026-01-03", "2026-02-15..2026-02-23", "2026-04-04..2026-04-06", "2026-05-01..2026-05-05",
			"2026-06-19..2026-06-21", "2026-09-25..2026-09-27", "2026-10-01..2026-10-07",
			"2027-01-01..2027-01-03", "2027-02-05..2027-02-13", "2027-04-03..2027-04-05", "2027-05-01..2027-05-05",
			"2027-06-09", "2027-09-15", "2027-10-01..2027-10-07"),
		work: dateSet("2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10",
			"2027-01-31", "2027-02-14", "2027-05-08", "2027-09-26", "2027-10-09"),
		years: map[int]bool{2026: true, 2027: true},
	},
	"dst": {off: dateSet("2026-12-24..2026-12-26"), work: dateSet("2026-12-27"), years: map[int]bool{2026: true}},
}

func dateSet(specs ...string) map[string]bool {
	m := map[string]bool{}
	for _, s := range specs {
		from, to := s, s
		if len(s) > 10 {
			from, to = s[:10], s[12:]
		}
		d, _ := time.Parse(time.DateOnly, from)
		end, _ := time.Parse(time.DateOnly, to)
		for ; !d.After(end); d = d.AddDate(0, 0, 1) {
			m[d.Format(time.DateOnly)] = true
		}
	}
	return m
}

// refForbids is the rules' meaning, evaluated the plain way: the local
// clock and date of t in z.
func refForbids(p *Profile, r *Rule, t time.Time, z *time.Location) bool {
	lt := t.In(z)
	switch r.Kind {
	case KindWindow:
		h, m, s := lt.Clock()
		sec, from, to := h*3600+m*60+s, r.From*60, r.To*60
		if from < to {
			return sec < from || sec >= to
		}
		return sec < from && sec >= to
	case KindHoliday:
		date := lt.Format(time.DateOnly)
		days := refDays[p.Name]
		if days.off[date] || !days.years[lt.Year()] {
			return true
		}
		wd := lt.Weekday()
		return r.Days == DaysNonWorking && (wd == time.Saturday || wd == time.Sunday) && !days.work[date]
	}
	return false
}

func refAllowed(p *Profile, ch intent.Channel, zones []*time.Location, t time.Time) bool {
	for _, r := range p.Rules {
		if !r.Applies(ch) {
			continue
		}
		for _, z := range zones {
			if refForbids(p, r, t, z) {
				return false
			}
		}
	}
	return true
}

// Instants near which something happens in 2026: clock changes in the
// zones drawn from, and the edges of Chinese holidays.
var edges = []time.Time{
	utc("2026-03-08 07:00:00"), utc("2026-03-08 08:00:00"), utc("2026-03-08 10:00:00"), // New York, Chicago, Los Angeles spring forward
	utc("2026-11-01 06:00:00"), utc("2026-11-01 07:00:00"), utc("2026-11-01 09:00:00"), // … and fall back
	utc("2026-03-29 01:00:00"), utc("2026-10-25 01:00:00"), // London
	utc("2026-04-04 15:00:00"), utc("2026-10-03 15:30:00"), // Lord Howe (half an hour)
	local(shanghai, "2026-02-14 00:00:00"), local(shanghai, "2026-02-24 00:00:00"), local(shanghai, "2026-10-01 00:00:00"),
	local(newYork, "2026-12-24 00:00:00"),
}

var propertyZones = []*time.Location{shanghai, newYork, chicago, losAngeles, london, lordHowe}

func TestWindowProperty(t *testing.T) {
	names := []string{"cn-bank", "us-regf", "dst"}
	for _, n := range names {
		profile(t, n)
	}
	// Across two covered years and into the first that no calendar covers.
	start, end := utc("2026-01-01 00:00:00"), utc("2028-01-10 00:00:00")
	rapid.Check(t, func(rt *rapid.T) {
		p := profile(t, rapid.SampledFrom(names).Draw(rt, "profile"))
		ch := rapid.SampledFrom(intent.Channels).Draw(rt, "channel")
		idx := rapid.SliceOfNDistinct(rapid.IntRange(0, len(propertyZones)-1), 1, 3, rapid.ID[int]).Draw(rt, "zones")
		zones := make([]*time.Location, len(idx))
		for i, j := range idx {
			zones[i] = propertyZones[j]
		}
		var now time.Time
		if rapid.Bool().Draw(rt, "near edge") {
			e := rapid.SampledFrom(edges).Draw(rt, "edge")
			now = e.Add(time.Duration(rapid.Int64Range(-3*86400, 3*86400).Draw(rt, "offset s")) * time.Second)
		} else {
			now = start.Add(time.Duration(rapid.Int64Range(0, int64(end.Sub(start)/time.Second)).Draw(rt, "s")) * time.Second)
		}
		now = now.Add(time.Duration(rapid.SampledFrom([]int64{0, 0, 1, 500_000_000, 999_999_999}).Draw(rt, "ns")))

		d := p.Window(ch, zones, now)
		want := refAllowed(p, ch, zones, now)
		if d.Allowed != want {
			rt.Fatalf("Allowed = %v, the rules say %v (inputs %q)", d.Allowed, want, d.Inputs)
		}
		if d.Allowed {
			if d.Rule != nil || !d.Next.IsZero() {
				rt.Fatalf("allowed with rule %q, next %v", ruleID(d.Rule), d.Next)
			}
			return
		}
		// The recorded rule forbids now somewhere, and no earlier one does.
		for _, r := range p.Rules {
			if !r.Applies(ch) || (r.Kind != KindWindow && r.Kind != KindHoliday) {
				continue
			}
			forbids := false
			for _, z := range zones {
				forbids = forbids || refForbids(p, r, now, z)
			}
			if r == d.Rule {
				if !forbids {
					rt.Fatalf("rule %s recorded but allows now (inputs %q)", r.ID, d.Inputs)
				}
				break
			}
			if forbids {
				rt.Fatalf("rule %s recorded, but %s comes first and forbids now", ruleID(d.Rule), r.ID)
			}
		}

		rng := rand.New(rand.NewPCG(uint64(now.UnixNano()), 1))
		if d.Next.IsZero() {
			for range 2000 {
				at := now.Add(time.Duration(1+rng.Int64N(int64(Horizon/time.Minute))) * time.Minute)
				if refAllowed(p, ch, zones, at) {
					rt.Fatalf("no Next, but %v is allowed (zones %v)", at, zones)
				}
			}
			return
		}
		if !d.Next.After(now) || d.Next.Sub(now) > Horizon {
			rt.Fatalf("Next %v not in (now, now+%v] for now %v", d.Next, Horizon, now)
		}
		if !refAllowed(p, ch, zones, d.Next) {
			rt.Fatalf("Next %v is not allowed (zones %v)", d.Next, zones)
		}
		if before := d.Next.Add(-time.Second); before.After(now) && refAllowed(p, ch, zones, before) {
			rt.Fatalf("Next %v, but a second earlier is allowed", d.Next)
		}
		gap := int64(d.Next.Sub(now) / time.Minute)
		if gap <= 2000 {
			for k := int64(1); k <= gap; k++ {
				if at := now.Add(time.Duration(k) * time.Minute); at.Before(d.Next) && refAllowed(p, ch, zones, at) {
					rt.Fatalf("Next %v, but %v is allowed", d.Next, at)
				}
			}
		} else {
			for range 2000 {
				if at := now.Add(time.Duration(1+rng.Int64N(gap)) * time.Minute); at.Before(d.Next) && refAllowed(p, ch, zones, at) {
					rt.Fatalf("Next %v, but %v is allowed", d.Next, at)
				}
			}
		}
		// AtWindowStart promises that jittering stays allowed.
		if d.AtWindowStart {
			for at := d.Next; at.Before(d.Next.Add(p.Jitter)); at = at.Add(time.Minute) {
				if !refAllowed(p, ch, zones, at) {
					rt.Fatalf("AtWindowStart at %v, but %v is not allowed", d.Next, at)
				}
			}
		}
	})
}
