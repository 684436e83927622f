package policy

import (
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

// BenchmarkDecide is the policy's share of one intent in the worker:
// Zones, Window and Checks for one channel.
func BenchmarkDecide(b *testing.B) {
	cases := []struct {
		name, profile string
		in            intent.Intent
		ch            intent.Channel
		now           time.Time
	}{
		{name: "cn-bank voice allowed", profile: "cn-bank", ch: intent.Voice, now: local(shanghai, "2026-11-23 10:00:00"),
			in: intent.Intent{ID: "01JD3X", DebtorID: "D-1", DebtID: "L-1", To: intent.Address{Phone: "+8613800138000"}}},
		{name: "cn-bank voice deferred over a holiday", profile: "cn-bank", ch: intent.Voice, now: local(shanghai, "2026-02-14 22:30:00"),
			in: intent.Intent{ID: "01JD3X", DebtorID: "D-1", DebtID: "L-1", To: intent.Address{Phone: "+8613800138000"}}},
		{name: "us-regf voice allowed, two zones", profile: "us-regf", ch: intent.Voice, now: local(boise, "2026-06-10 12:00:00"),
			in: intent.Intent{ID: "01JD3X", DebtorID: "D-1", DebtID: "L-1", To: intent.Address{Phone: "+12085550100"}}},
		{name: "us-regf sms deferred, two zones", profile: "us-regf", ch: intent.SMS, now: local(boise, "2026-06-10 21:30:00"),
			in: intent.Intent{ID: "01JD3X", DebtorID: "D-1", Timezone: "America/Chicago", To: intent.Address{Phone: "+12125550100"}}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			p := profile(b, tc.profile)
			b.ReportAllocs()
			for b.Loop() {
				zones := p.Zones(tc.in)
				d := p.Window(tc.ch, zones, tc.now)
				if !d.Allowed && d.AtWindowStart {
					_ = p.Jittered(d.Next, tc.in.ID)
				}
				_ = p.Checks(tc.in, tc.ch, zones, tc.now)
			}
		})
	}
}

// BenchmarkWindowNoOpening is the worst case: zones whose windows never
// meet, searched to the horizon.
func BenchmarkWindowNoOpening(b *testing.B) {
	p := profile(b, "us-regf")
	zones := []*time.Location{shanghai, london, losAngeles}
	now := utc("2026-06-10 12:00:00")
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Window(intent.Voice, zones, now); !d.Next.IsZero() {
			b.Fatal("found an opening")
		}
	}
}
