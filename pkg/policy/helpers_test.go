package policy

import (
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // zone names load on machines without a zoneinfo database

	"github.com/contactd/dispatcher/configs"
)

var (
	shanghai   = mustZone("Asia/Shanghai")
	newYork    = mustZone("America/New_York")
	chicago    = mustZone("America/Chicago")
	losAngeles = mustZone("America/Los_Angeles")
	boise      = mustZone("America/Boise")
	london     = mustZone("Europe/London")
	lordHowe   = mustZone("Australia/Lord_Howe")
	havana     = mustZone("America/Havana")
)

func mustZone(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// profiles are loaded once: tests only read them.
var (
	profilesOnce sync.Once
	profiles     map[string]*Profile
	profilesErr  error
)

// profile returns a shipped profile by name, or the test profile "dst"
// (testdata/profiles/dst.yaml).
func profile(t testing.TB, name string) *Profile {
	t.Helper()
	profilesOnce.Do(func() {
		profiles = map[string]*Profile{}
		for _, n := range []string{"cn-bank", "us-regf", "testdata/profiles/dst.yaml", "testdata/profiles/cn-first.yaml"} {
			p, err := Load(configs.FS, n)
			if err != nil {
				profilesErr = err
				return
			}
			profiles[p.Name] = p
		}
	})
	if profilesErr != nil {
		t.Fatal(profilesErr)
	}
	p := profiles[name]
	if p == nil {
		t.Fatalf("no profile %q", name)
	}
	return p
}

// local parses "2006-01-02 15:04:05" in loc; only for times that exist
// once.
func local(loc *time.Location, s string) time.Time {
	t, err := time.ParseInLocation(time.DateTime, s, loc)
	if err != nil {
		panic(err)
	}
	return t
}

// utc parses "2006-01-02 15:04:05" in UTC.
func utc(s string) time.Time { return local(time.UTC, s) }

// ruleID is r's id, or "" for nil.
func ruleID(r *Rule) string {
	if r == nil {
		return ""
	}
	return r.ID
}
