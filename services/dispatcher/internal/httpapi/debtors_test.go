package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/catalog"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

type nopPublisher struct{}

func (nopPublisher) WriteMessages(context.Context, ...kafka.Message) error { return nil }

func newServer(t *testing.T, profile string, now time.Time) (*Server, *store.Store) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
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
	prof, err := policy.Load(configs.FS, profile)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := optout.ParseKeys(testOptOutKeys)
	if err != nil {
		t.Fatal(err)
	}
	apiKeys, err := ParseAPIKeys("admin:" + HashAPIKey(adminKey) + ",read:" + HashAPIKey(readKey) + ",write:" + HashAPIKey(writeKey) + ":intake" +
		",compliance:" + HashAPIKey(complianceKey))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Deps{Publisher: nopPublisher{}, Store: st, Contacts: st, Templates: cat, Profile: prof,
		OptOuts: &optout.Recorder{Topic: "reminders.optouts", Pub: nopPublisher{}, Hot: st}, OptOutReader: st,
		OptOutKeys: keys, Webhooks: st, Resolver: st, Sessions: st, APIKeys: apiKeys, PublicBaseURL: "https://collect.bank.example",
		TwilioAuthToken: twilioToken, PublicRate: 1000,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

const (
	adminKey       = "admin-key-for-tests"
	readKey        = "read-key-for-tests"
	writeKey       = "write-key-for-tests"
	complianceKey  = "compliance-key-for-tests"
	testOptOutKeys = "k2:new-secret-0123456789abcdef,k1:old-secret-0123456789abcdef"
	twilioToken    = "twilio-auth-token-test"
)

func serve(t *testing.T, s *Server, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	return serveAs(t, s, adminKey, method, path, body)
}

func serveAs(t *testing.T, s *Server, key, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rr := httptest.NewRecorder()
	s.Handler().ServeHTTP(rr, req)
	return rr
}

func TestContacts(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) // 17:00 in Shanghai
	s, st := newServer(t, "cn-bank", now)
	ctx := context.Background()
	// Two SMS earlier today, counted by the gate as it would have.
	for i, at := range []time.Time{now.Add(-8 * time.Hour), now.Add(-6 * time.Hour)} {
		id := "I-" + string(rune('a'+i))
		for _, ch := range []string{"sms", policy.ChannelAny} {
			if err := st.RecordEvent(ctx, "D-7", store.Stream{Event: policy.EventAttempt, Channel: ch, Scope: policy.ScopeDebtor}, id, at, 48*time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := st.Accept(ctx, id, "D-7", "overdue_notice", status.Entry{At: at, State: status.Accepted}); err != nil {
			t.Fatal(err)
		}
	}

	rr := serve(t, s, http.MethodGet, "/v1/debtors/D-7/contacts", "")
	if rr.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rr.Code, rr.Body)
	}
	var v ContactView
	if err := json.Unmarshal(rr.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Recent) != 2 || v.Recent[0].IntentID != "I-b" || v.Recent[0].State != status.Accepted {
		t.Errorf("recent %+v, want I-b then I-a", v.Recent)
	}
	if v.Profile != "cn-bank" || len(v.Zones) != 1 || v.Zones[0] != "Asia/Shanghai" {
		t.Errorf("profile %q zones %v", v.Profile, v.Zones)
	}
	sms := v.Channels["sms"]
	midnight := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	if sms == nil || sms.AllowedNow || sms.BlockedBy != "cn.sms.daily" || sms.NextAllowed == nil || !sms.NextAllowed.Equal(midnight) {
		t.Fatalf("sms %+v, want blocked by cn.sms.daily until Shanghai midnight", sms)
	}
	var daily *RuleState
	for i := range sms.Rules {
		if sms.Rules[i].Rule == "cn.sms.daily" {
			daily = &sms.Rules[i]
		}
	}
	if daily == nil || *daily.Count != 2 || *daily.Limit != 2 || daily.Source == "" {
		t.Errorf("cn.sms.daily standing %+v, want 2 of 2 with its source", daily)
	}
	if e := v.Channels["email"]; e == nil || !e.AllowedNow {
		t.Errorf("email %+v, want allowed now", e)
	}

	// At 23:00 in Shanghai nothing may go out before 08:00.
	s.Now = func() time.Time { return time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC) }
	rr = serve(t, s, http.MethodGet, "/v1/debtors/D-7/contacts", "")
	json.Unmarshal(rr.Body.Bytes(), &v)
	if e := v.Channels["email"]; e.AllowedNow || e.BlockedBy != "cn.quiet-hours" || !e.NextAllowed.Equal(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("email at 23:00 %+v, want blocked by cn.quiet-hours until 08:00", e)
	}

	if rr := serve(t, s, http.MethodGet, "/v1/debtors/bad%7Bid/contacts", ""); rr.Code != http.StatusBadRequest {
		t.Errorf("bad debtor id: HTTP %d, want 400", rr.Code)
	}
	if rr := serve(t, s, http.MethodGet, "/v1/debtors/D-7/contacts?timezone=Mars/Base", ""); rr.Code != http.StatusBadRequest {
		t.Errorf("bad zone: HTTP %d, want 400", rr.Code)
	}
}

func TestConversations(t *testing.T) {
	now := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	s, _ := newServer(t, "us-regf", now)
	for _, tc := range []struct {
		name, body string
		code       int
	}{
		{"recorded", `{"debt_id":"L-1","channel":"voice","at":"2026-11-24T14:00:00Z"}`, http.StatusCreated},
		{"debt required", `{"channel":"voice"}`, http.StatusBadRequest},
		{"unknown channel", `{"debt_id":"L-1","channel":"fax"}`, http.StatusBadRequest},
		{"in the future", `{"debt_id":"L-1","at":"2026-11-25T15:00:00Z"}`, http.StatusBadRequest},
		{"unknown field", `{"debt_id":"L-1","note":"x"}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rr := serve(t, s, http.MethodPost, "/v1/debtors/D-9/conversations", tc.body); rr.Code != tc.code {
				t.Errorf("HTTP %d (%s), want %d", rr.Code, rr.Body, tc.code)
			}
		})
	}
	// The conversation blocks calls about that debt for 7 days.
	rr := serve(t, s, http.MethodGet, "/v1/debtors/D-9/contacts?debt_id=L-1&timezone=America/New_York", "")
	var v ContactView
	json.Unmarshal(rr.Body.Bytes(), &v)
	voice := v.Channels["voice"]
	want := time.Date(2026, 12, 1, 14, 0, 0, 1e6, time.UTC)
	if voice == nil || voice.AllowedNow || voice.BlockedBy != "regf.after-conversation" || !voice.NextAllowed.Equal(want) {
		t.Errorf("voice %+v, want blocked by regf.after-conversation until %s", voice, want)
	}
}
