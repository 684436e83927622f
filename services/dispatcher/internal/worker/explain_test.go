package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
)

// Every decision names the profile version that made it, the rules it
// evaluated with their counts and limits, and the legal source of the rule
// that decided; a send names the source of every rule that could have
// blocked it. Built-in rules (opt-out, do-not-contact, expires_at) carry the
// sources the profile states for them.
func TestDecisionsExplained(t *testing.T) {
	ctx := context.Background()
	prof := loadProfile(t, "cn-bank")
	if len(prof.Version) != 16 {
		t.Fatalf("profile version %q", prof.Version)
	}
	decide := func(t *testing.T, f *fixture, in func(*testing.T, *fixture)) (status.Event, status.Record) {
		t.Helper()
		if in != nil {
			in(t, f)
		}
		i := sampleIntent("I-explain")
		recs, err := f.w.Decide(ctx, msgOf(t, i))
		if err != nil {
			t.Fatal(err)
		}
		evs := events(t, recs)
		if len(evs) == 0 {
			t.Fatal("no status event")
		}
		return evs[0], f.record(t, i.ID)
	}
	newF := func() *fixture {
		f := newFixture(t, true)
		f.w.Profile = prof
		f.now = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC) // 11:00 in Shanghai
		return f
	}

	t.Run("a send names every rule that could have blocked it", func(t *testing.T) {
		ev, rec := decide(t, newF(), nil)
		if ev.State != status.Sending || ev.Rule != "allowed" || ev.Version != prof.Version {
			t.Fatalf("event %+v, want sending/allowed under version %s", ev, prof.Version)
		}
		for _, id := range []string{"cn.quiet-hours", "cn.sms.daily", "cn.min-gap", policy.RuleOptOut, policy.RuleDoNotContact, policy.RuleExpiresAt} {
			if s := ev.Sources[id]; s == "" || s != prof.Source(id) {
				t.Errorf("sources[%s] = %q, want the profile's %q", id, s, prof.Source(id))
			}
		}
		if _, ok := ev.Sources["cn.voice.holidays"]; ok {
			t.Error("a voice rule listed among the sources of an SMS")
		}
		var daily *status.Check
		for i, c := range rec.Timeline[0].Inputs.Checks {
			if c.Rule == "cn.sms.daily" {
				daily = &rec.Timeline[0].Inputs.Checks[i]
			}
		}
		if daily == nil || daily.Limit != 2 || daily.Per != policy.PerCalendarDay || daily.Count == nil || *daily.Count != 0 {
			t.Errorf("stored check of cn.sms.daily %+v, want count 0 of limit 2 per calendar_day", daily)
		}
		if rec.Timeline[0].Sources != nil {
			t.Error("Redis keeps the sources' texts with every record; they belong to the version")
		}
	})
	t.Run("a deferral counts what it counted", func(t *testing.T) {
		f := newF()
		ev, _ := decide(t, f, func(t *testing.T, f *fixture) {
			for i, id := range []string{"I-a", "I-b"} {
				f.now = time.Date(2026, 11, 23, 1+2*i, 0, 0, 0, time.UTC)
				in := sampleIntent(id)
				if _, err := f.w.Decide(ctx, msgOf(t, in)); err != nil {
					t.Fatal(err)
				}
			}
			f.now = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
		})
		if ev.State != status.Deferred || ev.Rule != "cn.sms.daily" || ev.Source != prof.Source("cn.sms.daily") {
			t.Fatalf("event %+v, want deferred by cn.sms.daily with its source", ev)
		}
		found := false
		for _, c := range ev.Inputs.Checks {
			if c.Rule == "cn.sms.daily" && c.Count != nil && *c.Count == 2 && c.Limit == 2 {
				found = true
			}
		}
		if !found {
			t.Errorf("checks %+v: cn.sms.daily not at 2 of 2", ev.Inputs.Checks)
		}
	})
	for _, c := range []struct {
		name, field, rule, source string
	}{
		{"an opt-out", "sms", policy.RuleOptOut, "个人信息保护法"},
		{"do-not-contact", "dnc", policy.RuleDoNotContact, "do-not-contact register"},
	} {
		t.Run(c.name+" names its source", func(t *testing.T) {
			ev, _ := decide(t, newF(), func(t *testing.T, f *fixture) { f.optOut(t, c.field) })
			if ev.State != status.Suppressed || ev.Rule != c.rule || !strings.Contains(ev.Source, c.source) || ev.Version != prof.Version {
				t.Errorf("event %+v, want suppressed by %s citing %q", ev, c.rule, c.source)
			}
		})
	}
	t.Run("expired on arrival names expires_at", func(t *testing.T) {
		f := newF()
		f.now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		ev, rec := decide(t, f, nil)
		if ev.State != status.Suppressed || ev.Reason != status.ReasonExpired || ev.Rule != policy.RuleExpiresAt || ev.Source == "" || ev.Version != prof.Version {
			t.Errorf("event %+v, want suppressed/expired by expires_at with its source", ev)
		}
		if e := rec.Timeline[0]; e.Rule != policy.RuleExpiresAt || e.Version != prof.Version {
			t.Errorf("stored entry %+v lacks the rule or the version", e)
		}
	})
}
