package policy

import (
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/contactd/dispatcher/pkg/intent"
)

// maxZoneName bounds the zone names looked up; the longest IANA name is
// about 30 bytes.
const maxZoneName = 64

// Zones returns the time zones a contact with in must respect, per the
// profile's zone policy: never empty, without duplicates, in a stable order
// (the intent's zone, the phone number's zones as phonenumbers lists them,
// the default zone). A zone name the intent gives that does not load counts
// as absent; zone names phonenumbers gives that do not load are skipped.
func (p *Profile) Zones(in intent.Intent) []*time.Location {
	var own *time.Location
	if in.Timezone != "" {
		own = p.location(in.Timezone)
	}
	if own != nil && p.zonePolicy == ZoneIntentFirst {
		return []*time.Location{own}
	}
	phone := p.phoneZones(in.To.Phone)
	out := make([]*time.Location, 0, len(phone)+1)
	if own != nil {
		out = append(out, own)
	}
	for _, l := range phone {
		if l != own {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		out = append(out, p.DefaultZone)
	}
	return out
}

// location loads a zone by name once; nil if it does not load. Only valid
// names are cached, so the cache is bounded by the zone database.
func (p *Profile) location(name string) *time.Location {
	if v, ok := p.locs.Load(name); ok {
		return v.(*time.Location)
	}
	// "Local" is the server's zone and "" is UTC to LoadLocation: neither
	// names where a debtor is.
	if name == "" || name == "Local" || len(name) > maxZoneName {
		return nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil
	}
	v, _ := p.locs.LoadOrStore(name, l)
	return v.(*time.Location)
}

// phoneZones returns the zones an E.164 number can be in, deduplicated, or
// nil. The result is shared: callers must not modify it.
//
// phonenumbers.GetTimezonesForNumber formats the number as E.164 and looks
// its longest known prefix up; an intent's phone is E.164 already (intent
// validation), so the prefix lookup is used directly, skipping Parse. The
// zone names it returns are shared slices of its prefix table, so the
// address of their first element identifies the prefix entry and keys the
// cache of loaded zones: bounded by the table, whatever the numbers.
func (p *Profile) phoneZones(phone string) []*time.Location {
	if len(phone) < 2 || phone[0] != '+' {
		return nil
	}
	for i := 1; i < len(phone); i++ {
		if phone[i] < '0' || phone[i] > '9' {
			return nil
		}
	}
	names, err := phonenumbers.GetTimezonesForPrefix(phone)
	if err != nil || len(names) == 0 || (len(names) == 1 && names[0] == phonenumbers.UNKNOWN_TIMEZONE) {
		return nil
	}
	key := &names[0]
	if v, ok := p.phones.Load(key); ok {
		return v.([]*time.Location)
	}
	locs := make([]*time.Location, 0, len(names))
	for _, n := range names {
		l := p.location(n)
		if l == nil || containsLoc(locs, l) {
			continue
		}
		locs = append(locs, l)
	}
	locs = locs[:len(locs):len(locs)]
	v, _ := p.phones.LoadOrStore(key, locs)
	return v.([]*time.Location)
}

func containsLoc(locs []*time.Location, l *time.Location) bool {
	for _, x := range locs {
		if x == l {
			return true
		}
	}
	return false
}
