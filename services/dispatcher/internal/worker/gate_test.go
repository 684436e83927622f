package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/catalog"
	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// replica is one worker instance; several share a store and a sandbox.
func replica(t testing.TB, rdb redis.UniversalClient, prefix string, prof *policy.Profile, sb *sandbox.Sandbox, owner string, now func() time.Time) *Worker {
	t.Helper()
	st, err := store.New(rdb, store.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.MarkRebuilt(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(configs.FS)
	if err != nil {
		t.Fatal(err)
	}
	senders := map[intent.Channel]Sender{}
	for _, ch := range intent.Channels {
		senders[ch] = sb
	}
	w, err := New(Config{Owner: owner}, Deps{
		Reader: nopReader{}, Publisher: nopPublisher{}, Store: st, Templates: cat, Profile: prof,
		Senders: senders, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func loadProfile(t testing.TB, name string) *policy.Profile {
	t.Helper()
	p, err := policy.Load(configs.FS, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decideUntilSettled decides m, waiting while another replica holds it.
func decideUntilSettled(t testing.TB, w *Worker, m []byte) {
	for i := 0; ; i++ {
		_, err := w.Decide(context.Background(), msgOfBytes(m))
		var busy *busyError
		if errors.As(err, &busy) && i < 2000 {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Error(err)
		}
		return
	}
}

// TestGateConcurrent: 200 intents for one debtor arrive at once through 3
// worker replicas, with a cap of 3 SMS a day → exactly 3 sent, 197
// deferred; and one intent id delivered 20 times at once → sent once. On a
// single Redis server and on a 3-master Redis Cluster.
func TestGateConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis func(t *testing.T) (redis.UniversalClient, string)
	}{
		{"redis", func(t *testing.T) (redis.UniversalClient, string) {
			c, p := testenv.Redis(t)
			return c, p
		}},
		{"redis cluster", func(t *testing.T) (redis.UniversalClient, string) {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisCluster(t)})
			t.Cleanup(func() { c.Close() })
			return c, testenv.Prefix(t)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := tc.redis(t)
			prof, err := policy.Load(configs.FS, "../services/dispatcher/internal/worker/testdata/cap3.yaml")
			if err != nil {
				// Load takes a path relative to the working directory.
				prof, err = policy.Load(configs.FS, "testdata/cap3.yaml")
			}
			if err != nil {
				t.Fatal(err)
			}
			sb, _ := sandbox.New(sandbox.Config{Idempotent: true})
			now := func() time.Time { return time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC) } // 11:00 in Shanghai
			var ws []*Worker
			for i := 0; i < 3; i++ {
				ws = append(ws, replica(t, rdb, prefix, prof, sb, fmt.Sprintf("replica-%d", i), now))
			}

			var ins [][]byte
			var ids []string
			for i := 0; i < 200; i++ {
				in := sampleIntent(fmt.Sprintf("I-%03d", i))
				in.DebtorID = "D-CONC"
				ins = append(ins, mustMarshal(t, in))
				ids = append(ids, in.ID)
			}
			same := sampleIntent("I-SAME")
			same.DebtorID = "D-SAME"
			for i := 0; i < 20; i++ {
				ins = append(ins, mustMarshal(t, same))
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, m := range ins {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					decideUntilSettled(t, ws[i%3], m)
				}()
			}
			close(start)
			wg.Wait()

			st, _ := store.New(rdb, store.Config{Prefix: prefix})
			sent, deferred := 0, 0
			for _, id := range ids {
				rec, err := st.GetFor(context.Background(), "D-CONC", id)
				if err != nil {
					t.Fatal(err)
				}
				switch rec.State {
				case status.Sent:
					sent++
				case status.Deferred:
					deferred++
					if e := rec.Last(); e.Rule != "test.sms.cap3" || e.Until == nil || e.Inputs == nil || e.Inputs.Counts["test.sms.cap3"] < 3 {
						t.Errorf("deferral of %s does not explain itself: %+v", id, e)
					}
				default:
					t.Errorf("%s ended %s", id, rec.State)
				}
			}
			if sent != 3 || deferred != 197 {
				t.Errorf("sent %d, deferred %d; want 3 and 197", sent, deferred)
			}
			if n := sb.Stats().Sent; n != 4 {
				t.Errorf("sandbox got %d messages, want 4 (3 under the cap + the repeated id once)", n)
			}
			if n := sb.Counts()["I-SAME"]; n != 1 {
				t.Errorf("the id delivered 20 times was sent %d times", n)
			}
		})
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	return msgOf(t.(*testing.T), v).Value
}

func TestGateDecisions(t *testing.T) {
	ctx := context.Background()
	// 2026-11-23 is a Monday; 03:00 UTC is 11:00 in Shanghai.
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tc := range []struct {
		name    string
		profile string
		now     string
		in      func(in *intent.Intent)
		setup   func(t *testing.T, f *fixture)
		state   status.State
		reason  string
		rule    string
		channel string
		until   string
		note    string // an entry of the decision's inputs.notes
		detail  string // a part of the decision's detail
	}{
		{name: "allowed at 08:00:00 Shanghai", profile: "cn-bank", now: "2026-11-23T00:00:00Z", state: status.Sent, channel: "sms"},
		{name: "07:59:59 Shanghai is deferred to 08:00", profile: "cn-bank", now: "2026-11-22T23:59:59Z",
			state: status.Deferred, reason: "outside_hours", rule: "cn.quiet-hours", until: "2026-11-23T00:00:00Z+jitter"},
		{name: "22:00:00 Shanghai is deferred to the next 08:00", profile: "cn-bank", now: "2026-11-23T14:00:00Z",
			state: status.Deferred, reason: "outside_hours", rule: "cn.quiet-hours", until: "2026-11-24T00:00:00Z+jitter"},
		{name: "voice on a statutory holiday waits for the working day", profile: "cn-bank", now: "2026-10-02T03:00:00Z",
			in:    func(in *intent.Intent) { in.Channels = []intent.Channel{intent.Voice} },
			state: status.Deferred, reason: "holiday", rule: "cn.voice.holidays", until: "2026-10-08T00:00:00Z+jitter"},
		{name: "voice on 2027 New Year's Day waits for the working day", profile: "cn-bank", now: "2027-01-01T03:00:00Z",
			in: func(in *intent.Intent) {
				in.Channels, in.NotBefore, in.ExpiresAt = []intent.Channel{intent.Voice}, nil, nil
			},
			state: status.Deferred, reason: "holiday", rule: "cn.voice.holidays", until: "2027-01-04T00:00:00Z+jitter"},
		{name: "voice in the 2027 Spring Festival waits for the make-up Sunday", profile: "cn-bank", now: "2027-02-08T03:00:00Z",
			in: func(in *intent.Intent) {
				in.Channels, in.NotBefore, in.ExpiresAt = []intent.Channel{intent.Voice}, nil, nil
			},
			state: status.Deferred, reason: "holiday", rule: "cn.voice.holidays", until: "2027-02-14T00:00:00Z+jitter"},
		{name: "voice in a year no calendar covers is deferred, the gap named", profile: "cn-bank", now: "2028-01-04T03:00:00Z",
			in: func(in *intent.Intent) {
				in.Channels, in.NotBefore, in.ExpiresAt = []intent.Channel{intent.Voice}, nil, nil
			},
			state: status.Deferred, reason: "holiday", rule: "cn.voice.holidays", until: "2028-01-05T03:00:00Z",
			note: "cn.voice.holidays: calendar does not cover 2028"},
		{name: "SMS in a year no calendar covers goes: no holiday rule restricts it", profile: "cn-bank", now: "2028-01-04T03:00:00Z",
			in:    func(in *intent.Intent) { in.NotBefore, in.ExpiresAt = nil, nil },
			state: status.Sent, channel: "sms"},
		{name: "zones whose windows never overlap: suppressed, the zones named", profile: "cn-bank", now: "2026-11-23T06:00:00Z",
			in: func(in *intent.Intent) {
				in.Timezone, in.To.Phone, in.NotBefore, in.ExpiresAt = "Asia/Kolkata", "+18005550100", nil, nil
			},
			state: status.Suppressed, reason: "no_allowed_time", rule: "cn.quiet-hours", detail: "Asia/Kolkata, America/Adak"},
		{name: "a third SMS in a day waits for the next day", profile: "cn-bank", now: "2026-11-23T09:00:00Z",
			setup: func(t *testing.T, f *fixture) {
				for i, h := range []string{"2026-11-23T01:00:00Z", "2026-11-23T03:00:00Z"} {
					f.now = at(h)
					in := sampleIntent(fmt.Sprintf("I-early-%d", i))
					if _, err := f.w.Decide(ctx, msgOf(t, in)); err != nil {
						t.Fatal(err)
					}
				}
			},
			state: status.Deferred, reason: "frequency_cap", rule: "cn.sms.daily", until: "2026-11-23T16:00:00Z"},
		{name: "within an hour of the last contact: the gap rule", profile: "cn-bank", now: "2026-11-23T03:30:00Z",
			setup: func(t *testing.T, f *fixture) {
				f.now = at("2026-11-23T03:00:00Z")
				in := sampleIntent("I-before")
				in.Channels = []intent.Channel{intent.Email}
				in.To.Email = "zhang@example.cn"
				if _, err := f.w.Decide(ctx, msgOf(t, in)); err != nil {
					t.Fatal(err)
				}
			},
			state: status.Deferred, reason: "min_gap", rule: "cn.min-gap", until: "2026-11-23T04:00:00.001Z"},
		{name: "opted out of SMS: falls back to WeChat", profile: "cn-bank", now: "2026-11-23T03:00:00Z",
			in: func(in *intent.Intent) {
				in.Channels, in.Fallback, in.To.WeChatOpenID = []intent.Channel{intent.SMS, intent.WeChat}, true, "oX1abcdefgh"
			},
			setup: func(t *testing.T, f *fixture) { f.optOut(t, "sms") },
			state: status.Sent, channel: "wechat"},
		{name: "opted out of SMS without fallback: suppressed", profile: "cn-bank", now: "2026-11-23T03:00:00Z",
			setup: func(t *testing.T, f *fixture) { f.optOut(t, "sms") },
			state: status.Suppressed, reason: "opted_out", rule: "opt-out"},
		{name: "opted out of everything", profile: "cn-bank", now: "2026-11-23T03:00:00Z",
			in:    func(in *intent.Intent) { in.Channels, in.Fallback = []intent.Channel{intent.SMS, intent.Voice}, true },
			setup: func(t *testing.T, f *fixture) { f.optOut(t, "all") },
			state: status.Suppressed, reason: "opted_out", rule: "opt-out"},
		{name: "legal do-not-contact", profile: "cn-bank", now: "2026-11-23T03:00:00Z",
			setup: func(t *testing.T, f *fixture) { f.optOut(t, "dnc") },
			state: status.Suppressed, reason: "do_not_contact", rule: "do-not-contact"},
		{name: "next allowed time after expires_at: suppressed as expired", profile: "cn-bank", now: "2026-11-23T15:00:00Z",
			in: func(in *intent.Intent) {
				exp := at("2026-11-23T20:00:00Z")
				in.ExpiresAt = &exp
			},
			state: status.Suppressed, reason: "expired", rule: "cn.quiet-hours"},
		{name: "Reg F: 20:59:59 in New York is allowed", profile: "us-regf", now: "2026-11-24T01:59:59Z",
			in:    usDebtor,
			state: status.Sent, channel: "voice"},
		{name: "Reg F: 21:00:00 in New York waits for 08:00", profile: "us-regf", now: "2026-11-24T02:00:00Z",
			in:    usDebtor,
			state: status.Deferred, reason: "outside_hours", rule: "regf.convenient-hours", until: "2026-11-24T13:00:00Z+jitter"},
		{name: "Reg F: no call within 7 days after a conversation", profile: "us-regf", now: "2026-11-24T15:00:00Z",
			in: usDebtor,
			setup: func(t *testing.T, f *fixture) {
				err := f.st.RecordEvent(ctx, "D-1001", store.Stream{Event: policy.EventConversation, Channel: "voice", Scope: policy.ScopeDebt, ScopeID: "L-1"},
					"conversation:1", at("2026-11-20T15:00:00Z"), 8*24*time.Hour)
				if err != nil {
					t.Fatal(err)
				}
			},
			state: status.Deferred, reason: "frequency_cap", rule: "regf.after-conversation", until: "2026-11-27T15:00:00.001Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, true)
			f.w.Profile = loadProfile(t, tc.profile)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			f.now = at(tc.now)
			in := sampleIntent("I-gate")
			if tc.in != nil {
				tc.in(&in)
			}
			recs, err := f.w.Decide(ctx, msgOf(t, in))
			if err != nil {
				t.Fatal(err)
			}
			rec := f.record(t, in.ID)
			e := rec.Timeline[0]
			if rec.State != tc.state || rec.Reason != tc.reason {
				t.Fatalf("state %s/%s, want %s/%s (entry %+v)", rec.State, rec.Reason, tc.state, tc.reason, e)
			}
			if tc.rule != "" && e.Rule != tc.rule {
				t.Errorf("rule %q, want %q", e.Rule, tc.rule)
			}
			if tc.channel != "" && rec.Channel != tc.channel {
				t.Errorf("channel %q, want %q", rec.Channel, tc.channel)
			}
			if tc.detail != "" && !strings.Contains(e.Detail, tc.detail) {
				t.Errorf("detail %q, want it to contain %q", e.Detail, tc.detail)
			}
			if tc.note != "" && (e.Inputs == nil || !slices.Contains(e.Inputs.Notes, tc.note)) {
				t.Errorf("notes %v, want %q among them", e.Inputs, tc.note)
			}
			if e.Profile != tc.profile || e.Inputs == nil || len(e.Inputs.LocalTimes) == 0 {
				t.Errorf("the decision does not record its profile and inputs: %+v", e)
			}
			if tc.state == status.Deferred {
				if e.Until == nil {
					t.Fatalf("deferral without until: %+v", e)
				}
				if evs := events(t, recs); len(evs) == 0 || evs[0].Source != f.w.Profile.Rule(tc.rule).Source || evs[0].Rule != tc.rule {
					t.Errorf("the deferred event does not carry the rule and its legal source: %+v", evs)
				}
				checkUntil(t, *e.Until, tc.until, f.w.Profile.Jitter)
				var deferral int
				for _, r := range recs {
					if r.Topic == kafkaio.DefaultTopics.Deferred && string(r.Key) == in.ID && r.Value != nil {
						deferral++
					}
				}
				if deferral != 1 {
					t.Errorf("%d records on the deferred topic, want 1", deferral)
				}
			}
		})
	}
}

// Under us-regf a call without debt_id would pass the per-debt call caps
// unchecked: it is rejected to the DLQ with a field error naming the rule,
// however many arrive.
func TestProfileRequiredFields(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true)
	f.w.Profile = loadProfile(t, "us-regf")
	f.now = time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC) // 10:00 in New York
	for i := 0; i < 12; i++ {
		in := sampleIntent(fmt.Sprintf("I-nodebt-%d", i))
		usDebtor(&in)
		in.DebtID = ""
		recs, err := f.w.Decide(ctx, msgOf(t, in))
		if err != nil {
			t.Fatal(err)
		}
		var dlq int
		for _, r := range recs {
			if r.Topic == kafkaio.DefaultTopics.DLQ {
				dlq++
				if c := kafkaio.Header(r, kafkaio.HeaderCode); c != "required_by_profile" {
					t.Errorf("DLQ code %q, want required_by_profile", c)
				}
				if reason := kafkaio.Header(r, kafkaio.HeaderReason); !strings.Contains(reason, "debt_id") || !strings.Contains(reason, "regf.call-frequency") {
					t.Errorf("DLQ reason %q names neither the field nor the rule", reason)
				}
			}
		}
		if dlq != 1 {
			t.Fatalf("%d DLQ records, want 1", dlq)
		}
		f.now = f.now.Add(20 * time.Minute)
	}
	if n := f.sb.calls.Load(); n != 0 {
		t.Errorf("%d calls placed without debt_id, want 0", n)
	}
}

func usDebtor(in *intent.Intent) {
	in.Channels = []intent.Channel{intent.Voice}
	in.To.Phone = "+12125550123"
	in.Timezone = ""
	in.DebtID = "L-1"
}

// checkUntil compares a deferral's end with want, which may end in
// "+jitter": then it must fall in [want, want+jitter).
func checkUntil(t *testing.T, got time.Time, want string, jitter time.Duration) {
	t.Helper()
	base, jittered := want, false
	if len(want) > 7 && want[len(want)-7:] == "+jitter" {
		base, jittered = want[:len(want)-7], true
	}
	w, err := time.Parse(time.RFC3339Nano, base)
	if err != nil {
		t.Fatal(err)
	}
	if jittered {
		if got.Before(w) || !got.Before(w.Add(jitter)) {
			t.Errorf("until %s, want in [%s, +%s)", got, w, jitter)
		}
		return
	}
	if !got.Equal(w) {
		t.Errorf("until %s, want %s", got, w)
	}
}

func (f *fixture) optOut(t *testing.T, field string) {
	t.Helper()
	if err := f.rdb.HSet(context.Background(), f.st.Keys().OptOuts("D-1001"), field, `{"source":"test"}`).Err(); err != nil {
		t.Fatal(err)
	}
}

// A send that failed for certain before any provider took it does not count
// against the caps; one whose outcome is unknown does.
func TestGateReleasesFailedSends(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   sandbox.Fault
		counted int64
	}{
		{"permanent failure: released", sandbox.Fault{Kind: channel.Permanent}, 0},
		{"unknown outcome: still counted", sandbox.Fault{Kind: channel.Unknown}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			f.now = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
			f.sb.SetFault(intent.SMS, tc.fault)
			if _, err := f.w.Decide(context.Background(), msgOf(t, sampleIntent("I-rel"))); err != nil {
				t.Fatal(err)
			}
			key := f.st.Keys().Stream("D-1001", store.Stream{Event: policy.EventAttempt, Channel: "sms", Scope: policy.ScopeDebtor})
			if n := f.rdb.ZCard(context.Background(), key).Val(); n != tc.counted {
				t.Errorf("%d contacts counted, want %d", n, tc.counted)
			}
		})
	}
}
