package policy

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/intent"
)

func TestZones(t *testing.T) {
	cases := []struct {
		name    string
		profile string
		in      intent.Intent
		want    []string
	}{
		{name: "intent_first: intent zone wins over the number", profile: "cn-first",
			in: intent.Intent{Timezone: "America/New_York", To: intent.Address{Phone: "+8613800138000"}}, want: []string{"America/New_York"}},
		{name: "cn-bank: the stated zone and the number's", profile: "cn-bank",
			in: intent.Intent{Timezone: "America/New_York", To: intent.Address{Phone: "+8613800138000"}}, want: []string{"America/New_York", "Asia/Shanghai"}},
		{name: "intent_first: +86 number", profile: "cn-first",
			in: intent.Intent{To: intent.Address{Phone: "+8613800138000"}}, want: []string{"Asia/Shanghai"}},
		{name: "intent_first: a foreign number is not the default zone", profile: "cn-first",
			in: intent.Intent{To: intent.Address{Phone: "+442079460000"}}, want: []string{"Europe/London"}},
		{name: "intent_first: every zone of an ambiguous number", profile: "cn-first",
			in: intent.Intent{To: intent.Address{Phone: "+12085550100"}}, want: []string{"America/Boise", "America/Los_Angeles"}},
		{name: "intent_first: an unknown intent zone counts as none", profile: "cn-first",
			in: intent.Intent{Timezone: "Mars/Olympus", To: intent.Address{Phone: "+442079460000"}}, want: []string{"Europe/London"}},
		{name: "intent_first: Local is not a debtor's zone", profile: "cn-first",
			in: intent.Intent{Timezone: "Local"}, want: []string{"Asia/Shanghai"}},
		{name: "intent_first: no zone, no phone", profile: "cn-first",
			in: intent.Intent{To: intent.Address{Email: "a@example.cn"}}, want: []string{"Asia/Shanghai"}},
		{name: "intent_first: a number phonenumbers has no zone for", profile: "cn-first",
			in: intent.Intent{To: intent.Address{Phone: "+80012345678"}}, want: []string{"Asia/Shanghai"}},
		{name: "intent_first: not E.164", profile: "cn-first",
			in: intent.Intent{To: intent.Address{Phone: "+1 212 555 0100"}}, want: []string{"Asia/Shanghai"}},
		{name: "all_known: intent zone and number zone", profile: "us-regf",
			in: intent.Intent{Timezone: "America/Chicago", To: intent.Address{Phone: "+12125550100"}}, want: []string{"America/Chicago", "America/New_York"}},
		{name: "all_known: ambiguous number", profile: "us-regf",
			in: intent.Intent{To: intent.Address{Phone: "+12085550100"}}, want: []string{"America/Boise", "America/Los_Angeles"}},
		{name: "all_known: no duplicate when the intent names one of the number's zones", profile: "us-regf",
			in: intent.Intent{Timezone: "America/Los_Angeles", To: intent.Address{Phone: "+12085550100"}}, want: []string{"America/Los_Angeles", "America/Boise"}},
		{name: "all_known: same zone twice", profile: "us-regf",
			in: intent.Intent{Timezone: "America/New_York", To: intent.Address{Phone: "+12125550100"}}, want: []string{"America/New_York"}},
		{name: "all_known: intent zone alone", profile: "us-regf",
			in: intent.Intent{Timezone: "America/Denver"}, want: []string{"America/Denver"}},
		{name: "all_known: nothing known", profile: "us-regf",
			in: intent.Intent{}, want: []string{"America/New_York"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := profile(t, tc.profile)
			for range 2 { // the second time from the caches
				got := p.Zones(tc.in)
				if len(got) != len(tc.want) {
					t.Fatalf("Zones = %v, want %v", got, tc.want)
				}
				for i := range got {
					if got[i].String() != tc.want[i] {
						t.Fatalf("Zones = %v, want %v", got, tc.want)
					}
				}
			}
		})
	}
}

// A caller that modifies the slice Zones returned does not change the next
// answer.
func TestZonesNotShared(t *testing.T) {
	p := profile(t, "us-regf")
	in := intent.Intent{To: intent.Address{Phone: "+12085550100"}}
	z := p.Zones(in)
	z[0] = nil
	if got := p.Zones(in); got[0] == nil {
		t.Fatal("Zones returned a slice shared with its cache")
	}
}

// The cache of phone zones is keyed by phonenumbers' prefix entries, not by
// numbers: a million debtors do not make a million entries.
func TestZonesCacheBounded(t *testing.T) {
	p, err := Load(configs.FS, "us-regf")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				for _, prefix := range []string{"+8613", "+1208555", "+1212555", "+4420794"} {
					in := intent.Intent{To: intent.Address{Phone: fmt.Sprintf("%s%04d", prefix, g*1000+i)}}
					if len(p.Zones(in)) == 0 {
						t.Error("no zones")
						return
					}
				}
			}
		})
	}
	wg.Wait()
	n := 0
	p.phones.Range(func(_, _ any) bool { n++; return true })
	if n == 0 || n > 4 {
		t.Errorf("%d cache entries for 4 prefixes", n)
	}
}

// cn-bank judges a call in the stated zone and in the number's: a +86
// number stated as New York is not called at 10:00 New York (23:00 in
// Beijing), but when the two windows overlap.
func TestStatedZoneAndNumberZone(t *testing.T) {
	p := profile(t, "cn-bank")
	in := intent.Intent{Timezone: "America/New_York", To: intent.Address{Phone: "+8613800138000"}}
	zones := p.Zones(in)
	d := p.Window(intent.Voice, zones, local(newYork, "2026-11-23 10:00:00"))
	if d.Allowed || d.Rule == nil || d.Rule.ID != "cn.quiet-hours" {
		t.Fatalf("10:00 New York = 23:00 Beijing: allowed=%v rule=%v", d.Allowed, d.Rule)
	}
	if want := local(shanghai, "2026-11-24 08:00:00"); !d.Next.Equal(want) {
		t.Errorf("next %s, want %s (19:00 New York)", d.Next, want)
	}
	if p.NeverAllowed(intent.Voice, zones, local(newYork, "2026-11-23 10:00:00")) {
		t.Error("New York and Beijing overlap 08:00–11:00 Beijing, yet NeverAllowed")
	}
}

// Zones whose windows never overlap on any day: NeverAllowed, and Window
// finds no next time; zones that overlap only part of the day are not.
func TestNeverAllowed(t *testing.T) {
	p := profile(t, "cn-bank")
	at := local(shanghai, "2026-11-23 12:00:00")
	// +1 800 reaches every NANP zone, Adak (UTC−10) to Anguilla (UTC−4);
	// with Kolkata (UTC+5:30) no instant is 08:00–22:00 in all of them.
	far := p.Zones(intent.Intent{Timezone: "Asia/Kolkata", To: intent.Address{Phone: "+18005550100"}})
	if len(far) < 10 {
		t.Fatalf("zones %v: expected the whole NANP", far)
	}
	if !p.NeverAllowed(intent.SMS, far, at) {
		t.Error("Kolkata and the NANP zones: NeverAllowed is false")
	}
	if d := p.Window(intent.SMS, far, at); d.Allowed || !d.Next.IsZero() {
		t.Errorf("Kolkata and the NANP zones: allowed=%v next=%s", d.Allowed, d.Next)
	}
	near := p.Zones(intent.Intent{Timezone: "Asia/Shanghai", To: intent.Address{Phone: "+18005550100"}})
	if p.NeverAllowed(intent.SMS, near, at) {
		t.Error("Shanghai and the NANP zones overlap 08:00–09:30 Shanghai, yet NeverAllowed")
	}
	if p.NeverAllowed(intent.SMS, []*time.Location{shanghai}, at) {
		t.Error("one zone: NeverAllowed")
	}
}

// AllowedNow agrees with Window's Allowed.
func TestAllowedNowAgreesWithWindow(t *testing.T) {
	p := profile(t, "cn-bank")
	for h := 0; h < 48; h++ {
		at := local(shanghai, "2027-01-31 00:30:00").Add(time.Duration(h) * time.Hour) // a make-up Sunday, then a Monday
		for _, ch := range intent.Channels {
			if got, want := p.AllowedNow(ch, []*time.Location{shanghai}, at), p.Window(ch, []*time.Location{shanghai}, at).Allowed; got != want {
				t.Errorf("%s %s: AllowedNow %v, Window %v", ch, at, got, want)
			}
		}
	}
}
