package policy

import (
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

type windowCase struct {
	name    string
	profile string
	ch      intent.Channel
	zones   []*time.Location
	now     time.Time
	allowed bool
	next    time.Time // zero: none
	rule    string
	atStart bool
}

func runWindowCases(t *testing.T, cases []windowCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := profile(t, tc.profile)
			d := p.Window(tc.ch, tc.zones, tc.now)
			if d.Allowed != tc.allowed {
				t.Errorf("Allowed = %v, want %v", d.Allowed, tc.allowed)
			}
			if !d.Next.Equal(tc.next) {
				t.Errorf("Next = %v (%v), want %v (%v)", d.Next, d.Next.UTC(), tc.next, tc.next.UTC())
			}
			if got := ruleID(d.Rule); got != tc.rule {
				t.Errorf("Rule = %q, want %q", got, tc.rule)
			}
			if d.AtWindowStart != tc.atStart {
				t.Errorf("AtWindowStart = %v, want %v", d.AtWindowStart, tc.atStart)
			}
			if len(d.Inputs) != max(len(tc.zones), 1) {
				t.Errorf("Inputs = %q, want one per zone", d.Inputs)
			}
		})
	}
}

func TestWindowCNBank(t *testing.T) {
	sh := []*time.Location{shanghai}
	at := func(s string) time.Time { return local(shanghai, s) }
	runWindowCases(t, []windowCase{
		{name: "07:59:59 before opening", profile: "cn-bank", ch: intent.SMS, zones: sh, now: at("2026-11-23 07:59:59"),
			next: at("2026-11-23 08:00:00"), rule: "cn.quiet-hours", atStart: true},
		{name: "08:00:00 opening", profile: "cn-bank", ch: intent.SMS, zones: sh, now: at("2026-11-23 08:00:00"), allowed: true},
		{name: "21:59:59 last second", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-11-23 21:59:59"), allowed: true},
		{name: "22:00:00 closed until tomorrow", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-11-23 22:00:00"),
			next: at("2026-11-24 08:00:00"), rule: "cn.quiet-hours", atStart: true},
		{name: "sub-second before opening", profile: "cn-bank", ch: intent.Email, zones: sh, now: at("2026-11-23 07:59:59").Add(999 * time.Millisecond),
			next: at("2026-11-23 08:00:00"), rule: "cn.quiet-hours", atStart: true},
		{name: "no zones means the default zone", profile: "cn-bank", ch: intent.WeChat, now: at("2026-11-23 23:00:00"),
			next: at("2026-11-24 08:00:00"), rule: "cn.quiet-hours", atStart: true},
		{name: "voice on Spring Festival", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-02-16 10:00:00"),
			next: at("2026-02-24 08:00:00"), rule: "cn.voice.holidays", atStart: true},
		{name: "voice on the first day off at midnight", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-10-01 00:00:00"),
			next: at("2026-10-08 08:00:00"), rule: "cn.quiet-hours", atStart: true},
		{name: "voice on a make-up working Saturday", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-02-14 10:00:00"), allowed: true},
		{name: "voice the night before a make-up day", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-02-13 22:30:00"),
			next: at("2026-02-14 08:00:00"), rule: "cn.quiet-hours", atStart: true},
		{name: "voice after the make-up day skips the festival", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-02-14 22:00:00"),
			next: at("2026-02-24 08:00:00"), rule: "cn.quiet-hours", atStart: true},
		{name: "voice on the last day off", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-10-07 21:00:00"),
			next: at("2026-10-08 08:00:00"), rule: "cn.voice.holidays", atStart: true},
		{name: "voice on an ordinary Sunday", profile: "cn-bank", ch: intent.Voice, zones: sh, now: at("2026-11-22 10:00:00"), allowed: true},
		{name: "sms on a holiday", profile: "cn-bank", ch: intent.SMS, zones: sh, now: at("2026-02-16 10:00:00"), allowed: true},
		{name: "email on National Day", profile: "cn-bank", ch: intent.Email, zones: sh, now: at("2026-10-01 10:00:00"), allowed: true},
		{name: "unknown channel never allowed", profile: "cn-bank", ch: "fax", zones: sh, now: at("2026-11-23 10:00:00")},
	})
}

func TestWindowUSRegF(t *testing.T) {
	ny := []*time.Location{newYork}
	runWindowCases(t, []windowCase{
		{name: "07:59:59 EST", profile: "us-regf", ch: intent.Voice, zones: ny, now: local(newYork, "2026-01-15 07:59:59"),
			next: local(newYork, "2026-01-15 08:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "08:00:00 EST", profile: "us-regf", ch: intent.Voice, zones: ny, now: local(newYork, "2026-01-15 08:00:00"), allowed: true},
		{name: "20:59:59 EST", profile: "us-regf", ch: intent.SMS, zones: ny, now: local(newYork, "2026-01-15 20:59:59"), allowed: true},
		{name: "21:00:00 EST", profile: "us-regf", ch: intent.SMS, zones: ny, now: local(newYork, "2026-01-15 21:00:00"),
			next: local(newYork, "2026-01-16 08:00:00"), rule: "regf.convenient-hours", atStart: true},

		// 2026-03-08: 02:00 EST becomes 03:00 EDT; the night is an hour shorter.
		{name: "21:00 EST before spring forward", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-03-08 02:00:00"),
			next: utc("2026-03-08 12:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "01:59:59 EST at the change", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-03-08 06:59:59"),
			next: utc("2026-03-08 12:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "03:00 EDT just after the change", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-03-08 07:00:00"),
			next: utc("2026-03-08 12:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "07:59:59 EDT spring-forward day", profile: "us-regf", ch: intent.Email, zones: ny, now: utc("2026-03-08 11:59:59"),
			next: utc("2026-03-08 12:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "08:00:00 EDT spring-forward day", profile: "us-regf", ch: intent.Email, zones: ny, now: utc("2026-03-08 12:00:00"), allowed: true},
		{name: "20:59:59 EDT spring-forward day", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-03-09 00:59:59"), allowed: true},
		{name: "21:00:00 EDT spring-forward day", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-03-09 01:00:00"),
			next: utc("2026-03-09 12:00:00"), rule: "regf.convenient-hours", atStart: true},

		// 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:xx happens twice.
		{name: "21:00 EDT before fall back", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-11-01 01:00:00"),
			next: utc("2026-11-01 13:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "01:30 EDT first time", profile: "us-regf", ch: intent.SMS, zones: ny, now: utc("2026-11-01 05:30:00"),
			next: utc("2026-11-01 13:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "01:30 EST second time", profile: "us-regf", ch: intent.SMS, zones: ny, now: utc("2026-11-01 06:30:00"),
			next: utc("2026-11-01 13:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "07:59:59 EST fall-back day", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-11-01 12:59:59"),
			next: utc("2026-11-01 13:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "08:00:00 EST fall-back day", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-11-01 13:00:00"), allowed: true},
		{name: "20:59:59 EST fall-back day", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-11-02 01:59:59"), allowed: true},
		{name: "21:00:00 EST fall-back day", profile: "us-regf", ch: intent.Voice, zones: ny, now: utc("2026-11-02 02:00:00"),
			next: utc("2026-11-02 13:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "wechat gets the same window", profile: "us-regf", ch: intent.WeChat, zones: ny, now: local(newYork, "2026-01-15 21:30:00"),
			next: local(newYork, "2026-01-16 08:00:00"), rule: "regf.convenient-hours", atStart: true},
	})
}

// An Idaho number (area code 208) may be in Boise (Mountain) or in the
// panhandle (Pacific): a call is convenient only when it is in both.
func TestWindowAmbiguousNumber(t *testing.T) {
	p := profile(t, "us-regf")
	idaho := p.Zones(intent.Intent{To: intent.Address{Phone: "+12085550100"}})
	if len(idaho) != 2 || idaho[0] != p.location("America/Boise") || idaho[1] != p.location("America/Los_Angeles") {
		t.Fatalf("Zones(+1208…) = %v, want [America/Boise America/Los_Angeles]", idaho)
	}
	chicagoNY := p.Zones(intent.Intent{Timezone: "America/Chicago", To: intent.Address{Phone: "+12125550100"}})
	if len(chicagoNY) != 2 {
		t.Fatalf("Zones(Chicago, +1212…) = %v, want two zones", chicagoNY)
	}
	runWindowCases(t, []windowCase{
		{name: "07:30 Boise is 06:30 Los Angeles", profile: "us-regf", ch: intent.Voice, zones: idaho, now: local(boise, "2026-06-10 07:30:00"),
			next: local(losAngeles, "2026-06-10 08:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "08:30 Boise is still 07:30 Los Angeles", profile: "us-regf", ch: intent.Voice, zones: idaho, now: local(boise, "2026-06-10 08:30:00"),
			next: local(losAngeles, "2026-06-10 08:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "08:00 Los Angeles is 09:00 Boise", profile: "us-regf", ch: intent.Voice, zones: idaho, now: local(losAngeles, "2026-06-10 08:00:00"), allowed: true},
		{name: "20:59:59 Boise", profile: "us-regf", ch: intent.SMS, zones: idaho, now: local(boise, "2026-06-10 20:59:59"), allowed: true},
		{name: "21:00 Boise is 20:00 Los Angeles", profile: "us-regf", ch: intent.SMS, zones: idaho, now: local(boise, "2026-06-10 21:00:00"),
			next: local(losAngeles, "2026-06-11 08:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "intent zone Chicago, number in New York: 07:30 Chicago", profile: "us-regf", ch: intent.Voice, zones: chicagoNY,
			now: local(chicago, "2026-06-10 07:30:00"), next: local(chicago, "2026-06-10 08:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "intent zone Chicago, number in New York: 20:30 Chicago is 21:30 New York", profile: "us-regf", ch: intent.Voice, zones: chicagoNY,
			now: local(chicago, "2026-06-10 20:30:00"), next: local(chicago, "2026-06-11 08:00:00"), rule: "regf.convenient-hours", atStart: true},
		{name: "intent zone Chicago, number in New York: 10:00 Chicago", profile: "us-regf", ch: intent.Voice, zones: chicagoNY,
			now: local(chicago, "2026-06-10 10:00:00"), allowed: true},
	})
}

// Windows whose edges fall on clock changes (testdata/profiles/dst.yaml).
func TestWindowDST(t *testing.T) {
	ny := []*time.Location{newYork}
	runWindowCases(t, []windowCase{
		// 02:30 does not exist on 2026-03-08: the window opens with the
		// change, at 03:00 EDT.
		{name: "opening skipped by spring forward opens at the change", profile: "dst", ch: intent.SMS, zones: ny, now: utc("2026-03-08 06:59:59"),
			next: utc("2026-03-08 07:00:00"), rule: "sms.gap-start", atStart: true},
		{name: "03:00 EDT inside the window", profile: "dst", ch: intent.SMS, zones: ny, now: utc("2026-03-08 07:00:00"), allowed: true},
		{name: "02:29 EST the day before", profile: "dst", ch: intent.SMS, zones: ny, now: utc("2026-03-07 07:29:00"),
			next: utc("2026-03-07 07:30:00"), rule: "sms.gap-start", atStart: true},

		// 01:30–01:45 happens twice on 2026-11-01: both are allowed,
		// 01:45 EDT to 01:30 EST is not.
		{name: "01:10 EDT", profile: "dst", ch: intent.Voice, zones: ny, now: utc("2026-11-01 05:10:00"),
			next: utc("2026-11-01 05:30:00"), rule: "voice.twice"},
		{name: "01:30 EDT", profile: "dst", ch: intent.Voice, zones: ny, now: utc("2026-11-01 05:30:00"), allowed: true},
		{name: "01:45 EDT waits for 01:30 EST", profile: "dst", ch: intent.Voice, zones: ny, now: utc("2026-11-01 05:45:00"),
			next: utc("2026-11-01 06:30:00"), rule: "voice.twice"},
		{name: "01:10 EST after the first window", profile: "dst", ch: intent.Voice, zones: ny, now: utc("2026-11-01 06:10:00"),
			next: utc("2026-11-01 06:30:00"), rule: "voice.twice"},
		{name: "01:35 EST", profile: "dst", ch: intent.Voice, zones: ny, now: utc("2026-11-01 06:35:00"), allowed: true},
		{name: "01:45 EST waits a day", profile: "dst", ch: intent.Voice, zones: ny, now: utc("2026-11-01 06:45:00"),
			next: utc("2026-11-02 06:30:00"), rule: "voice.twice"},

		// 22:00–02:30 wraps midnight and its end is skipped in spring.
		{name: "wrapping window before midnight", profile: "dst", ch: intent.Email, zones: ny, now: local(newYork, "2026-03-07 23:00:00"), allowed: true},
		{name: "wrapping window 01:59:59 EST", profile: "dst", ch: intent.Email, zones: ny, now: utc("2026-03-08 06:59:59"), allowed: true},
		{name: "wrapping window closes at the change", profile: "dst", ch: intent.Email, zones: ny, now: utc("2026-03-08 07:00:00"),
			next: local(newYork, "2026-03-08 22:00:00"), rule: "email.night", atStart: true},
		{name: "wrapping window 21:59:59", profile: "dst", ch: intent.Email, zones: ny, now: local(newYork, "2026-03-07 21:59:59"),
			next: local(newYork, "2026-03-07 22:00:00"), rule: "email.night", atStart: true},

		// non_working: Christmas 24–26 off, Sunday 27 a make-up day.
		{name: "before Christmas waits for the make-up Sunday", profile: "dst", ch: intent.WeChat, zones: ny, now: local(newYork, "2026-12-23 17:00:00"),
			next: local(newYork, "2026-12-27 09:00:00"), rule: "wechat.office", atStart: true},
		{name: "Christmas Day", profile: "dst", ch: intent.WeChat, zones: ny, now: local(newYork, "2026-12-25 10:00:00"),
			next: local(newYork, "2026-12-27 09:00:00"), rule: "wechat.working-days", atStart: true},
		{name: "a Saturday waits for Monday", profile: "dst", ch: intent.WeChat, zones: ny, now: local(newYork, "2026-12-19 10:00:00"),
			next: local(newYork, "2026-12-21 09:00:00"), rule: "wechat.working-days", atStart: true},
		{name: "the make-up Sunday", profile: "dst", ch: intent.WeChat, zones: ny, now: local(newYork, "2026-12-27 10:00:00"), allowed: true},
	})
}

func TestWindowNoneWithinHorizon(t *testing.T) {
	// 08:00–21:00 is 00:00–13:00 UTC in Shanghai, 07:00–20:00 in London
	// (summer) and 15:00–04:00 in Los Angeles (summer): never in all three.
	p := profile(t, "us-regf")
	now := utc("2026-06-10 12:00:00")
	d := p.Window(intent.Voice, []*time.Location{shanghai, london, losAngeles}, now)
	if d.Allowed || !d.Next.IsZero() || ruleID(d.Rule) != "regf.convenient-hours" || d.AtWindowStart {
		t.Errorf("Window = %+v, want not allowed, no Next, rule regf.convenient-hours", d)
	}
}

func TestWindowInputs(t *testing.T) {
	p := profile(t, "cn-bank")
	d := p.Window(intent.SMS, []*time.Location{shanghai, newYork}, local(shanghai, "2026-11-23 07:59:59"))
	want := []string{"Asia/Shanghai 2026-11-23T07:59:59+08:00", "America/New_York 2026-11-22T18:59:59-05:00"}
	if len(d.Inputs) != len(want) || d.Inputs[0] != want[0] || d.Inputs[1] != want[1] {
		t.Errorf("Inputs = %q, want %q", d.Inputs, want)
	}
}

// The first rule in file order that forbids is the one recorded, whichever
// zone it forbids in.
func TestWindowRuleOrder(t *testing.T) {
	p := profile(t, "cn-bank")
	cases := []struct {
		name  string
		zones []*time.Location
		now   time.Time
		rule  string
	}{
		{name: "holiday alone", zones: []*time.Location{shanghai}, now: local(shanghai, "2026-02-16 10:00:00"), rule: "cn.voice.holidays"},
		// 10:00 in Shanghai, a holiday, is 02:00 in London: the quiet
		// hours come first in the file, though Shanghai is the first zone.
		{name: "quiet hours in the second zone win", zones: []*time.Location{shanghai, london}, now: local(shanghai, "2026-02-16 10:00:00"), rule: "cn.quiet-hours"},
		{name: "both in one zone", zones: []*time.Location{shanghai}, now: local(shanghai, "2026-02-16 23:00:00"), rule: "cn.quiet-hours"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ruleID(p.Window(intent.Voice, tc.zones, tc.now).Rule); got != tc.rule {
				t.Errorf("Rule = %q, want %q", got, tc.rule)
			}
		})
	}
}
