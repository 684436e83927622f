package policy

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/intent"
)

func TestLoadShipped(t *testing.T) {
	type ruleWant struct {
		id, kind, channels string
		from, to           int
		days, stream       string
		limit              int
		sliding            time.Duration
		calendarDay        bool
		source             string
	}
	all := "sms,voice,email,wechat"
	cases := []struct {
		name, zone, policy string
		jitter             time.Duration
		year2026           bool
		rules              []ruleWant
	}{
		{name: "cn-bank", zone: "Asia/Shanghai", policy: ZoneAllKnown, jitter: 30 * time.Minute, year2026: true, rules: []ruleWant{
			{id: "cn.quiet-hours", kind: KindWindow, channels: all, from: 8 * 60, to: 22 * 60, source: "GB/T 45251—2025"},
			{id: "cn.voice.holidays", kind: KindHoliday, channels: "voice", days: DaysHolidays, source: "GB/T 45251—2025"},
			{id: "cn.voice.connected-daily", kind: KindCap, channels: "voice", stream: "connected:voice:debtor", limit: 3, calendarDay: true, source: "GB/T 45251—2025"},
			{id: "cn.voice.attempts-per-number-daily", kind: KindCap, channels: "voice", stream: "attempt:voice:number", limit: 6, calendarDay: true, source: "GB/T 45251—2025"},
			{id: "cn.sms.daily", kind: KindCap, channels: "sms", stream: "attempt:sms:debtor", limit: 2, calendarDay: true, source: "GB/T 45251—2025"},
			{id: "cn.wechat.daily", kind: KindCap, channels: "wechat", stream: "attempt:wechat:debtor", limit: 2, calendarDay: true, source: "GB/T 45251—2025"},
			{id: "cn.min-gap", kind: KindGap, channels: all, stream: "attempt:any:debtor", limit: 1, sliding: time.Hour, source: "GB/T 45251—2025"},
		}},
		{name: "us-regf", zone: "America/New_York", policy: ZoneAllKnown, jitter: 30 * time.Minute, rules: []ruleWant{
			{id: "regf.convenient-hours", kind: KindWindow, channels: "voice,sms,email,wechat", from: 8 * 60, to: 21 * 60, source: "12 CFR 1006.6(b)(1)(i)"},
			{id: "regf.call-frequency", kind: KindCap, channels: "voice", stream: "attempt:voice:debt", limit: 7, sliding: 168 * time.Hour, source: "12 CFR 1006.14(b)(2)(i)(A)"},
			{id: "regf.after-conversation", kind: KindCap, channels: "voice", stream: "conversation:voice:debt", limit: 1, sliding: 168 * time.Hour, source: "12 CFR 1006.14(b)(2)(i)(B)"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load(configs.FS, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tc.name || p.DefaultZone.String() != tc.zone || p.ZonePolicy() != tc.policy || p.Jitter != tc.jitter || p.Description == "" {
				t.Errorf("profile = %s %s %s %v %q", p.Name, p.DefaultZone, p.ZonePolicy(), p.Jitter, p.Description)
			}
			if p.CoversYear(2026) != tc.year2026 || p.CoversYear(2027) != tc.year2026 || p.CoversYear(2028) {
				t.Errorf("CoversYear(2026) = %v, CoversYear(2027) = %v, CoversYear(2028) = %v", p.CoversYear(2026), p.CoversYear(2027), p.CoversYear(2028))
			}
			if len(p.Rules) != len(tc.rules) {
				t.Fatalf("%d rules, want %d", len(p.Rules), len(tc.rules))
			}
			for i, w := range tc.rules {
				r := p.Rules[i]
				var chans []string
				for _, c := range r.Channels {
					chans = append(chans, string(c))
				}
				stream := ""
				if r.Kind == KindCap || r.Kind == KindGap {
					stream = r.Stream.String()
				}
				got := ruleWant{id: r.ID, kind: r.Kind, channels: strings.Join(chans, ","), from: r.From, to: r.To, days: r.Days,
					stream: stream, limit: r.Limit, sliding: r.Sliding, calendarDay: r.CalendarDay, source: w.source}
				if got != w {
					t.Errorf("rule %d = %+v\nwant %+v", i, got, w)
				}
				if !strings.Contains(r.Source, w.source) {
					t.Errorf("rule %s source %q does not cite %q", r.ID, r.Source, w.source)
				}
				if p.Rule(w.id) != r {
					t.Errorf("Rule(%q) is not the rule in the list", w.id)
				}
			}
			if p.Rule("nope") != nil {
				t.Error("Rule(nope) found something")
			}
		})
	}
}

// Every number in a shipped profile has a comment naming its rule.
func TestShippedNumbersCommented(t *testing.T) {
	number := regexp.MustCompile(`^\s*(limit|from|to|gap|jitter|per):\s*("?[0-9][^#]*?"?)\s*(#.*)?$`)
	for _, name := range []string{"cn-bank", "us-regf"} {
		t.Run(name, func(t *testing.T) {
			b, err := fs.ReadFile(configs.FS, "profiles/"+name+".yaml")
			if err != nil {
				t.Fatal(err)
			}
			id, found := "", 0
			for n, line := range strings.Split(string(b), "\n") {
				if _, v, ok := strings.Cut(line, "- id: "); ok {
					id = strings.TrimSpace(v)
				}
				m := number.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				found++
				want := id
				if m[1] == "jitter" {
					want = "spreads"
				}
				if m[3] == "" || !strings.Contains(m[3], want) {
					t.Errorf("line %d %q: want a comment naming %s", n+1, line, want)
				}
			}
			if found < 3 {
				t.Errorf("found %d numbers, the pattern is broken", found)
			}
		})
	}
}

// base is a small valid profile the broken ones below change.
const base = `name: cn-bank
description: test
time_zone:
  default: Asia/Shanghai
  policy: intent_first
holidays: [cn-2026]
jitter: 30m
rules:
  - id: w
    kind: window
    channels: [sms, voice]
    from: "08:00"
    to: "22:00"
    source: law
  - id: h
    kind: holiday
    channels: [voice]
    days: holidays
    source: law
  - id: c
    kind: cap
    channels: [voice]
    counts: {event: attempt, channel: voice, scope: number}
    limit: 6
    per: calendar_day
    source: law
  - id: g
    kind: gap
    channels: [sms]
    counts: {event: attempt, channel: any, scope: debtor}
    gap: 1h
    source: law
`

const calendar2026 = `name: cn-2026
source: schedule
year: 2026
days_off:
  - {name: off, from: 2026-01-01, to: 2026-01-03}
working_days:
  - {name: make-up, date: 2026-01-04}
`

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name     string
		old, new string // replace old by new in base ("" old: prepend new)
		calendar string // replaces calendar2026 when set
		want     []string
	}{
		{name: "unknown top-level key", new: "colour: blue\n", want: []string{"colour"}},
		{name: "unknown rule key", old: "    days: holidays\n", new: "    days: holidays\n    weekdays: all\n", want: []string{"weekdays"}},
		{name: "unknown counts key", old: "scope: number}", new: "scope: number, per: day}", want: []string{"per"}},
		{name: "unknown rule kind", old: "kind: gap", new: "kind: spacing", want: []string{"line 27", "rules[3] (g)", "kind", `"spacing"`}},
		{name: "from at 24:00", old: `from: "08:00"`, new: `from: "24:00"`, want: []string{"line 9", "rules[0] (w)", "from", `"24:00"`}},
		{name: "from after 24:00", old: `from: "08:00"`, new: `from: "25:00"`, want: []string{"from", `"25:00"`}},
		{name: "to after 24:00", old: `to: "22:00"`, new: `to: "24:30"`, want: []string{"to", `"24:30"`}},
		{name: "minutes out of range", old: `to: "22:00"`, new: `to: "22:60"`, want: []string{"to"}},
		{name: "not a time", old: `from: "08:00"`, new: `from: "8am"`, want: []string{"from", "8am"}},
		{name: "empty window", old: `to: "22:00"`, new: `to: "08:00"`, want: []string{"to"}},
		{name: "missing source", old: "    to: \"22:00\"\n    source: law\n", new: "    to: \"22:00\"\n", want: []string{"rules[0] (w)", "source"}},
		{name: "blank source", old: "    to: \"22:00\"\n    source: law\n", new: "    to: \"22:00\"\n    source: \"  \"\n", want: []string{"source"}},
		{name: "unknown holiday calendar", old: "holidays: [cn-2026]", new: "holidays: [cn-2099]", want: []string{"holidays[0]", "cn-2099"}},
		{name: "calendar name with a path", old: "holidays: [cn-2026]", new: "holidays: [../cn-2026]", want: []string{"holidays[0]"}},
		{name: "holidays rule without a calendar", old: "holidays: [cn-2026]\n", new: "", want: []string{"rules[1] (h)", "days", "calendar"}},
		{name: "bad uncovered_year", new: "uncovered_year: maybe\n", want: []string{"uncovered_year", `"maybe"`}},
		{name: "unknown required channel", new: "requires: {fax: [debt_id]}\n", want: []string{"requires", `"fax"`}},
		{name: "unknown channel", old: "channels: [sms, voice]", new: "channels: [sms, fax]", want: []string{"channels[1]", `"fax"`}},
		{name: "channel twice", old: "channels: [sms, voice]", new: "channels: [sms, sms]", want: []string{"channels[1]"}},
		{name: "no channels", old: "channels: [sms, voice]", new: "channels: []", want: []string{"channels"}},
		{name: "unknown counts channel", old: "channel: any", new: "channel: pager", want: []string{"counts.channel", "pager"}},
		{name: "unknown event", old: "event: attempt, channel: voice", new: "event: hangup, channel: voice", want: []string{"counts.event", "hangup"}},
		{name: "unknown scope", old: "scope: debtor}", new: "scope: family}", want: []string{"counts.scope", "family"}},
		{name: "number scope on e-mail", old: "channels: [voice]\n    counts: {event: attempt, channel: voice, scope: number}",
			new: "channels: [voice, email]\n    counts: {event: attempt, channel: voice, scope: number}", want: []string{"counts.scope", "email"}},
		{name: "connected calls per number (never counted)", old: "event: attempt, channel: voice, scope: number", new: "event: connected, channel: voice, scope: number",
			want: []string{"rules[2] (c)", "connected calls are counted per debtor on voice"}},
		{name: "connected SMS (never counted)", old: "event: attempt, channel: voice, scope: number", new: "event: connected, channel: sms, scope: debtor",
			want: []string{"connected calls are counted per debtor on voice"}},
		{name: "conversations on any channel (never counted)", old: "event: attempt, channel: voice, scope: number", new: "event: conversation, channel: any, scope: debt",
			want: []string{"conversations are counted per debt"}},
		{name: "conversations per debtor (never counted)", old: "event: attempt, channel: voice, scope: number", new: "event: conversation, channel: voice, scope: debtor",
			want: []string{"conversations are counted per debt"}},
		{name: "zero limit", old: "limit: 6", new: "limit: 0", want: []string{"limit"}},
		{name: "limit not a number", old: "limit: 6", new: "limit: six", want: []string{"six"}},
		{name: "cap without per", old: "    per: calendar_day\n", new: "", want: []string{"rules[2] (c)", "per", "required"}},
		{name: "bad per", old: "per: calendar_day", new: "per: weekly", want: []string{"per", "weekly"}},
		{name: "negative gap", old: "gap: 1h", new: "gap: -1h", want: []string{"gap"}},
		{name: "gap rule with a limit", old: "    gap: 1h\n", new: "    gap: 1h\n    limit: 2\n", want: []string{"rules[3] (g)", "limit", "not used"}},
		{name: "window with days", old: `to: "22:00"`, new: "to: \"22:00\"\n    days: holidays", want: []string{"days", "not used"}},
		{name: "bad days", old: "days: holidays", new: "days: weekends", want: []string{"days", "weekends"}},
		{name: "duplicate id", old: "id: g", new: "id: w", want: []string{"id", `"w"`}},
		{name: "missing id", old: "  - id: g\n", new: "  -\n", want: []string{"rules[3]", "id"}},
		{name: "unknown default zone", old: "default: Asia/Shanghai", new: "default: Asia/Atlantis", want: []string{"time_zone.default", "Asia/Atlantis"}},
		{name: "unknown zone policy", old: "policy: intent_first", new: "policy: first_wins", want: []string{"time_zone.policy", "first_wins"}},
		{name: "bad jitter", old: "jitter: 30m", new: "jitter: soon", want: []string{"jitter"}},
		{name: "name not the file's", old: "name: cn-bank", new: "name: other", want: []string{"name", `"other"`}},
		{name: "no rules", old: base[strings.Index(base, "rules:"):], new: "rules: []\n", want: []string{"rules"}},
		{name: "calendar working day on a weekday", calendar: strings.Replace(calendar2026, "2026-01-04", "2026-01-05", 1),
			want: []string{"holidays/cn-2026.yaml", "working_days[0]", "2026-01-05"}},
		{name: "calendar date outside its year", calendar: strings.Replace(calendar2026, "to: 2026-01-03", "to: 2027-01-03", 1),
			want: []string{"holidays/cn-2026.yaml", "days_off[0]", "2027-01-03"}},
		{name: "calendar range backwards", calendar: strings.Replace(calendar2026, "from: 2026-01-01, to: 2026-01-03", "from: 2026-01-03, to: 2026-01-01", 1),
			want: []string{"days_off[0]", "to"}},
		{name: "calendar without source", calendar: strings.Replace(calendar2026, "source: schedule\n", "", 1),
			want: []string{"holidays/cn-2026.yaml", "source"}},
		{name: "calendar unknown key", calendar: calendar2026 + "region: cn\n", want: []string{"holidays/cn-2026.yaml", "region"}},
		{name: "calendar working day also off", calendar: strings.Replace(calendar2026, "2026-01-04", "2026-01-03", 1),
			want: []string{"working_days[0]", "2026-01-03"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := base
			if tc.old == "" {
				text = tc.new + base
			} else {
				if !strings.Contains(base, tc.old) {
					t.Fatalf("base has no %q", tc.old)
				}
				text = strings.Replace(base, tc.old, tc.new, 1)
			}
			cal := calendar2026
			if tc.calendar != "" {
				text, cal = base, tc.calendar
			}
			fsys := fstest.MapFS{
				"profiles/cn-bank.yaml": {Data: []byte(text)},
				"holidays/cn-2026.yaml": {Data: []byte(cal)},
			}
			_, err := Load(fsys, "cn-bank")
			if err == nil {
				t.Fatal("Load accepted the profile")
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{"profiles/cn-bank.yaml"}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

// The base profile of TestLoadRejects is valid, so each rejection there is
// the change's doing.
func TestLoadBase(t *testing.T) {
	fsys := fstest.MapFS{
		"profiles/cn-bank.yaml": {Data: []byte(base)},
		"holidays/cn-2026.yaml": {Data: []byte(calendar2026)},
	}
	p, err := Load(fsys, "cn-bank")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 4 || p.Rule("c").Limit != 6 || !p.Rule("c").CalendarDay || p.Rule("g").Sliding != time.Hour {
		t.Errorf("rules = %+v", p.Rules)
	}
}

func TestLoadByPath(t *testing.T) {
	cases := []struct {
		path, name string
		rules      int
	}{
		{path: "../../configs/profiles/cn-bank.yaml", name: "cn-bank", rules: 7},
		{path: "../../configs/profiles/us-regf.yaml", name: "us-regf", rules: 3},
		{path: "testdata/profiles/dst.yaml", name: "dst", rules: 5},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			p, err := Load(nil, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tc.name || len(p.Rules) != tc.rules {
				t.Errorf("loaded %s with %d rules", p.Name, len(p.Rules))
			}
		})
	}
	// The calendar next to the file is the one read: Christmas is off in
	// the test profile's calendar only.
	p, err := Load(nil, "testdata/profiles/dst.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Window(intent.WeChat, nil, local(newYork, "2026-12-24 10:00:00")); d.Allowed {
		t.Error("Christmas Eve allowed: testdata/holidays/xmas-2026.yaml not applied")
	}
}

func TestLoadMissing(t *testing.T) {
	cases := []struct {
		name, want string
	}{
		{name: "nosuch", want: "profiles/nosuch.yaml"},
		{name: "testdata/profiles/nosuch.yaml", want: "testdata/profiles/nosuch.yaml"},
		{name: "cn bank", want: `"cn bank"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(configs.FS, tc.name)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%q) error = %v, want one naming %s", tc.name, err, tc.want)
			}
		})
	}
}
