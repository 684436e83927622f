package policy

import (
	"fmt"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

// Horizon is how far ahead Window looks for the next allowed instant.
const Horizon = 31 * 24 * time.Hour

const day = 24 * 60 * 60 // seconds

// Decision is Window's answer for one contact.
type Decision struct {
	// Allowed: the contact may happen now in every zone.
	Allowed bool
	// Next is the earliest instant after now at which it may, in all zones
	// at once; zero when Allowed, or when there is none within Horizon.
	Next time.Time
	// Rule is the first rule, in file order, that forbids now; nil when
	// Allowed (or for a channel the dispatcher does not know).
	Rule *Rule
	// AtWindowStart: Next opens an allowed stretch at least Jitter long, so
	// the caller may spread the deferral with Jittered and stay inside it.
	AtWindowStart bool
	// Inputs records, for the audit trail, the local time of now in each
	// zone: "Asia/Shanghai 2026-11-23T07:59:59+08:00".
	Inputs []string
	// Note explains a decision the rule alone does not: "calendar does not
	// cover 2027" when a holiday rule forbids now because no calendar covers
	// the year (the fail-safe), else "".
	Note string
}

// Window decides whether a contact on ch may happen at now in every zone
// (window and holiday rules). When it may not, Next is the earliest instant
// after now at which it may in all zones at once. No zones means the
// profile's default zone. A channel the dispatcher does not know is never
// allowed.
//
// Rules speak of local wall-clock time. Allowed evaluates the wall clock of
// each zone at the instant, so a daylight-saving change can never make a
// forbidden local time look allowed; Next is found by walking the instants
// at which some zone's wall clock reaches a rule boundary or changes offset,
// so a window opening at a local time that does not exist that day opens at
// the transition, and a local time that happens twice is judged each time.
func (p *Profile) Window(ch intent.Channel, zones []*time.Location, now time.Time) Decision {
	zones = p.orDefault(zones)
	d := Decision{Inputs: inputs(zones, now)}
	i := channelIndex(ch)
	if i < 0 {
		return d
	}
	cr := &p.byChannel[i]
	if d.Rule = p.forbids(cr, zones, now); d.Rule == nil {
		d.Allowed = true
		return d
	}
	if d.Rule.Kind == KindHoliday && !p.uncoveredOrdinary {
		if y, ok := p.uncoveredYear(zones, now); ok {
			d.Note = fmt.Sprintf("calendar does not cover %d", y)
		}
	}
	end := now.Add(Horizon)
	for t := now; ; {
		t = nextBoundary(cr, zones, t)
		if t.After(end) {
			return d
		}
		if p.forbids(cr, zones, t) == nil {
			d.Next = t.In(zones[0])
			break
		}
	}
	d.AtWindowStart = p.openFor(cr, zones, d.Next, p.Jitter)
	return d
}

// uncoveredYear returns the year of now's local day, in the first zone where
// no calendar covers it.
func (p *Profile) uncoveredYear(zones []*time.Location, now time.Time) (int, bool) {
	for _, z := range zones {
		_, off := now.In(z).Zone()
		dn := floorDiv(now.Unix()+int64(off), day)
		if !p.cal.covers(dn) {
			return yearOf(dn), true
		}
	}
	return 0, false
}

// AllowedNow reports whether the window and holiday rules of ch allow a
// contact at now in every zone: Window's Allowed, without finding the next
// instant or formatting the inputs.
func (p *Profile) AllowedNow(ch intent.Channel, zones []*time.Location, now time.Time) bool {
	i := channelIndex(ch)
	return i >= 0 && p.forbids(&p.byChannel[i], p.orDefault(zones), now) == nil
}

// NeverAllowed reports whether the window rules of ch can never allow a
// contact in all of zones at once: the zones are too far apart for their
// windows to overlap on any day (a number whose zones span the globe). It
// looks at a week from now and a week half a year on, so both sides of a
// daylight-saving change are seen. Holidays do not count: they end.
func (p *Profile) NeverAllowed(ch intent.Channel, zones []*time.Location, now time.Time) bool {
	i := channelIndex(ch)
	if i < 0 || len(p.byChannel[i].windows.timed) == 0 {
		return false
	}
	wr := p.byChannel[i].windows
	zones = p.orDefault(zones)
	for _, from := range []time.Time{now, now.AddDate(0, 6, 0)} {
		end := from.Add(8 * 24 * time.Hour)
		for t := from; !t.After(end); t = nextBoundary(wr, zones, t) {
			if p.forbids(wr, zones, t) == nil {
				return false
			}
		}
	}
	return true
}

// openFor reports whether every instant of [t, t+span) is allowed, given
// that t is.
func (p *Profile) openFor(cr *channelRules, zones []*time.Location, t time.Time, span time.Duration) bool {
	end := t.Add(span)
	for {
		t = nextBoundary(cr, zones, t)
		if !t.Before(end) {
			return true
		}
		if p.forbids(cr, zones, t) != nil {
			return false
		}
	}
}

// forbids returns the first timed rule, in file order, that forbids t in
// some zone, or nil.
func (p *Profile) forbids(cr *channelRules, zones []*time.Location, t time.Time) *Rule {
	if len(cr.timed) == 0 {
		return nil
	}
	var buf [8]int64
	walls := buf[:0]
	for _, z := range zones {
		_, off := t.In(z).Zone()
		walls = append(walls, t.Unix()+int64(off))
	}
	for _, r := range cr.timed {
		for _, w := range walls {
			dn := floorDiv(w, day)
			if !p.allows(r, dn, w-dn*day) {
				return r
			}
		}
	}
	return nil
}

// allows reports whether timed rule r allows local day dn (days since
// 1970-01-01) at sod seconds after local midnight.
func (p *Profile) allows(r *Rule, dn, sod int64) bool {
	if r.Kind == KindHoliday {
		return !p.cal.forbidden(r.Days, dn, p.uncoveredOrdinary)
	}
	from, to := int64(r.From)*60, int64(r.To)*60
	if from < to {
		return from <= sod && sod < to
	}
	return sod >= from || sod < to
}

// nextBoundary returns the first instant after t at which the allowed state
// can change: some zone's wall clock reaches a boundary of the channel's
// rules, or some zone changes its UTC offset. Between two boundaries the
// wall clock of every zone runs without jumps, so the state is constant.
func nextBoundary(cr *channelRules, zones []*time.Location, t time.Time) time.Time {
	next := int64(-1 << 63)
	first := true
	for _, z := range zones {
		lt := t.In(z)
		_, off := lt.Zone()
		w := t.Unix() + int64(off)
		dn := floorDiv(w, day)
		sod := w - dn*day
		b := (dn+1)*day + cr.bounds[0]
		for _, x := range cr.bounds {
			if x > sod {
				b = dn*day + x
				break
			}
		}
		u := b - int64(off)
		if _, end := lt.ZoneBounds(); !end.IsZero() && end.Unix() <= u {
			u = end.Unix()
		}
		if first || u < next {
			next, first = u, false
		}
	}
	return time.Unix(next, 0)
}

// orDefault returns zones, with the default zone for none and in place of
// nil entries.
func (p *Profile) orDefault(zones []*time.Location) []*time.Location {
	if len(zones) == 0 {
		return p.defaultZones
	}
	for i, z := range zones {
		if z == nil {
			fixed := append([]*time.Location(nil), zones...)
			for j := i; j < len(fixed); j++ {
				if fixed[j] == nil {
					fixed[j] = p.DefaultZone
				}
			}
			return fixed
		}
	}
	return zones
}

// inputs formats now in each zone for the audit trail, in one allocation
// for the text and one for the slice.
func inputs(zones []*time.Location, now time.Time) []string {
	var buf [256]byte
	b := buf[:0]
	var ends [8]int
	cut := ends[:0]
	for _, z := range zones {
		b = append(b, z.String()...)
		b = append(b, ' ')
		b = now.In(z).AppendFormat(b, time.RFC3339)
		cut = append(cut, len(b))
	}
	s := string(b)
	out := make([]string, len(zones))
	start := 0
	for i, e := range cut {
		out[i] = s[start:e]
		start = e
	}
	return out
}

// floorDiv divides rounding towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) != (b < 0) {
		q--
	}
	return q
}
