package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
	"gopkg.in/yaml.v3"

	"github.com/contactd/dispatcher/pkg/intent"
)

// Directories of the configuration file system that Load reads.
const (
	ProfileDir = "profiles"
	HolidayDir = "holidays"
)

// PerCalendarDay is the `per` of a cap counted over the local calendar day.
const PerCalendarDay = "calendar_day"

// maxSpan bounds sliding spans, and so how long the gate keeps events.
const maxSpan = 366 * 24 * time.Hour

// profileFile is the YAML form of configs/profiles/<name>.yaml.
type profileFile struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	TimeZone    zoneFile `yaml:"time_zone"`
	Holidays    []string `yaml:"holidays"`
	// UncoveredYear: holiday (default) or ordinary, what a holiday rule
	// makes of a day in a year no calendar covers.
	UncoveredYear string `yaml:"uncovered_year"`
	// BuiltinSources: the legal source the profile states for the rules
	// the dispatcher applies itself (opt-out, do-not-contact, expires_at).
	BuiltinSources map[string]string   `yaml:"builtin_sources"`
	Requires       map[string][]string `yaml:"requires"`
	Jitter         string              `yaml:"jitter"`
	Rules          []ruleFile          `yaml:"rules"`
}

type zoneFile struct {
	Default string `yaml:"default"`
	Policy  string `yaml:"policy"`
}

type ruleFile struct {
	ID       string      `yaml:"id"`
	Kind     string      `yaml:"kind"`
	Channels []string    `yaml:"channels"`
	From     string      `yaml:"from"`
	To       string      `yaml:"to"`
	Days     string      `yaml:"days"`
	Counts   *streamFile `yaml:"counts"`
	Limit    *int        `yaml:"limit"`
	Per      string      `yaml:"per"`
	Gap      string      `yaml:"gap"`
	Source   string      `yaml:"source"`
}

type streamFile struct {
	Event   string `yaml:"event"`
	Channel string `yaml:"channel"`
	Scope   string `yaml:"scope"`
}

// Load reads and checks a profile. name is either a profile name
// ("cn-bank"), read from profiles/<name>.yaml in fsys with its holiday
// calendars from holidays/<calendar>.yaml in fsys, or the path of a .yaml
// file on disk (it contains a '/' or ends in .yaml), with its calendars read
// from ../holidays/ next to it. Every field is checked; an error names the
// file, the line of the rule and the field.
func Load(fsys fs.FS, name string) (*Profile, error) {
	var (
		file string
		data []byte
		err  error
		cals calendars
	)
	if strings.Contains(name, "/") || strings.HasSuffix(name, ".yaml") {
		file = name
		data, err = os.ReadFile(name)
		dir := filepath.Join(filepath.Dir(name), "..", HolidayDir)
		cals = calendars{fsys: os.DirFS(dir), dir: dir + string(filepath.Separator)}
	} else {
		if !validName(name) {
			return nil, fmt.Errorf("policy profile %q: not a profile name (letters, digits, '.', '_', '-') or a .yaml path", name)
		}
		if fsys == nil {
			return nil, fmt.Errorf("policy profile %q: no configuration file system to read it from", name)
		}
		file = path.Join(ProfileDir, name+".yaml")
		data, err = fs.ReadFile(fsys, file)
		if sub, serr := fs.Sub(fsys, HolidayDir); serr == nil {
			cals = calendars{fsys: sub, dir: HolidayDir + "/"}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("policy profile: %w", err)
	}
	p, err := parse(file, data, cals)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(name, "/") && !strings.HasSuffix(name, ".yaml") && p.Name != name {
		return nil, fmt.Errorf("%s: name: %q must be the file's name, %q", file, p.Name, name)
	}
	return p, nil
}

// calendars reads holiday calendar files from a directory.
type calendars struct {
	fsys fs.FS  // the holidays directory
	dir  string // how to name it in errors, with its trailing separator
}

// read returns the files a profile's `holidays` entry names: the file
// <name>.yaml if there is one, else every <name>-<year>.yaml (a family such
// as "cn": cn-2026.yaml, cn-2027.yaml, … — a bank adds next year's file to
// its configuration directory without editing the profile).
func (c calendars) read(name string) (files []string, data [][]byte, err error) {
	if c.fsys == nil {
		return nil, nil, fmt.Errorf("unknown holiday calendar %q: no holidays directory", name)
	}
	b, err := fs.ReadFile(c.fsys, name+".yaml")
	if err == nil {
		return []string{c.dir + name + ".yaml"}, [][]byte{b}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("holiday calendar %q: %v", name, err)
	}
	matches, _ := fs.Glob(c.fsys, name+"-*.yaml")
	for _, m := range matches {
		if y := strings.TrimSuffix(strings.TrimPrefix(m, name+"-"), ".yaml"); len(y) != 4 || strings.Trim(y, "0123456789") != "" {
			continue // cn-bank-extra.yaml is not a year of cn
		}
		b, err := fs.ReadFile(c.fsys, m)
		if err != nil {
			return nil, nil, fmt.Errorf("holiday calendar %q: %v", m, err)
		}
		files, data = append(files, c.dir+m), append(data, b)
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("unknown holiday calendar %q: no file %s%s.yaml nor %s%s-<year>.yaml", name, c.dir, name, c.dir, name)
	}
	return files, data, nil
}

// parse checks a profile file, reading its holiday calendars from cals.
func parse(file string, data []byte, cals calendars) (*Profile, error) {
	var f profileFile
	if err := decodeStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	lines := ruleLines(data)
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", file, field, fmt.Sprintf(format, args...))
	}

	p := &Profile{Name: f.Name, Description: f.Description, byID: map[string]*Rule{}}
	version := sha256.New()
	version.Write(data)
	if !validName(f.Name) {
		return nil, fail("name", "%q must be letters, digits, '.', '_' or '-'", f.Name)
	}
	if f.TimeZone.Default == "" {
		return nil, fail("time_zone.default", "required: the zone used when an intent gives none")
	}
	if p.DefaultZone = p.location(f.TimeZone.Default); p.DefaultZone == nil {
		return nil, fail("time_zone.default", "unknown time zone %q: must be an IANA name such as Asia/Shanghai", f.TimeZone.Default)
	}
	p.defaultZones = []*time.Location{p.DefaultZone}
	switch f.TimeZone.Policy {
	case ZoneIntentFirst, ZoneAllKnown:
		p.zonePolicy = f.TimeZone.Policy
	default:
		return nil, fail("time_zone.policy", "%q must be %s or %s", f.TimeZone.Policy, ZoneIntentFirst, ZoneAllKnown)
	}
	if f.Jitter != "" {
		j, err := time.ParseDuration(f.Jitter)
		if err != nil || j < 0 || j >= 24*time.Hour {
			return nil, fail("jitter", "%q must be a duration from 0s to under 24h, such as 30m", f.Jitter)
		}
		p.Jitter = j
	}

	switch f.UncoveredYear {
	case "", "holiday":
	case "ordinary":
		p.uncoveredOrdinary = true
	default:
		return nil, fail("uncovered_year", "%q must be holiday (a day of a year no calendar covers is a day off: the default) or ordinary", f.UncoveredYear)
	}

	var parsed []*parsedCalendar
	for i, name := range f.Holidays {
		field := fmt.Sprintf("holidays[%d]", i)
		if !validName(name) {
			return nil, fail(field, "%q is not a calendar name", name)
		}
		files, datas, err := cals.read(name)
		if err != nil {
			return nil, fail(field, "%v", err)
		}
		for k, cf := range files {
			want := strings.TrimSuffix(path.Base(filepath.ToSlash(cf)), ".yaml")
			for _, c := range parsed {
				if c.name == want {
					return nil, fail(field, "calendar %q listed twice", want)
				}
			}
			version.Write([]byte("\x00" + want + "\x00"))
			version.Write(datas[k])
			pc, err := parseCalendar(cf, want, datas[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", file, field, err)
			}
			if y := strings.TrimPrefix(want, name+"-"); y != want && y != strconv.Itoa(pc.year) {
				return nil, fmt.Errorf("%s: %s: %s: year: %d is not the year its name says, %s", file, field, cf, pc.year, y)
			}
			parsed = append(parsed, pc)
		}
	}
	cal, err := merge(parsed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	p.cal = cal

	if len(f.Rules) == 0 {
		return nil, fail("rules", "required: a profile without rules allows everything")
	}
	for i := range f.Rules {
		rf := &f.Rules[i]
		where := fmt.Sprintf("rules[%d]", i)
		if rf.ID != "" {
			where += " (" + rf.ID + ")"
		}
		if i < len(lines) {
			where = fmt.Sprintf("line %d: %s", lines[i], where)
		}
		r, err := rf.rule(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, where, err)
		}
		if p.byID[r.ID] != nil {
			return nil, fmt.Errorf("%s: %s: id: %q is used by another rule", file, where, r.ID)
		}
		p.byID[r.ID] = r
		p.Rules = append(p.Rules, r)
	}
	if err := p.checkRequires(f.Requires, fail); err != nil {
		return nil, err
	}
	p.builtin = map[string]string{}
	for id, text := range defaultBuiltinSources {
		p.builtin[id] = text
	}
	for id, text := range f.BuiltinSources {
		if _, ok := defaultBuiltinSources[id]; !ok {
			return nil, fail("builtin_sources", "%q is not a rule the dispatcher applies itself (%s)", id, strings.Join(BuiltinRules, ", "))
		}
		if p.byID[id] != nil {
			return nil, fail("builtin_sources", "%q is also the id of a rule", id)
		}
		if strings.TrimSpace(text) == "" {
			return nil, fail("builtin_sources."+id, "empty: state the law or instruction it implements")
		}
		p.builtin[id] = strings.TrimSpace(text)
	}
	p.Version = hex.EncodeToString(version.Sum(nil))[:16]
	p.index()
	// The first zone lookup loads phonenumbers' table: do it now, not on
	// the first intent.
	_, _ = phonenumbers.GetTimezonesForPrefix("+1")
	return p, nil
}

// checkRequires reads the profile's required fields and the rules that
// need them: a holiday rule needs a calendar (or uncovered_year: ordinary),
// and a rule counting per debt needs debt_id on every channel it applies
// to, so that no rule can become no rule for an intent that lacks a field.
func (p *Profile) checkRequires(req map[string][]string, fail func(field, format string, args ...any) error) error {
	p.requires = map[intent.Channel][]requirement{}
	chans := make([]string, 0, len(req))
	for c := range req {
		chans = append(chans, c)
	}
	slices.Sort(chans)
	for _, c := range chans {
		ch := intent.Channel(c)
		if !ch.Known() {
			return fail("requires", "unknown channel %q (known: %s)", c, channelList())
		}
		for i, field := range req[c] {
			if !slices.Contains(requirableFields, field) {
				return fail(fmt.Sprintf("requires.%s[%d]", c, i), "%q is not a field a profile can require (%s)", field, strings.Join(requirableFields, ", "))
			}
			p.requires[ch] = append(p.requires[ch], requirement{field: field, why: "required by the profile"})
		}
	}
	for _, r := range p.Rules {
		if r.Kind == KindHoliday {
			p.holidayRules = true
			if p.cal == nil && !p.uncoveredOrdinary {
				return fail("holidays", "rule %s is a holiday rule and no calendar is listed: list one, or set uncovered_year: ordinary to treat days no calendar covers as ordinary days", r.ID)
			}
		}
		if r.Stream.Scope != ScopeDebt {
			continue
		}
		for _, ch := range r.Channels {
			i := slices.IndexFunc(p.requires[ch], func(q requirement) bool { return q.field == "debt_id" })
			if i < 0 {
				return fail("requires", "rule %s counts per debt on %s: add debt_id under requires.%s, or an intent without one would pass the rule unchecked", r.ID, ch, ch)
			}
			if p.requires[ch][i].why == "required by the profile" {
				p.requires[ch][i].why = "rule " + r.ID + " counts per debt"
			}
		}
	}
	return nil
}

// rule checks one rule against the profile so far.
func (rf *ruleFile) rule(p *Profile) (*Rule, error) {
	r := &Rule{ID: rf.ID, Kind: rf.Kind, Source: strings.TrimSpace(rf.Source)}
	if !validName(rf.ID) {
		return nil, fmt.Errorf("id: %q must be letters, digits, '.', '_' or '-'", rf.ID)
	}
	if r.Source == "" {
		return nil, errors.New("source: required: the law, regulation or standard the rule implements")
	}
	if len(rf.Channels) == 0 {
		return nil, errors.New("channels: required: the channels the rule applies to")
	}
	for i, c := range rf.Channels {
		ch := intent.Channel(c)
		if !ch.Known() {
			return nil, fmt.Errorf("channels[%d]: unknown channel %q (known: %s)", i, c, channelList())
		}
		if slices.Contains(r.Channels, ch) {
			return nil, fmt.Errorf("channels[%d]: %q listed twice", i, c)
		}
		r.Channels = append(r.Channels, ch)
	}

	// Each kind has its own fields; one left from another kind is a
	// misunderstanding worth stopping for.
	used := map[string]bool{
		"from": rf.From != "", "to": rf.To != "", "days": rf.Days != "",
		"counts": rf.Counts != nil, "limit": rf.Limit != nil, "per": rf.Per != "", "gap": rf.Gap != "",
	}
	var fields []string
	switch rf.Kind {
	case KindWindow:
		fields = []string{"from", "to"}
	case KindHoliday:
		fields = []string{"days"}
	case KindCap:
		fields = []string{"counts", "limit", "per"}
	case KindGap:
		fields = []string{"counts", "gap"}
	default:
		return nil, fmt.Errorf("kind: unknown rule kind %q (known: %s, %s, %s, %s)", rf.Kind, KindWindow, KindHoliday, KindCap, KindGap)
	}
	for _, k := range []string{"from", "to", "days", "counts", "limit", "per", "gap"} {
		if slices.Contains(fields, k) {
			if !used[k] {
				return nil, fmt.Errorf("%s: required for a %s rule", k, rf.Kind)
			}
		} else if used[k] {
			return nil, fmt.Errorf("%s: not used by a %s rule (it takes %s)", k, rf.Kind, strings.Join(fields, ", "))
		}
	}

	var err error
	switch rf.Kind {
	case KindWindow:
		if r.From, err = clock("from", rf.From, false); err != nil {
			return nil, err
		}
		if r.To, err = clock("to", rf.To, true); err != nil {
			return nil, err
		}
		if r.From == r.To || (r.From == 0 && r.To == 24*60) {
			return nil, fmt.Errorf("to: a window from %s to %s forbids nothing or everything", rf.From, rf.To)
		}
	case KindHoliday:
		switch rf.Days {
		case DaysHolidays:
			if p.cal == nil {
				return nil, errors.New("days: holidays needs a holiday calendar: list one under holidays")
			}
		case DaysNonWorking:
		default:
			return nil, fmt.Errorf("days: %q must be %s or %s", rf.Days, DaysHolidays, DaysNonWorking)
		}
		r.Days = rf.Days
	case KindCap, KindGap:
		if r.Stream, err = rf.Counts.stream(r.Channels); err != nil {
			return nil, err
		}
		if rf.Kind == KindGap {
			r.Limit = 1
			if r.Sliding, err = span("gap", rf.Gap); err != nil {
				return nil, err
			}
			break
		}
		if r.Limit = *rf.Limit; r.Limit < 1 {
			return nil, fmt.Errorf("limit: %d must be 1 or more", r.Limit)
		}
		if rf.Per == PerCalendarDay {
			r.CalendarDay = true
		} else if r.Sliding, err = span("per", rf.Per); err != nil {
			return nil, fmt.Errorf("%w, or %s", err, PerCalendarDay)
		}
	}
	return r, nil
}

// stream checks the counts of a cap or gap rule applying to channels.
func (sf *streamFile) stream(channels []intent.Channel) (Stream, error) {
	s := Stream{Event: sf.Event, Channel: sf.Channel, Scope: sf.Scope}
	switch s.Event {
	case EventAttempt, EventConnected, EventConversation:
	default:
		return s, fmt.Errorf("counts.event: %q must be %s, %s or %s", s.Event, EventAttempt, EventConnected, EventConversation)
	}
	if s.Channel != ChannelAny && !intent.Channel(s.Channel).Known() {
		return s, fmt.Errorf("counts.channel: unknown channel %q (known: %s, or %s)", s.Channel, channelList(), ChannelAny)
	}
	switch s.Scope {
	case ScopeDebtor, ScopeDebt:
	case ScopeNumber:
		if s.Channel != ChannelAny && !phoneChannel(intent.Channel(s.Channel)) {
			return s, fmt.Errorf("counts.scope: %s needs a phone channel, not %s", ScopeNumber, s.Channel)
		}
		for _, ch := range channels {
			if !phoneChannel(ch) {
				return s, fmt.Errorf("counts.scope: %s applies to phone channels only, and channels lists %s", ScopeNumber, ch)
			}
		}
	default:
		return s, fmt.Errorf("counts.scope: %q must be %s, %s or %s", s.Scope, ScopeDebtor, ScopeDebt, ScopeNumber)
	}
	// Connected calls and conversations are counted in one stream each
	// (store.ContactStream): a rule reading any other would count nothing,
	// ever — a rule that silently never applies.
	switch {
	case s.Event == EventConnected && (s.Channel != string(intent.Voice) || s.Scope != ScopeDebtor):
		return s, fmt.Errorf("counts: connected calls are counted per debtor on voice only (channel: voice, scope: %s), not channel %s scope %s", ScopeDebtor, s.Channel, s.Scope)
	case s.Event == EventConversation && (s.Channel == ChannelAny || s.Scope != ScopeDebt):
		return s, fmt.Errorf("counts: conversations are counted per debt on the channel they took place on (a channel, scope: %s), not channel %s scope %s", ScopeDebt, s.Channel, s.Scope)
	}
	return s, nil
}

// clock parses "HH:MM" as minutes after midnight; 24:00 only if end.
func clock(field, s string, end bool) (int, error) {
	bad := func() (int, error) {
		if end {
			return 0, fmt.Errorf("%s: %q must be a time of day from 00:01 to 24:00, like 22:00", field, s)
		}
		return 0, fmt.Errorf("%s: %q must be a time of day from 00:00 to 23:59, like 08:00", field, s)
	}
	if len(s) != 5 || s[2] != ':' {
		return bad()
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || s[0] == '+' || s[3] == '+' || m < 0 || m > 59 || h < 0 {
		return bad()
	}
	v := h*60 + m
	if v > 24*60 || (v == 24*60 && !end) || (v == 0 && end) {
		return bad()
	}
	return v, nil
}

// span parses a positive span: a Go duration (90m, 1h, 168h) or whole days
// (7d, which is 168h, sliding: not calendar days).
func span(field, s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if days, err = strconv.Atoi(n); err == nil {
			d = time.Duration(days) * 24 * time.Hour
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 || d > maxSpan {
		return 0, fmt.Errorf("%s: %q must be a span like 1h, 24h or 7d, up to 366d", field, s)
	}
	return d, nil
}

// index computes each channel's rules and boundaries once.
func (p *Profile) index() {
	for _, ch := range intent.Channels {
		cr := &p.byChannel[channelIndex(ch)]
		cr.bounds = []int64{0}
		for _, r := range p.Rules {
			if !r.Applies(ch) {
				continue
			}
			switch r.Kind {
			case KindWindow:
				cr.timed = append(cr.timed, r)
				for _, m := range []int{r.From, r.To} {
					if b := int64(m%(24*60)) * 60; !slices.Contains(cr.bounds, b) {
						cr.bounds = append(cr.bounds, b)
					}
				}
			case KindHoliday:
				cr.timed = append(cr.timed, r)
			default:
				cr.counts = append(cr.counts, r)
				cr.days = cr.days || r.CalendarDay
			}
		}
		slices.Sort(cr.bounds)
		cr.windows = &channelRules{bounds: cr.bounds}
		for _, r := range cr.timed {
			if r.Kind == KindWindow {
				cr.windows.timed = append(cr.windows.timed, r)
			}
		}
	}
}

// ruleLines returns the line of each item of the top-level rules list, so
// errors can point at it; best effort.
func ruleLines(data []byte) []int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "rules" && m.Content[i+1].Kind == yaml.SequenceNode {
			var lines []int
			for _, n := range m.Content[i+1].Content {
				lines = append(lines, n.Line)
			}
			return lines
		}
	}
	return nil
}

// validName accepts names used as file names and ids: letters, digits,
// '.', '_' and '-', not starting with '.'.
func validName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func channelList() string {
	names := make([]string, len(intent.Channels))
	for i, c := range intent.Channels {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}
