// Package policy owns the compliance rules applied before any contact with a
// debtor: when a contact may happen (local-time windows, statutory holidays)
// and how often (frequency caps and minimum gaps).
//
// A Profile is loaded from a YAML file written and owned by the bank's
// compliance team (configs/profiles/*.yaml) and the holiday calendars it
// names (configs/holidays/*.yaml). The engine is pure: after Load its only
// I/O is reading a time zone the first time its name is seen, and its only
// state is that cache, so a decision depends only on the profile, the intent
// and the instant it is given. Window answers "may we
// contact now, and if not, when"; Checks describes the counts a contact must
// stay under, which the gate evaluates atomically against the recorded
// contacts. Every rule carries its id and legal source, so each decision can
// be explained to a regulator.
package policy

import (
	"fmt"
	"sync"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

// Rule kinds.
const (
	KindWindow  = "window"  // contact only inside a local time-of-day window
	KindHoliday = "holiday" // no contact on certain local calendar days
	KindCap     = "cap"     // at most Limit events per calendar day or sliding span
	KindGap     = "gap"     // at least a span between two events
)

// Days forbidden by a holiday rule.
const (
	// DaysHolidays forbids the off days of the holiday calendar.
	DaysHolidays = "holidays"
	// DaysNonWorking forbids the off days and the Saturdays and Sundays that
	// are not make-up working days.
	DaysNonWorking = "non_working"
)

// Zone policies: how Zones picks the time zones a contact must respect.
const (
	// ZoneIntentFirst uses the intent's time zone if it has one, else every
	// zone the phone number can be in, else the profile's default zone.
	ZoneIntentFirst = "intent_first"
	// ZoneAllKnown uses the intent's zone and every zone the phone number can
	// be in (the default zone when there are none): a contact must be allowed
	// in each of them.
	ZoneAllKnown = "all_known"
)

// Events counted by checks.
const (
	EventAttempt      = "attempt"      // a contact was attempted (sent, dialled)
	EventConnected    = "connected"    // a call was answered
	EventConversation = "conversation" // a call reached a conversation about the debt
)

// Scopes: whose events a stream counts.
const (
	ScopeDebtor = "debtor" // every contact with the debtor
	ScopeDebt   = "debt"   // contacts about one debt (the intent's debt_id)
	ScopeNumber = "number" // contacts to one phone number
)

// ChannelAny in a Stream counts events on every channel.
const ChannelAny = "any"

// Profile is a loaded, validated policy. It is read-only after Load and safe
// for concurrent use.
type Profile struct {
	Name        string
	Description string
	// Version is a content hash of the profile file and its calendars: two
	// processes deciding on the same text have the same version.
	Version     string
	DefaultZone *time.Location
	// Jitter spreads deferrals released at the same window opening.
	Jitter time.Duration
	Rules  []*Rule // in file order

	zonePolicy   string
	defaultZones []*time.Location // {DefaultZone}, shared, never modified
	cal          *calendar
	// uncoveredOrdinary: a day of a year no calendar covers is an ordinary
	// day (uncovered_year: ordinary); by default it is a day off.
	uncoveredOrdinary bool
	holidayRules      bool                             // some rule is of kind holiday
	requires          map[intent.Channel][]requirement // fields an intent needs for a channel
	builtin           map[string]string                // built-in rule id → source
	byID              map[string]*Rule
	byChannel         [4]channelRules // indexed by channelIndex

	locs   sync.Map // zone name → *time.Location, valid names only
	phones sync.Map // *string from phonenumbers' prefix table → []*time.Location
}

// channelRules is what one channel needs, computed once at load so that no
// decision filters or sorts rules.
type channelRules struct {
	timed []*Rule // window and holiday rules, file order
	// windows is timed without the holiday rules (with the same bounds):
	// whether zones' windows can ever overlap.
	windows *channelRules
	counts  []*Rule // cap and gap rules, file order
	bounds  []int64 // seconds after local midnight where timed rules change, sorted, always with 0
	days    bool    // some count rule is per calendar day
}

// Rule is one rule of a profile.
type Rule struct {
	ID     string
	Kind   string // KindWindow, KindHoliday, KindCap or KindGap
	Source string // the legal source, as written in the profile
	// Channels the rule applies to: it constrains a contact on any of them.
	Channels []intent.Channel

	// Window: contact allowed from From to To, in minutes after local
	// midnight, half-open [From, To). From > To wraps midnight; To may be
	// 1440 (24:00).
	From, To int

	// Holiday: DaysHolidays or DaysNonWorking.
	Days string

	// Cap and gap: the contact passes while fewer than Limit events of
	// Stream happened in the current local calendar day (CalendarDay) or in
	// the last Sliding. A gap rule is Limit 1 over a sliding span of the gap.
	Stream      Stream
	Limit       int
	Sliding     time.Duration
	CalendarDay bool
}

// Applies reports whether r constrains a contact on ch.
func (r *Rule) Applies(ch intent.Channel) bool {
	for _, c := range r.Channels {
		if c == ch {
			return true
		}
	}
	return false
}

// Stream names a series of timestamped events the gate keeps per debtor.
type Stream struct {
	Event   string // EventAttempt, EventConnected or EventConversation
	Channel string // a channel, or ChannelAny
	Scope   string // ScopeDebtor, ScopeDebt or ScopeNumber
}

// String is the stream's stable name, "event:channel:scope", for keys and
// the audit trail.
func (s Stream) String() string { return s.Event + ":" + s.Channel + ":" + s.Scope }

// Ids of the rules the dispatcher applies itself, outside the profile's
// rules list. A profile states their legal source under builtin_sources.
const (
	RuleOptOut       = "opt-out"
	RuleDoNotContact = "do-not-contact"
	RuleExpiresAt    = "expires_at"
	RuleNotBefore    = "not-before"
	RuleHold         = "hold"
)

// BuiltinRules lists the built-in rule ids.
var BuiltinRules = []string{RuleOptOut, RuleDoNotContact, RuleExpiresAt, RuleNotBefore, RuleHold}

// defaultBuiltinSources are the sources of the built-in rules when a
// profile states none.
var defaultBuiltinSources = map[string]string{
	RuleOptOut:       "The debtor's opt-out of the channel (by link, by SMS keyword, through the provider or the bank), recorded on reminders.optouts: no contact on that channel after it.",
	RuleDoNotContact: "A legal do-not-contact state recorded for the debtor (cease and desist, represented by an attorney, dispute open): no contact on any channel.",
	RuleExpiresAt:    "The intent's expires_at: the sending system's instruction that the reminder no longer applies after it.",
	RuleNotBefore:    "The intent's not_before: the sending system's instruction not to contact the debtor before it.",
	RuleHold:         "A hold the bank placed on the debtor or one debt (paid, settled, a promise to pay, deceased, bankruptcy): no contact while it stands; a hold with an end pauses contact until then.",
}

// Source returns the legal source of a rule of the profile, or of a
// built-in rule as the profile states it; "" for an unknown id.
func (p *Profile) Source(id string) string {
	if r := p.byID[id]; r != nil {
		return r.Source
	}
	return p.builtin[id]
}

// Sources maps every rule id the profile knows, built-in ones included, to
// its source.
func (p *Profile) Sources() map[string]string {
	m := make(map[string]string, len(p.Rules)+len(p.builtin))
	for id, s := range p.builtin {
		m[id] = s
	}
	for _, r := range p.Rules {
		m[r.ID] = r.Source
	}
	return m
}

// TimedRules returns the window and holiday rules of ch, in file order.
// The result is shared: callers must not modify it.
func (p *Profile) TimedRules(ch intent.Channel) []*Rule {
	if i := channelIndex(ch); i >= 0 {
		return p.byChannel[i].timed
	}
	return nil
}

// Rule looks a rule up by id; nil if there is none.
func (p *Profile) Rule(id string) *Rule { return p.byID[id] }

// ZonePolicy returns ZoneIntentFirst or ZoneAllKnown.
func (p *Profile) ZonePolicy() string { return p.zonePolicy }

// CoversYear reports whether the profile's holiday calendars cover the
// year. On a day of a year none covers, holiday rules forbid contact on
// every channel they restrict (unless the profile says uncovered_year:
// ordinary): the service warns ahead, and compliance adds the next year's
// calendar before the year starts.
func (p *Profile) CoversYear(year int) bool {
	return p.cal != nil && p.cal.years[year]
}

// Calendars names the holiday calendars the profile loaded, in order.
func (p *Profile) Calendars() []string {
	if p.cal == nil {
		return nil
	}
	return append([]string(nil), p.cal.names...)
}

// CoveredUntil returns the instant the holiday calendars stop covering, as
// seen at now: the start (in the default zone) of the first year from now's
// on that no calendar covers. ok is false when the profile has no holiday
// rule, so no calendar can run out, or when uncovered years are ordinary
// days by the profile's choice.
func (p *Profile) CoveredUntil(now time.Time) (until time.Time, ok bool) {
	if !p.holidayRules || p.uncoveredOrdinary {
		return time.Time{}, false
	}
	y := now.In(p.DefaultZone).Year()
	for p.CoversYear(y) {
		y++
	}
	return time.Date(y, 1, 1, 0, 0, 0, 0, p.DefaultZone), true
}

// CalendarWarning is the notice to give at now about the holiday calendars
// running out: "" while coverage lasts more than within, else a sentence
// naming the date and the file to add. Callers log it, show it on readiness
// and on the ops page.
func (p *Profile) CalendarWarning(now time.Time, within time.Duration) string {
	until, ok := p.CoveredUntil(now)
	if !ok || until.Sub(now) > within {
		return ""
	}
	year := until.Year()
	if !now.Before(until) {
		return fmt.Sprintf("holiday calendars of profile %s do not cover %d: holiday rules treat every day of %d as a day off; add holidays/<calendar>-%d.yaml", p.Name, year, year, year)
	}
	return fmt.Sprintf("holiday calendars of profile %s end on %s: from then on holiday rules treat every day as a day off; add holidays/<calendar>-%d.yaml", p.Name, until.AddDate(0, 0, -1).Format(time.DateOnly), year)
}

// CalendarWarnAhead is how long before the holiday calendars run out the
// service starts to warn (log, readiness, ops page).
const CalendarWarnAhead = 60 * 24 * time.Hour

// requirement is one field a profile requires of an intent for a channel,
// and why.
type requirement struct {
	field string // an intent field: debt_id, timezone
	why   string // the rule that needs it, or "profile"
}

// Require checks that in carries every field the profile requires for the
// channels it lists (us-regf: debt_id for voice, since its call caps count
// per debt). A missing field is an *intent.Error naming the field, the
// channel and the rule that needs it: a rule that cannot apply is refused,
// never skipped.
func (p *Profile) Require(in intent.Intent) error {
	if len(p.requires) == 0 {
		return nil
	}
	var fields []intent.FieldError
	seen := map[string]bool{}
	for _, ch := range in.Channels {
		for _, r := range p.requires[ch] {
			if seen[r.field] || requiredValue(in, r.field) != "" {
				continue
			}
			seen[r.field] = true
			fields = append(fields, intent.FieldError{Field: r.field, Code: "required_by_profile",
				Message: fmt.Sprintf("required by profile %s for %s (%s)", p.Name, ch, r.why)})
		}
	}
	if len(fields) == 0 {
		return nil
	}
	return &intent.Error{Fields: fields}
}

// requiredValue is the value of a field a profile may require.
func requiredValue(in intent.Intent, field string) string {
	switch field {
	case "debt_id":
		return in.DebtID
	case "timezone":
		return in.Timezone
	}
	return ""
}

// requirableFields are the fields a profile may require.
var requirableFields = []string{"debt_id", "timezone"}

// MaxLookback is the longest time any check looks back: the gate keeps
// events that long. A calendar day counts as 48 hours, which covers a local
// day in any zone seen from any other.
func (p *Profile) MaxLookback() time.Duration {
	var d time.Duration
	for _, r := range p.Rules {
		switch {
		case r.CalendarDay:
			d = max(d, 48*time.Hour)
		case r.Kind == KindCap || r.Kind == KindGap:
			d = max(d, r.Sliding)
		}
	}
	return d
}

// Jittered spreads a deferral that lands on a window start over
// [next, next+p.Jitter), deterministically by key (an intent id), so that a
// window opening does not release a whole backlog at once and a redelivered
// intent gets the same time. It returns next unchanged if Jitter is 0.
func (p *Profile) Jittered(next time.Time, key string) time.Time {
	if p.Jitter <= 0 {
		return next
	}
	h := mix(fnv1a(key))
	if p.Jitter >= time.Second {
		n := uint64(p.Jitter / time.Second)
		return next.Add(time.Duration(h%n) * time.Second)
	}
	return next.Add(time.Duration(h % uint64(p.Jitter)))
}

// fnv1a is FNV-1a 64 over s, without the allocation of hash/fnv.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finaliser: ids that differ in their last
// characters only (ULIDs from one millisecond) still land far apart.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// channelIndex maps a known channel to its slot in Profile.byChannel.
func channelIndex(ch intent.Channel) int {
	switch ch {
	case intent.SMS:
		return 0
	case intent.Voice:
		return 1
	case intent.Email:
		return 2
	case intent.WeChat:
		return 3
	}
	return -1
}

// phoneChannel reports whether ch reaches a phone number.
func phoneChannel(ch intent.Channel) bool { return ch == intent.SMS || ch == intent.Voice }
