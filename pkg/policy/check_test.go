package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

// checkString renders a check compactly, times in UTC.
func checkString(c Check) string {
	s := fmt.Sprintf("%s %s<%d since=%s", c.Rule.ID, c.Stream, c.Limit, c.Since.UTC().Format(time.DateTime))
	if c.Sliding > 0 {
		return s + " sliding=" + c.Sliding.String()
	}
	return s + " until=" + c.Until.UTC().Format(time.DateTime)
}

func TestChecks(t *testing.T) {
	full := intent.Intent{ID: "i1", DebtorID: "D-1", DebtID: "L-1", To: intent.Address{Phone: "+8613800138000", Email: "a@example.cn", WeChatOpenID: "o1"}}
	noDebt := full
	noDebt.DebtID = ""
	noPhone := full
	noPhone.To.Phone = ""
	sh := []*time.Location{shanghai}

	cases := []struct {
		name    string
		profile string
		in      intent.Intent
		ch      intent.Channel
		zones   []*time.Location
		now     time.Time
		want    []string
	}{
		{name: "voice at 23:30 Shanghai", profile: "cn-bank", in: full, ch: intent.Voice, zones: sh, now: local(shanghai, "2026-11-23 23:30:00"),
			want: []string{
				"cn.voice.connected-daily connected:voice:debtor<3 since=2026-11-22 16:00:00 until=2026-11-23 16:00:00",
				"cn.voice.attempts-per-number-daily attempt:voice:number<6 since=2026-11-22 16:00:00 until=2026-11-23 16:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-11-23 14:30:00 sliding=1h0m0s",
			}},
		{name: "sms at 00:10 Shanghai", profile: "cn-bank", in: full, ch: intent.SMS, zones: sh, now: local(shanghai, "2026-11-24 00:10:00"),
			want: []string{
				"cn.sms.daily attempt:sms:debtor<2 since=2026-11-23 16:00:00 until=2026-11-24 16:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-11-23 15:10:00 sliding=1h0m0s",
			}},
		{name: "wechat, no zones means the default", profile: "cn-bank", in: full, ch: intent.WeChat, now: local(shanghai, "2026-11-24 00:10:00"),
			want: []string{
				"cn.wechat.daily attempt:wechat:debtor<2 since=2026-11-23 16:00:00 until=2026-11-24 16:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-11-23 15:10:00 sliding=1h0m0s",
			}},
		{name: "email has the gap only", profile: "cn-bank", in: full, ch: intent.Email, zones: sh, now: local(shanghai, "2026-11-24 09:00:00"),
			want: []string{"cn.min-gap attempt:any:debtor<1 since=2026-11-24 00:00:00 sliding=1h0m0s"}},
		{name: "voice without a phone skips the number cap", profile: "cn-bank", in: noPhone, ch: intent.Voice, zones: sh, now: local(shanghai, "2026-11-24 09:00:00"),
			want: []string{
				"cn.voice.connected-daily connected:voice:debtor<3 since=2026-11-23 16:00:00 until=2026-11-24 16:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-11-24 00:00:00 sliding=1h0m0s",
			}},
		// Shanghai's day 2026-11-24 runs 16:00–16:00 UTC; New York's
		// 2026-11-23 runs 05:00–05:00 UTC: count from the earlier start to
		// the later end.
		{name: "two zones count the wider day", profile: "cn-bank", in: full, ch: intent.SMS, zones: []*time.Location{shanghai, newYork}, now: utc("2026-11-24 01:00:00"),
			want: []string{
				"cn.sms.daily attempt:sms:debtor<2 since=2026-11-23 05:00:00 until=2026-11-24 16:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-11-24 00:00:00 sliding=1h0m0s",
			}},
		{name: "New York spring-forward day is 23 hours", profile: "cn-bank", in: full, ch: intent.SMS, zones: []*time.Location{newYork}, now: utc("2026-03-08 15:00:00"),
			want: []string{
				"cn.sms.daily attempt:sms:debtor<2 since=2026-03-08 05:00:00 until=2026-03-09 04:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-03-08 14:00:00 sliding=1h0m0s",
			}},
		{name: "New York fall-back day is 25 hours", profile: "cn-bank", in: full, ch: intent.SMS, zones: []*time.Location{newYork}, now: utc("2026-11-01 15:00:00"),
			want: []string{
				"cn.sms.daily attempt:sms:debtor<2 since=2026-11-01 04:00:00 until=2026-11-02 05:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-11-01 14:00:00 sliding=1h0m0s",
			}},
		// Havana springs forward at midnight: 2026-03-08 00:00 CST does not
		// exist, the day starts at 01:00 CDT (05:00 UTC).
		{name: "a day whose midnight is skipped", profile: "cn-bank", in: full, ch: intent.SMS, zones: []*time.Location{havana}, now: utc("2026-03-08 15:00:00"),
			want: []string{
				"cn.sms.daily attempt:sms:debtor<2 since=2026-03-08 05:00:00 until=2026-03-09 04:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-03-08 14:00:00 sliding=1h0m0s",
			}},
		{name: "the day before a skipped midnight ends at the change", profile: "cn-bank", in: full, ch: intent.SMS, zones: []*time.Location{havana}, now: utc("2026-03-07 15:00:00"),
			want: []string{
				"cn.sms.daily attempt:sms:debtor<2 since=2026-03-07 05:00:00 until=2026-03-08 05:00:00",
				"cn.min-gap attempt:any:debtor<1 since=2026-03-07 14:00:00 sliding=1h0m0s",
			}},
		{name: "Reg F voice slides 168h per debt", profile: "us-regf", in: full, ch: intent.Voice, zones: []*time.Location{newYork}, now: utc("2026-06-10 15:00:00"),
			want: []string{
				"regf.call-frequency attempt:voice:debt<7 since=2026-06-03 15:00:00 sliding=168h0m0s",
				"regf.after-conversation conversation:voice:debt<1 since=2026-06-03 15:00:00 sliding=168h0m0s",
			}},
		{name: "Reg F voice without debt_id", profile: "us-regf", in: noDebt, ch: intent.Voice, zones: []*time.Location{newYork}, now: utc("2026-06-10 15:00:00")},
		{name: "Reg F sms has no caps", profile: "us-regf", in: full, ch: intent.SMS, zones: []*time.Location{newYork}, now: utc("2026-06-10 15:00:00")},
		{name: "unknown channel", profile: "cn-bank", in: full, ch: "fax", zones: sh, now: utc("2026-06-10 15:00:00")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := profile(t, tc.profile)
			var got []string
			for _, c := range p.Checks(tc.in, tc.ch, tc.zones, tc.now) {
				got = append(got, checkString(c))
				if p.Rule(c.Rule.ID) != c.Rule {
					t.Errorf("check of rule %s does not point at the profile's rule", c.Rule.ID)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Checks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestMaxLookback(t *testing.T) {
	cases := []struct {
		profile string
		want    time.Duration
	}{
		{"cn-bank", 48 * time.Hour}, // calendar days, longer than the 1h gap
		{"us-regf", 168 * time.Hour},
		{"dst", 0}, // no caps
	}
	for _, tc := range cases {
		t.Run(tc.profile, func(t *testing.T) {
			if got := profile(t, tc.profile).MaxLookback(); got != tc.want {
				t.Errorf("MaxLookback = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFreeAt(t *testing.T) {
	now := utc("2026-06-10 15:00:00")
	week := 168 * time.Hour
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	sliding := Check{Limit: 2, Since: now.Add(-week), Sliding: week}
	daily := Check{Limit: 2, Since: utc("2026-06-09 16:00:00"), Until: utc("2026-06-10 16:00:00")}
	cases := []struct {
		name   string
		check  Check
		events []time.Time
		want   time.Time
	}{
		{name: "sliding, under the limit", check: sliding, events: []time.Time{ago(time.Hour)}},
		{name: "sliding, old events ignored", check: sliding, events: []time.Time{ago(time.Hour), ago(week + time.Second), ago(200 * time.Hour)}},
		{name: "sliding, at the limit: the older ages out", check: sliding, events: []time.Time{ago(time.Hour), ago(5 * time.Hour)},
			want: ago(5 * time.Hour).Add(week + time.Nanosecond)},
		{name: "sliding, over the limit, any order", check: sliding, events: []time.Time{ago(time.Hour), ago(3 * time.Hour), ago(2 * time.Hour), ago(5 * time.Hour)},
			want: ago(2 * time.Hour).Add(week + time.Nanosecond)},
		{name: "sliding, event exactly at Since counts", check: sliding, events: []time.Time{ago(week), ago(time.Hour)},
			want: now.Add(time.Nanosecond)},
		{name: "calendar day, under the limit", check: daily, events: []time.Time{ago(time.Hour), utc("2026-06-09 15:59:59")}},
		{name: "calendar day, at the limit", check: daily, events: []time.Time{ago(time.Hour), utc("2026-06-09 16:00:00")},
			want: utc("2026-06-10 16:00:00")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.check.FreeAt(tc.events); !got.Equal(tc.want) {
				t.Errorf("FreeAt = %v, want %v", got, tc.want)
			}
		})
	}
}
