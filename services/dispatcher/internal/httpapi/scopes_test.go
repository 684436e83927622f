package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/optout"
)

// recordingPublisher keeps what would have gone to Kafka.
type recordingPublisher struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (p *recordingPublisher) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *recordingPublisher) optOuts(t *testing.T) []optout.OptOut {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []optout.OptOut
	for _, m := range p.msgs {
		var o optout.OptOut
		if err := json.Unmarshal(m.Value, &o); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

// call sends method path with a bearer key and returns status and body.
func call(t *testing.T, base, key, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestComplianceScope: legal states, and lifting an opt-out the debtor
// made, need the compliance scope; write keeps what intake systems need.
// Sources only the service writes are refused from the API, and every
// change records the key's id (never the key) as its actor.
func TestComplianceScope(t *testing.T) {
	pub := &recordingPublisher{}
	s, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) {
		d.OptOuts = &optout.Recorder{Topic: "reminders.optouts", Pub: pub, Hot: d.OptOuts.(*optout.Recorder).Hot}
	})
	_ = s
	keys, _ := optout.ParseKeys(testOptOutKeys)
	tok, err := keys.Sign(optout.Claims{DebtorID: "D-SC", Channel: "sms", Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, key, method, path, body string
		code                          int
	}{
		{"write cannot set a legal state", writeKey, "PUT", "/v1/debtors/D-SC/optouts/cease_and_desist", "", 403},
		{"compliance sets it", complianceKey, "PUT", "/v1/debtors/D-SC/optouts/cease_and_desist", `{"reason":"letter received"}`, 200},
		{"write cannot lift it", writeKey, "DELETE", "/v1/debtors/D-SC/optouts/cease_and_desist", "", 403},
		{"nor attorney_represented", writeKey, "PUT", "/v1/debtors/D-SC/optouts/attorney_represented", "", 403},
		{"nor dispute_open", writeKey, "DELETE", "/v1/debtors/D-SC/optouts/dispute_open", "", 403},
		{"compliance lifts it", complianceKey, "DELETE", "/v1/debtors/D-SC/optouts/cease_and_desist", "", 200},
		{"write records the bank's opt-out", writeKey, "PUT", "/v1/debtors/D-SC/optouts/email", `{"reason":"asked at the branch"}`, 200},
		{"write lifts the bank's opt-out", writeKey, "DELETE", "/v1/debtors/D-SC/optouts/email", "", 200},
		{"source link is the service's", adminKey, "PUT", "/v1/debtors/D-SC/optouts/sms", `{"source":"link"}`, 400},
		{"source sms_keyword is the service's", adminKey, "PUT", "/v1/debtors/D-SC/optouts/sms", `{"source":"sms_keyword"}`, 400},
		{"source provider is the service's", complianceKey, "DELETE", "/v1/debtors/D-SC/optouts/sms", `{"source":"provider"}`, 400},
		{"source bank_request is the API's", writeKey, "PUT", "/v1/debtors/D-SC/optouts/voice", `{"source":"bank_request"}`, 200},
	}
	for _, st := range steps {
		if code, body := call(t, ts.URL, st.key, st.method, st.path, st.body); code != st.code {
			t.Errorf("%s: %s %s: HTTP %d %s, want %d", st.name, st.method, st.path, code, body, st.code)
		}
	}
	// The debtor opts out of SMS by the link.
	res, err := http.Post(ts.URL+"/u/"+tok, "application/x-www-form-urlencoded", strings.NewReader(""))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("opt-out by link: %v %v", res, err)
	}
	res.Body.Close()
	for _, st := range []struct {
		name, key, method, path string
		code                    int
	}{
		{"write cannot lift the debtor's opt-out", writeKey, "DELETE", "/v1/debtors/D-SC/optouts/sms", 403},
		{"nor by lifting everything", writeKey, "DELETE", "/v1/debtors/D-SC/optouts", 403},
		{"compliance can", complianceKey, "DELETE", "/v1/debtors/D-SC/optouts/sms", 200},
	} {
		if code, body := call(t, ts.URL, st.key, st.method, st.path, ""); code != st.code {
			t.Errorf("%s: HTTP %d %s, want %d", st.name, code, body, st.code)
		}
	}
	// Every change on the topic names its actor; none names a key.
	ids := map[string]string{writeKey: "api-key:intake", complianceKey: "api-key:" + HashAPIKey(complianceKey)[:12]}
	var got []string
	for _, o := range pub.optOuts(t) {
		got = append(got, o.Channel+"/"+o.Source+"/"+o.Actor)
		for k := range scopeKeys {
			if strings.Contains(o.Actor, scopeKeys[k]) || strings.Contains(o.Reason, scopeKeys[k]) {
				t.Errorf("an opt-out record carries an API key: %+v", o)
			}
		}
	}
	want := []string{
		"dnc:cease_and_desist/bank_request/" + ids[complianceKey], "dnc:cease_and_desist/bank_request/" + ids[complianceKey],
		"email/bank_request/" + ids[writeKey], "email/bank_request/" + ids[writeKey], "voice/bank_request/" + ids[writeKey],
		"sms/link/debtor", "sms/bank_request/" + ids[complianceKey],
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("opt-out records (channel/source/actor):\n got %v\nwant %v", got, want)
	}
	// The API shows the actor too.
	_, body := call(t, ts.URL, readKey, "GET", "/v1/debtors/D-SC/optouts", "")
	if !strings.Contains(body, `"actor":"api-key:intake"`) {
		t.Errorf("GET optouts does not show the actor: %s", body)
	}
}
