package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/6tail/lunar-go/HolidayUtil"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/intent"
)

// The shipped Chinese calendars say, for every day of each year they cover,
// what the holiday tables of github.com/6tail/lunar-go (which copy the State
// Council's notices) say: a day off, a make-up working day, or neither.
func TestCalendarsMatchLunarGo(t *testing.T) {
	p := profile(t, "cn-bank")
	for _, year := range []int{2026, 2027} {
		if !p.CoversYear(year) {
			t.Fatalf("cn-bank does not cover %d", year)
		}
		off, work := 0, 0
		for d := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() == year; d = d.AddDate(0, 0, 1) {
			dn := d.Unix() / day
			got := p.cal.kinds[dn-p.cal.first]
			want := dayNormal
			if h := HolidayUtil.GetHolidayByYmd(d.Year(), int(d.Month()), d.Day()); h != nil {
				want = dayOff
				if h.IsWork() {
					want = dayWorking
				}
			}
			if got != want {
				t.Errorf("%s: our calendar says %s, lunar-go says %s", d.Format(time.DateOnly), kindName(got), kindName(want))
			}
			switch got {
			case dayOff:
				off++
			case dayWorking:
				work++
			}
		}
		if off < 20 || work < 4 {
			t.Errorf("%d: %d days off and %d make-up days: the calendar looks empty", year, off, work)
		}
	}
}

func kindName(k byte) string {
	return map[byte]string{dayNormal: "an ordinary day", dayOff: "a day off", dayWorking: "a make-up working day"}[k]
}

// A voice call held at 22:30 on New Year's Eve waits out the 2027 New Year
// holiday: it is not released on 2027-01-01.
func TestHolidayAcrossTheYearBoundary(t *testing.T) {
	p := profile(t, "cn-bank")
	d := p.Window(intent.Voice, []*time.Location{shanghai}, local(shanghai, "2026-12-31 22:30:00"))
	if d.Allowed || d.Next.IsZero() {
		t.Fatalf("decision %+v, want a deferral", d)
	}
	if want := local(shanghai, "2027-01-04 08:00:00"); !d.Next.Equal(want) {
		t.Errorf("next %s, want %s (01-01..01-03 are days off)", d.Next.In(shanghai), want)
	}
	for _, at := range []string{"2027-01-01 10:00:00", "2027-02-05 10:00:00", "2027-02-13 10:00:00", "2027-06-09 10:00:00", "2027-10-07 10:00:00"} {
		if d := p.Window(intent.Voice, []*time.Location{shanghai}, local(shanghai, at)); d.Allowed || d.Rule.ID != "cn.voice.holidays" {
			t.Errorf("%s: voice allowed=%v rule=%v, want forbidden by cn.voice.holidays", at, d.Allowed, d.Rule)
		}
	}
	// A make-up working day is an ordinary day for a holidays rule.
	if d := p.Window(intent.Voice, []*time.Location{shanghai}, local(shanghai, "2027-02-14 10:00:00")); !d.Allowed {
		t.Errorf("2027-02-14 (a make-up working Sunday): voice forbidden by %v", d.Rule)
	}
}

// In a year no calendar covers, a holiday rule forbids every day and says
// why; channels it does not restrict go on.
func TestUncoveredYearFailsSafe(t *testing.T) {
	p := profile(t, "cn-bank")
	at := local(shanghai, "2028-01-04 10:00:00") // a Tuesday
	d := p.Window(intent.Voice, []*time.Location{shanghai}, at)
	if d.Allowed || d.Rule == nil || d.Rule.ID != "cn.voice.holidays" || d.Note != "calendar does not cover 2028" {
		t.Fatalf("voice in 2028: allowed=%v rule=%v note=%q, want cn.voice.holidays with the calendar's gap named", d.Allowed, d.Rule, d.Note)
	}
	if !d.Next.IsZero() {
		t.Errorf("voice in 2028 released at %s: no day of 2028 is known to be allowed", d.Next)
	}
	if d := p.Window(intent.SMS, []*time.Location{shanghai}, at); !d.Allowed {
		t.Errorf("sms in 2028 forbidden by %v: no holiday rule restricts it", d.Rule)
	}
	// Deferred on the last evening that is covered: never released into the
	// uncovered year.
	if d := p.Window(intent.Voice, []*time.Location{shanghai}, local(shanghai, "2027-12-31 22:30:00")); !d.Next.IsZero() {
		t.Errorf("deferred at 2027-12-31 22:30, released at %s, inside the uncovered year", d.Next.In(shanghai))
	}
	// A covered day's decision carries no note.
	if d := p.Window(intent.Voice, []*time.Location{shanghai}, local(shanghai, "2027-01-01 10:00:00")); d.Note != "" {
		t.Errorf("note %q on a covered holiday", d.Note)
	}

	// A profile may choose ordinary days instead; it then never warns.
	fsys := fstest.MapFS{
		"profiles/cn-bank.yaml": {Data: []byte(strings.Replace(base, "holidays: [cn-2026]\n", "holidays: [cn-2026]\nuncovered_year: ordinary\n", 1))},
		"holidays/cn-2026.yaml": {Data: []byte(calendar2026)},
	}
	op, err := Load(fsys, "cn-bank")
	if err != nil {
		t.Fatal(err)
	}
	if d := op.Window(intent.Voice, []*time.Location{shanghai}, local(shanghai, "2027-01-05 10:00:00")); !d.Allowed {
		t.Errorf("uncovered_year: ordinary, 2027-01-05 forbidden by %v", d.Rule)
	}
	if _, ok := op.CoveredUntil(at); ok {
		t.Error("uncovered_year: ordinary still reports a coverage end")
	}
}

func TestCalendarCoverage(t *testing.T) {
	p := profile(t, "cn-bank")
	until, ok := p.CoveredUntil(local(shanghai, "2026-12-02 12:00:00"))
	if want := local(shanghai, "2028-01-01 00:00:00"); !ok || !until.Equal(want) {
		t.Errorf("covered until %s (%v), want %s", until, ok, want)
	}
	within := 60 * 24 * time.Hour
	for _, c := range []struct {
		at, want string
	}{
		{"2027-10-01 12:00:00", ""},
		{"2027-11-02 12:00:00", "end on 2027-12-31"},
		{"2028-01-02 12:00:00", "do not cover 2028"},
	} {
		got := p.CalendarWarning(local(shanghai, c.at), within)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("warning at %s = %q, want one containing %q", c.at, got, c.want)
		}
	}
	if _, ok := profile(t, "us-regf").CoveredUntil(time.Now()); ok {
		t.Error("us-regf has no holiday rule and reports a calendar coverage end")
	}
}

// A bank adds next year's file to its configuration directory: the family
// name picks it up with no profile edit; a bad date is an error naming the
// file and the field.
func TestCalendarFamilyFromDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"profiles", "holidays"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(from, to string) {
		b, err := configs.FS.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("profiles/cn-bank.yaml", "profiles/cn-bank.yaml")
	copyFile("holidays/cn-2026.yaml", "holidays/cn-2026.yaml")
	copyFile("holidays/cn-2027.yaml", "holidays/cn-2027.yaml")
	cal2028 := "name: cn-2028\nsource: test notice\nyear: 2028\ndays_off:\n  - name: New Year\n    from: 2028-01-01\n    to: 2028-01-03\n"
	if err := os.WriteFile(filepath.Join(dir, "holidays/cn-2028.yaml"), []byte(cal2028), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(os.DirFS(dir), "cn-bank")
	if err != nil {
		t.Fatal(err)
	}
	if !p.CoversYear(2028) || strings.Join(p.Calendars(), ",") != "cn-2026,cn-2027,cn-2028" {
		t.Fatalf("calendars %v, want cn-2026..cn-2028", p.Calendars())
	}
	if d := p.Window(intent.Voice, []*time.Location{shanghai}, local(shanghai, "2028-01-04 10:00:00")); !d.Allowed {
		t.Errorf("2028-01-04 forbidden by %v once cn-2028 is added", d.Rule)
	}

	for _, bad := range []struct{ text, want string }{
		{strings.Replace(cal2028, "to: 2028-01-03", "to: 2028-02-30", 1), `holidays/cn-2028.yaml: days_off[0]: to: "2028-02-30" is not a date`},
		{strings.Replace(cal2028, "year: 2028", "year: 2029", 1), "not in 2029"},
		{strings.Replace(cal2028, "name: cn-2028", "name: cn-2029", 1), `"cn-2029" must be the file's name`},
	} {
		if err := os.WriteFile(filepath.Join(dir, "holidays/cn-2028.yaml"), []byte(bad.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(os.DirFS(dir), "cn-bank")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("error %v, want one containing %q", err, bad.want)
		}
	}
}

// us-regf counts calls per debt: a call without debt_id is a field error
// naming the rule, never a call that passes its caps unchecked; and a
// profile that counts per debt without requiring debt_id does not load.
func TestRequiredFields(t *testing.T) {
	p := profile(t, "us-regf")
	in := intent.Intent{ID: "I-1", DebtorID: "D-1", Channels: []intent.Channel{intent.SMS, intent.Voice}}
	err := p.Require(in)
	ie, ok := err.(*intent.Error)
	if !ok || len(ie.Fields) != 1 || ie.Fields[0].Field != "debt_id" || ie.Fields[0].Code != "required_by_profile" ||
		!strings.Contains(ie.Fields[0].Message, "regf.call-frequency") || !strings.Contains(ie.Fields[0].Message, "voice") {
		t.Fatalf("Require = %v, want a debt_id field error naming regf.call-frequency", err)
	}
	in.DebtID = "L-1"
	if err := p.Require(in); err != nil {
		t.Errorf("with debt_id: %v", err)
	}
	if err := p.Require(intent.Intent{ID: "I-2", DebtorID: "D-1", Channels: []intent.Channel{intent.SMS}}); err != nil {
		t.Errorf("sms without debt_id: %v (only voice needs it)", err)
	}

	b, err := configs.FS.ReadFile("profiles/us-regf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	noReq := strings.Replace(string(b), "requires:\n  voice: [debt_id]\n", "", 1)
	if noReq == string(b) {
		t.Fatal("us-regf.yaml no longer has the requires block this test removes")
	}
	_, err = Load(fstest.MapFS{"profiles/us-regf.yaml": {Data: []byte(noReq)}}, "us-regf")
	if err == nil || !strings.Contains(err.Error(), "requires") || !strings.Contains(err.Error(), "regf.call-frequency") {
		t.Errorf("a per-debt rule without requires loaded (err %v)", err)
	}
	_, err = Load(fstest.MapFS{"profiles/us-regf.yaml": {Data: []byte(strings.Replace(string(b), "voice: [debt_id]", "voice: [debt]", 1))}}, "us-regf")
	if err == nil || !strings.Contains(err.Error(), `requires.voice[0]: "debt"`) {
		t.Errorf("an unknown required field: err %v", err)
	}
}
