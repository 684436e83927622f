package policy

import (
	"slices"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

// Check is one frequency rule applied to one contact: the contact is
// allowed while the count of Stream events at or after Since is below
// Limit. When it is not, it becomes allowed at FreeAt.
type Check struct {
	Rule   *Rule
	Stream Stream
	Limit  int
	// Since: count events with time >= Since.
	Since time.Time
	// Sliding > 0: each event stops counting Sliding after it happened
	// (Since == now - Sliding).
	Sliding time.Duration
	// Until, when Sliding == 0 (a calendar day): the count resets at Until,
	// the next local midnight.
	Until time.Time
}

// FreeAt returns when a contact refused by c becomes allowed, given the
// times of the stream's events (in any order; those before Since are
// ignored), or the zero time if c allows it now. For a calendar day it is
// Until. For a sliding span it is when enough events have aged out: an
// event at exactly Since still counts, so the slot frees one nanosecond
// after the event's time + Sliding. The result may fall outside a window:
// the caller asks Window again at that time.
func (c Check) FreeAt(events []time.Time) time.Time {
	var buf [16]time.Time
	in := buf[:0]
	for _, e := range events {
		if !e.Before(c.Since) {
			in = append(in, e)
		}
	}
	if len(in) < c.Limit {
		return time.Time{}
	}
	if c.Sliding <= 0 {
		return c.Until
	}
	slices.SortFunc(in, func(a, b time.Time) int { return a.Compare(b) })
	// Once the oldest len-Limit+1 events have aged out, Limit-1 remain.
	return in[len(in)-c.Limit].Add(c.Sliding + time.Nanosecond)
}

// Checks returns the cap and gap checks a contact on ch at now must pass,
// in rule order. Calendar-day caps count the local day; with several zones
// they count conservatively, from the earliest local midnight among the
// zones (Since) to the latest next midnight (Until). Rules counting by debt
// are skipped for an intent without debt_id, and rules counting by number
// for a channel that does not reach a phone number or an intent without one.
// No zones means the profile's default zone.
func (p *Profile) Checks(in intent.Intent, ch intent.Channel, zones []*time.Location, now time.Time) []Check {
	i := channelIndex(ch)
	if i < 0 || len(p.byChannel[i].counts) == 0 {
		return nil
	}
	cr := &p.byChannel[i]
	zones = p.orDefault(zones)
	var since, until time.Time
	if cr.days {
		since, until = dayBounds(zones, now)
	}
	out := make([]Check, 0, len(cr.counts))
	for _, r := range cr.counts {
		switch r.Stream.Scope {
		case ScopeDebt:
			if in.DebtID == "" {
				continue
			}
		case ScopeNumber:
			if !phoneChannel(ch) || in.To.Phone == "" {
				continue
			}
		}
		c := Check{Rule: r, Stream: r.Stream, Limit: r.Limit}
		if r.CalendarDay {
			c.Since, c.Until = since, until
		} else {
			c.Sliding = r.Sliding
			c.Since = now.Add(-r.Sliding)
		}
		out = append(out, c)
	}
	return out
}

// dayBounds returns the earliest start of the local day containing now and
// the latest start of the next one, over zones.
func dayBounds(zones []*time.Location, now time.Time) (since, until time.Time) {
	for i, z := range zones {
		s, u := dayStart(now, z), nextMidnight(now, z)
		if i == 0 || s.Before(since) {
			since = s
		}
		if i == 0 || u.After(until) {
			until = u
		}
	}
	return since, until
}

// wallDay returns t's local day number (days since 1970-01-01) in its own
// location.
func wallDay(t time.Time) int64 {
	_, off := t.Zone()
	return floorDiv(t.Unix()+int64(off), day)
}

// dayStart returns the first instant of t's local day in loc. Usually
// local midnight; on a day whose midnight a clock change skips, the change
// itself; and if a clock change repeats the start of the day, the first of
// the two.
func dayStart(t time.Time, loc *time.Location) time.Time {
	x := t.In(loc)
	dn := wallDay(x)
	target := dn * day // wall seconds at the day's midnight
	for range 8 {
		_, off := x.Zone()
		start, _ := x.ZoneBounds()
		c := target - int64(off) // where this offset's wall clock reads midnight
		if start.IsZero() {
			return time.Unix(c, 0).In(loc)
		}
		s := start.Unix()
		prev := time.Unix(s-1, 0).In(loc)
		if wallDay(prev) < dn { // the day began in this stretch of constant offset
			return time.Unix(max(c, s), 0).In(loc)
		}
		x = prev
	}
	return time.Date(x.Year(), x.Month(), x.Day(), 0, 0, 0, 0, loc)
}

// nextMidnight returns the first instant after t at which loc's local
// date is later than t's: usually the next local midnight, or the clock
// change that skips it.
func nextMidnight(t time.Time, loc *time.Location) time.Time {
	x := t.In(loc)
	target := (wallDay(x) + 1) * day
	for range 8 {
		_, off := x.Zone()
		_, end := x.ZoneBounds()
		c := target - int64(off)
		if end.IsZero() || c < end.Unix() {
			return time.Unix(c, 0).In(loc)
		}
		if wallDay(end) >= target/day {
			return end
		}
		x = end
	}
	return time.Date(x.Year(), x.Month(), x.Day()+1, 0, 0, 0, 0, loc)
}
