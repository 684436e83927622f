package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// flakyPublisher records what would have gone to Kafka, or fails while
// fail is set (Kafka without enough replicas).
type flakyPublisher struct {
	recordingPublisher
	fail atomic.Bool
}

func (p *flakyPublisher) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if p.fail.Load() {
		return errors.New("kafka: not enough replicas")
	}
	return p.recordingPublisher.WriteMessages(ctx, msgs...)
}

// inboundServer is the API on a real HTTP server whose opt-outs go to pub
// and to the Redis store it returns.
func inboundServer(t *testing.T) (*inboundClient, *store.Store, *flakyPublisher) {
	t.Helper()
	pub := &flakyPublisher{}
	var st *store.Store
	s, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) {
		st = d.Webhooks.(*store.Store)
		d.OptOuts = &optout.Recorder{Topic: kafkaio.DefaultTopics.OptOuts, Pub: pub, Hot: st}
	})
	return &inboundClient{t: t, base: ts.URL, s: s}, st, pub
}

type inboundClient struct {
	t    *testing.T
	base string
	s    *Server
}

// sms posts an SMS reply from a number, signed as Twilio signs it; sid ""
// sends no MessageSid. It returns the status and the TwiML.
func (h *inboundClient) sms(from, body, sid string) (int, string) {
	h.t.Helper()
	const path = "/webhooks/twilio/inbound"
	form := url.Values{"From": {from}, "To": {"+15005550006"}, "Body": {body}}
	if sid != "" {
		form.Set("MessageSid", sid)
	}
	req, _ := http.NewRequest(http.MethodPost, h.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilioSign(twilioToken, "https://collect.bank.example"+path, form))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// numberStopped reports whether SMS to phone is opted out in st, and the
// record.
func numberStopped(t *testing.T, st *store.Store, phone string) (bool, optout.OptOut) {
	t.Helper()
	h, err := st.NumberOptOutsOf(context.Background(), st.Digest(phone))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := h["sms"]
	var o optout.OptOut
	if ok {
		if err := json.Unmarshal([]byte(v), &o); err != nil {
			t.Fatal(err)
		}
	}
	return ok, o
}

// A STOP from a number we never messaged (no debtor known at it) opts the
// number out: one record on reminders.optouts keyed number:<digest>/sms,
// carrying the digest and never the number, and the same in Redis; a START
// from it records the removal under the same key.
func TestInboundStopOfAnUnknownNumber(t *testing.T) {
	h, st, pub := inboundServer(t)
	const phone = "+8613811112222"
	d := st.Digest(phone)
	if ds, _ := st.DebtorsAt(context.Background(), phone); len(ds) != 0 {
		t.Fatalf("debtors at the number: %v, want none", ds)
	}
	if code, reply := h.sms(phone, "退订", "SM-U1"); code != 200 || !strings.Contains(reply, "您已退订") {
		t.Fatalf("STOP: HTTP %d %s", code, reply)
	}
	msgs := pub.snapshot(kafkaio.DefaultTopics.OptOuts)
	if len(msgs) != 1 {
		t.Fatalf("%d records published, want 1", len(msgs))
	}
	if k := string(msgs[0].Key); k != "number:"+d+"/sms" {
		t.Errorf("key %q, want number:%s/sms", k, d)
	}
	for _, m := range msgs {
		if national := strings.TrimPrefix(phone, "+86"); strings.Contains(string(m.Key)+string(m.Value), national) {
			t.Errorf("the number is in the record: %s %s", m.Key, m.Value)
		}
	}
	var o optout.OptOut
	if err := json.Unmarshal(msgs[0].Value, &o); err != nil {
		t.Fatal(err)
	}
	if o.Number != d || o.DebtorID != "" || o.Channel != "sms" || o.Source != optout.SourceSMSKeyword || o.Reason != "reply stop" ||
		o.Actor != optout.ActorDebtor || !o.At.Equal(now) || o.Removed {
		t.Errorf("record %s, want the number's SMS opt-out by keyword at %v", msgs[0].Value, now)
	}
	if ok, hot := numberStopped(t, st, phone); !ok || hot.Number != d || hot.Source != optout.SourceSMSKeyword {
		t.Errorf("in Redis: %v %+v, want the number's opt-out", ok, hot)
	}
	if ok, _ := numberStopped(t, st, "+8613811112223"); ok {
		t.Error("another number is opted out")
	}

	if code, reply := h.sms(phone, "START", "SM-U2"); code != 200 || !strings.Contains(reply, "您已重新订阅") {
		t.Fatalf("START: HTTP %d %s", code, reply)
	}
	msgs = pub.snapshot(kafkaio.DefaultTopics.OptOuts)
	if len(msgs) != 2 {
		t.Fatalf("%d records published, want 2", len(msgs))
	}
	var lift optout.OptOut
	json.Unmarshal(msgs[1].Value, &lift)
	if string(msgs[1].Key) != "number:"+d+"/sms" || !lift.Removed || lift.Number != d || lift.Reason != "reply start" {
		t.Errorf("START published %s %s, want the removal of number:%s/sms", msgs[1].Key, msgs[1].Value, d)
	}
	if ok, _ := numberStopped(t, st, phone); ok {
		t.Error("still opted out after START")
	}
}

// START lifts only what a keyword set: a debtor the bank opted out of SMS,
// or who opted out by the link, stays opted out; a debtor-level keyword
// opt-out written by an older version is lifted.
func TestInboundStartLiftsOnlyKeywordOptOuts(t *testing.T) {
	h, st, pub := inboundServer(t)
	ctx := context.Background()
	const phone = "+8613833334444"
	for _, d := range []string{"D-BANK", "D-LINK", "D-OLD", "D-NONE"} {
		indexNumber(t, st, d, phone)
	}
	// The bank's opt-out, through the API.
	if code, body := call(t, h.base, writeKey, "PUT", "/v1/debtors/D-BANK/optouts/sms", `{"reason":"asked at the branch"}`); code != 200 {
		t.Fatalf("bank opt-out: HTTP %d %s", code, body)
	}
	// The debtor's own, by the link in a message.
	keys, _ := optout.ParseKeys(testOptOutKeys)
	tok, err := keys.Sign(optout.Claims{DebtorID: "D-LINK", Channel: "sms", Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(h.base+"/u/"+tok, "application/x-www-form-urlencoded", strings.NewReader(""))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("link opt-out: %v %v", res, err)
	}
	res.Body.Close()
	// A keyword opt-out as versions before number opt-outs wrote it.
	old, _ := json.Marshal(optout.OptOut{DebtorID: "D-OLD", Channel: "sms", Source: optout.SourceSMSKeyword, Reason: "reply stop", At: now, Actor: optout.ActorDebtor})
	if err := st.SetOptOut(ctx, "D-OLD", "sms", old); err != nil {
		t.Fatal(err)
	}
	source := func(debtor string) string {
		h, err := st.OptOutsOf(ctx, debtor)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := h["sms"]
		if !ok {
			return ""
		}
		var o optout.OptOut
		json.Unmarshal([]byte(v), &o)
		return o.Source
	}
	if code, _ := h.sms(phone, "STOP", "SM-L1"); code != 200 {
		t.Fatalf("STOP: HTTP %d", code)
	}
	if source("D-NONE") != "" {
		t.Error("STOP wrote a debtor-level opt-out")
	}
	before := len(pub.snapshot(kafkaio.DefaultTopics.OptOuts))
	if code, _ := h.sms(phone, "UNSTOP", "SM-L2"); code != 200 {
		t.Fatalf("UNSTOP: HTTP %d", code)
	}
	for debtor, want := range map[string]string{"D-BANK": optout.SourceBankRequest, "D-LINK": optout.SourceLink, "D-OLD": "", "D-NONE": ""} {
		if got := source(debtor); got != want {
			t.Errorf("%s after START: SMS opt-out source %q, want %q", debtor, got, want)
		}
	}
	if ok, _ := numberStopped(t, st, phone); ok {
		t.Error("the number is still opted out after START")
	}
	// What START published: the number's removal and D-OLD's, nothing else.
	var keysOut []string
	for _, m := range pub.snapshot(kafkaio.DefaultTopics.OptOuts)[before:] {
		var o optout.OptOut
		json.Unmarshal(m.Value, &o)
		if !o.Removed {
			t.Errorf("START published an opt-out: %s", m.Value)
		}
		keysOut = append(keysOut, string(m.Key))
	}
	if want := []string{"number:" + st.Digest(phone) + "/sms", "D-OLD/sms"}; strings.Join(keysOut, " ") != strings.Join(want, " ") {
		t.Errorf("START published %v, want %v", keysOut, want)
	}
}

// Each inbound message is applied once, by MessageSid: STOP sid1, START
// sid2, STOP sid3 and then START sid2 replayed leaves the number opted out,
// the replay publishing nothing and answering as the first did. A message
// whose applying failed (Kafka down: 500) is applied when it comes again;
// one without a MessageSid is applied every time.
func TestInboundReplay(t *testing.T) {
	h, st, pub := inboundServer(t)
	const phone = "+15005551234"
	published := func() int { return len(pub.snapshot(kafkaio.DefaultTopics.OptOuts)) }
	_, stop1 := h.sms(phone, "STOP", "SM-R1")
	_, start2 := h.sms(phone, "START", "SM-R2")
	h.sms(phone, "STOP", "SM-R3")
	if ok, _ := numberStopped(t, st, phone); !ok {
		t.Fatal("not opted out after STOP, START, STOP")
	}
	n := published()
	if n != 3 {
		t.Errorf("%d records published for three messages, want 3", n)
	}
	code, replay := h.sms(phone, "START", "SM-R2")
	if code != 200 || replay != start2 || !strings.Contains(replay, "text messages again") {
		t.Errorf("replayed START: HTTP %d %q, want %q", code, replay, start2)
	}
	if ok, _ := numberStopped(t, st, phone); !ok {
		t.Error("a replayed START lifted the opt-out")
	}
	if published() != n {
		t.Errorf("the replay published %d records", published()-n)
	}
	if _, again := h.sms(phone, "STOP", "SM-R1"); again != stop1 {
		t.Errorf("replayed STOP answered %q, want %q", again, stop1)
	}

	// Kafka fails: the START is not applied, and its retry is.
	pub.fail.Store(true)
	if code, _ := h.sms(phone, "START", "SM-R4"); code != http.StatusInternalServerError {
		t.Errorf("START with Kafka down: HTTP %d, want 500", code)
	}
	pub.fail.Store(false)
	if ok, _ := numberStopped(t, st, phone); !ok {
		t.Error("a START that was not recorded on the topic lifted the opt-out")
	}
	if code, _ := h.sms(phone, "START", "SM-R4"); code != 200 {
		t.Errorf("retried START: HTTP %d", code)
	}
	if ok, _ := numberStopped(t, st, phone); ok {
		t.Error("the retried START was not applied")
	}

	// Without a MessageSid nothing is deduplicated.
	h.sms(phone, "STOP", "")
	h.sms(phone, "START", "")
	h.sms(phone, "STOP", "")
	if ok, _ := numberStopped(t, st, phone); !ok {
		t.Error("STOP, START, STOP without MessageSid: not opted out")
	}
}

// The number's opt-out survives a Redis loss: applying the records
// published on reminders.optouts (as the rebuild does) into a fresh Redis
// namespace restores it; after a START, the rebuild restores none.
func TestInboundRebuild(t *testing.T) {
	h, st, pub := inboundServer(t)
	ctx := context.Background()
	const phone, other = "+8613855556666", "+8613855557777"
	h.sms(phone, "TD", "SM-B1")
	h.sms(phone, "START", "SM-B2")
	h.sms(phone, "拒收", "SM-B3")
	h.sms(other, "STOP", "SM-B4")
	h.sms(other, "START", "SM-B5")
	rebuild := func() *store.Store {
		rdb, prefix := testenv.Redis(t)
		fresh, err := store.New(rdb, store.Config{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pub.snapshot(kafkaio.DefaultTopics.OptOuts) {
			var o optout.OptOut
			if err := json.Unmarshal(m.Value, &o); err != nil {
				t.Fatal(err)
			}
			if err := optout.Apply(ctx, fresh, o, m.Value); err != nil {
				t.Fatalf("applying %s: %v", m.Key, err)
			}
		}
		return fresh
	}
	fresh := rebuild()
	if fresh.Digest(phone) != st.Digest(phone) {
		t.Fatal("the fresh store digests numbers under another key")
	}
	ok, o := numberStopped(t, fresh, phone)
	if !ok || o.Reason != "reply stop" || o.Number != st.Digest(phone) {
		t.Errorf("rebuilt: %v %+v, want the number's opt-out", ok, o)
	}
	if ok, _ := numberStopped(t, fresh, other); ok {
		t.Error("rebuilt: the number that sent START is opted out")
	}
	h.sms(phone, "START", "SM-B6")
	if ok, _ := numberStopped(t, rebuild(), phone); ok {
		t.Error("rebuilt after START: still opted out")
	}
}

// The whole way, through the worker's gate: a STOP from a number never
// messaged suppresses the next SMS to it for any debtor (opted_out); after
// START it is sent again, except for a debtor the bank opted out of SMS;
// a replayed START after a new STOP changes nothing.
func TestInboundStopReachesTheGate(t *testing.T) {
	h, st, _ := inboundServer(t)
	ctx := context.Background()
	const phone = "+8613877778888"
	_, w, _ := twoWorkers(t, h.s, st, func() time.Time { return now })
	decide := func(id, debtor string) status.Record {
		t.Helper()
		body := intentWith(id, func(m map[string]any) {
			m["debtor_id"], m["channels"], m["fallback"] = debtor, []string{"sms"}, false
			m["to"] = map[string]any{"phone": phone}
			delete(m, "not_before")
			delete(m, "expires_at")
		})
		if _, err := w.Decide(ctx, kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Key: []byte(debtor), Value: []byte(body)}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		rec, err := st.Get(ctx, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return rec
	}
	suppressed := func(rec status.Record) bool {
		return rec.State == status.Suppressed && rec.Last().Reason == "opted_out"
	}
	h.sms(phone, "STOP", "SM-G1")
	for _, id := range []string{"I-G1", "I-G2"} {
		if rec := decide(id, "D-"+id); !suppressed(rec) {
			t.Errorf("%s after STOP: %s/%s, want suppressed/opted_out", id, rec.State, rec.Last().Reason)
		}
	}
	if code, body := call(t, h.base, writeKey, "PUT", "/v1/debtors/D-GBANK/optouts/sms", `{"reason":"asked at the branch"}`); code != 200 {
		t.Fatalf("bank opt-out: HTTP %d %s", code, body)
	}
	h.sms(phone, "START", "SM-G2")
	if rec := decide("I-G3", "D-I-G1"); rec.State != status.Sent {
		t.Errorf("after START: %s/%s, want sent", rec.State, rec.Last().Reason)
	}
	if rec := decide("I-G4", "D-GBANK"); !suppressed(rec) {
		t.Errorf("the bank's opt-out after START: %s/%s, want suppressed/opted_out", rec.State, rec.Last().Reason)
	}
	h.sms(phone, "STOP", "SM-G3")
	h.sms(phone, "START", "SM-G2") // replayed
	if rec := decide("I-G5", "D-G5"); !suppressed(rec) {
		t.Errorf("after STOP and a replayed START: %s/%s, want suppressed/opted_out", rec.State, rec.Last().Reason)
	}
}
