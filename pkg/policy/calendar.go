package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kinds of day in a holiday calendar.
const (
	dayNormal  byte = iota // a weekday is worked, a weekend is not
	dayOff                 // a statutory day off (放假)
	dayWorking             // a weekend day worked to make up for one (调休上班)
)

// calendar is the union of a profile's holiday calendars: the kind of each
// day from the first day of the earliest year to the last of the latest.
type calendar struct {
	names []string
	years map[int]bool
	first int64  // day number (days since 1970-01-01) of kinds[0]
	kinds []byte // day kinds; days outside are dayNormal
}

// forbidden reports whether a holiday rule with the given days forbids local
// day dn (days since 1970-01-01). A day of a year no calendar covers is a
// day off unless ordinary says such days are ordinary: a calendar that runs
// out fails safe.
func (c *calendar) forbidden(days string, dn int64, ordinary bool) bool {
	k := dayNormal
	if c != nil && dn >= c.first && dn < c.first+int64(len(c.kinds)) {
		k = c.kinds[dn-c.first]
	}
	if k == dayOff {
		return true
	}
	if !ordinary && !c.covers(dn) {
		return true
	}
	if days == DaysNonWorking && k != dayWorking {
		wd := floorMod(dn+4, 7) // 1970-01-01 was a Thursday; 0 is Sunday
		return wd == 0 || wd == 6
	}
	return false
}

// covers reports whether a calendar covers the year of local day dn.
func (c *calendar) covers(dn int64) bool {
	return c != nil && c.years[yearOf(dn)]
}

// yearOf is the year of local day dn.
func yearOf(dn int64) int { return time.Unix(dn*day, 0).UTC().Year() }

// calendarFile is the YAML form of configs/holidays/<name>.yaml.
type calendarFile struct {
	Name        string     `yaml:"name"`
	Source      string     `yaml:"source"`
	Year        int        `yaml:"year"`
	DaysOff     []dayRange `yaml:"days_off"`
	WorkingDays []dayRange `yaml:"working_days"`
}

// dayRange is one named day, or a range from From to To inclusive.
type dayRange struct {
	Name string `yaml:"name"`
	Date string `yaml:"date"`
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// parsedCalendar is one calendar file, checked.
type parsedCalendar struct {
	name  string
	year  int
	off   []int64 // day numbers
	works []int64
}

// parseCalendar checks one calendar file; file names it in errors.
func parseCalendar(file, want string, data []byte) (*parsedCalendar, error) {
	var f calendarFile
	if err := decodeStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", file, field, fmt.Sprintf(format, args...))
	}
	if f.Name != want {
		return nil, fail("name", "%q must be the file's name, %q", f.Name, want)
	}
	if f.Source == "" {
		return nil, fail("source", "required: the official schedule this calendar copies")
	}
	if f.Year < 1970 || f.Year > 9999 {
		return nil, fail("year", "%d is not a year", f.Year)
	}
	pc := &parsedCalendar{name: f.Name, year: f.Year}
	offs := map[int64]bool{}
	for i, r := range f.DaysOff {
		field := fmt.Sprintf("days_off[%d]", i)
		from, to, err := r.days(f.Year)
		if err != nil {
			return nil, fail(field, "%v", err)
		}
		for dn := from; dn <= to; dn++ {
			offs[dn] = true
			pc.off = append(pc.off, dn)
		}
	}
	for i, r := range f.WorkingDays {
		field := fmt.Sprintf("working_days[%d]", i)
		from, to, err := r.days(f.Year)
		if err != nil {
			return nil, fail(field, "%v", err)
		}
		for dn := from; dn <= to; dn++ {
			if offs[dn] {
				return nil, fail(field, "%s is also a day off", dayString(dn))
			}
			if wd := floorMod(dn+4, 7); wd != 0 && wd != 6 {
				return nil, fail(field, "%s is a %s: a make-up working day is a Saturday or Sunday", dayString(dn), time.Weekday(wd))
			}
			pc.works = append(pc.works, dn)
		}
	}
	return pc, nil
}

// days returns the day numbers r spans, checking they fall in year.
func (r dayRange) days(year int) (from, to int64, err error) {
	if r.Name == "" {
		return 0, 0, fmt.Errorf("name: required")
	}
	switch {
	case r.Date != "" && r.From == "" && r.To == "":
		from, err = parseDate("date", r.Date, year)
		return from, from, err
	case r.Date == "" && r.From != "" && r.To != "":
		if from, err = parseDate("from", r.From, year); err != nil {
			return 0, 0, err
		}
		if to, err = parseDate("to", r.To, year); err != nil {
			return 0, 0, err
		}
		if to < from {
			return 0, 0, fmt.Errorf("to: %s is before from %s", r.To, r.From)
		}
		return from, to, nil
	}
	return 0, 0, fmt.Errorf("give either date, or from and to")
}

// parseDate parses a YYYY-MM-DD date of year as a day number.
func parseDate(field, s string, year int) (int64, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a date like 2026-01-01", field, s)
	}
	if t.Year() != year {
		return 0, fmt.Errorf("%s: %s is not in %d", field, s, year)
	}
	return t.Unix() / day, nil
}

// dayString formats a day number as YYYY-MM-DD.
func dayString(dn int64) string { return time.Unix(dn*day, 0).UTC().Format(time.DateOnly) }

// merge builds the calendar of several checked files. Two calendars may
// cover the same year only if they agree.
func merge(cals []*parsedCalendar) (*calendar, error) {
	if len(cals) == 0 {
		return nil, nil
	}
	c := &calendar{years: map[int]bool{}}
	lo, hi := int64(1<<62), int64(-1<<62)
	for _, pc := range cals {
		c.names = append(c.names, pc.name)
		c.years[pc.year] = true
		first := time.Date(pc.year, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / day
		last := time.Date(pc.year, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / day
		lo, hi = min(lo, first), max(hi, last)
	}
	c.first = lo
	c.kinds = make([]byte, hi-lo+1)
	set := func(name string, dn int64, k byte) error {
		if old := c.kinds[dn-lo]; old != dayNormal && old != k {
			return fmt.Errorf("holidays: calendar %s disagrees with another about %s", name, dayString(dn))
		}
		c.kinds[dn-lo] = k
		return nil
	}
	for _, pc := range cals {
		for _, dn := range pc.off {
			if err := set(pc.name, dn, dayOff); err != nil {
				return nil, err
			}
		}
		for _, dn := range pc.works {
			if err := set(pc.name, dn, dayWorking); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// decodeStrict decodes one YAML document into v, refusing unknown keys.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	var te *yaml.TypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty file")
	case errors.As(err, &te):
		// yaml names Go types; a compliance officer knows the keys.
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = unknownKey.ReplaceAllString(m, `unknown key "$1"`)
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return err
}

// unknownKey matches yaml's message for a key the struct lacks.
var unknownKey = regexp.MustCompile(`field (\S+) not found in type \S+`)

// floorMod is the remainder with the sign of b.
func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
