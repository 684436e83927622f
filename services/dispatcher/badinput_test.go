package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/contactd/dispatcher/pkg/channel/email/smtptest"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// badDebtor is the key of every intent, good or bad, in the bad-input
// tests: one key, one partition, one lane, so a bad value that blocked its
// lane would hold up the valid intents behind it.
const badDebtor = "D-BADIN-0001"

// badOutcome is what a bad input must end as.
type badOutcome int

const (
	outDLQ     badOutcome = iota // rejected: a DLQ record (Kafka) or a 400/413 (HTTP)
	outExpired                   // Kafka: suppressed/expired; HTTP: 400 on expires_at
	outSent                      // valid after all: it is sent
)

// badCase is one bad input and what it must end as.
type badCase struct {
	name    string
	value   []byte
	outcome badOutcome
	code    string // the first field error's code (DLQ header or HTTP body)
	field   string // the first field error's field ("" for the value as a whole)
	id      string // the intent id, when the value has one that can be recorded
	// recorded: the value names a usable id, so its record says rejected.
	recorded bool
	// secret is text of the value that must never appear in a reason.
	secret string
}

// badInputs builds the bad inputs, each from a fresh valid intent of g.
func badInputs(t *testing.T, g *sample.Generator) []badCase {
	next := func() intent.Intent {
		in := g.Next()
		in.DebtorID = badDebtor
		in.Template = "overdue_notice"
		in.Params = map[string]string{"name": "张三", "amount": "1,234.00", "due_date": "2026-11-30"}
		in.Locale = "zh-CN"
		in.Channels, in.Fallback = []intent.Channel{intent.SMS}, false
		return in
	}
	edit := func(f func(*intent.Intent)) (intent.Intent, []byte) {
		in := next()
		f(&in)
		return in, mustJSON(t, in)
	}
	var out []badCase
	add := func(c badCase) { out = append(out, c) }

	_, v := edit(func(*intent.Intent) {})
	add(badCase{name: "truncated JSON", value: v[:len(v)*2/3], code: intent.CodeMalformedJSON})
	_, v = edit(func(*intent.Intent) {})
	add(badCase{name: "truncated to one byte", value: v[:1], code: intent.CodeMalformedJSON})

	// Over intent.MaxSize. On Kafka 100 KiB, not 10 MB: a value the worker
	// cannot dead-letter wedges its partition (TestBadInputOversizeOnKafka);
	// the 10 MB value is tested over HTTP.
	_, v = edit(func(in *intent.Intent) { in.Params["name"] = strings.Repeat("长", 100<<10/3) })
	add(badCase{name: "100 KiB value", value: v, code: intent.CodeTooLarge})

	in, v := edit(func(*intent.Intent) {})
	i := bytes.Index(v, []byte("张三"))
	bad := append(append(append([]byte{}, v[:i]...), 0xff, 0xfe, 0xe5), v[i:]...)
	add(badCase{name: "invalid UTF-8", value: bad, code: intent.CodeInvalidUTF8, id: in.ID})

	deep := []byte(`{"params":`)
	deep = append(deep, bytes.Repeat([]byte(`{"a":`), 9999)...)
	deep = append(deep, '1')
	deep = append(deep, bytes.Repeat([]byte(`}`), 10000)...)
	add(badCase{name: "nested 10000 deep", value: deep, code: intent.CodeTooDeep})

	for _, chs := range [][]intent.Channel{{"fax"}, {"SMS"}, {"sms", "pigeon"}, {""}} {
		in, v := edit(func(in *intent.Intent) { in.Channels = chs })
		field := fmt.Sprintf("channels[%d]", len(chs)-1)
		add(badCase{name: fmt.Sprintf("channels %q", chs), value: v, code: intent.CodeUnknown, field: field, id: in.ID, recorded: true})
	}

	for _, p := range []struct{ name, phone string }{
		{"no plus", "8613800138000"},
		{"00 prefix", "008613800138000"},
		{"letters", "+86138OO138000"},
		{"too short", "+861"},
		{"too long", "+86138001380001234"},
		{"no such country code", "+99913800138000"},
		{"leading zero country", "+0613800138000"},
		{"spaces", "+86 138 0013 8000"},
		{"dashes", "+86-138-0013-8000"},
		{"full-width digits", "+８６１３８００１３８０００"},
		{"full-width plus", "＋8613800138000"},
		{"a US number that is not valid", "+11234567890"},
		{"a US number with a 555 exchange area", "+15550100000"},
		{"a Chinese mobile one digit short", "+861380013800"},
	} {
		in, v := edit(func(in *intent.Intent) { in.To.Phone = p.phone })
		add(badCase{name: "phone: " + p.name, value: v, code: intent.CodeInvalidFormat, field: "to.phone",
			id: in.ID, recorded: true, secret: p.phone})
	}

	for _, tz := range []string{"Mars/Olympus", "UTC+8", "Local", "../../etc/passwd", "Asia/Shanghai "} {
		in, v := edit(func(in *intent.Intent) { in.Timezone = tz })
		add(badCase{name: "time zone " + tz, value: v, code: intent.CodeUnknown, field: "timezone", id: in.ID, recorded: true})
	}

	_, v = edit(func(*intent.Intent) {})
	v = append([]byte(`{"priority":"high",`), v[1:]...)
	add(badCase{name: "unknown field", value: v, code: intent.CodeUnknownField, field: "priority"})
	_, v = edit(func(*intent.Intent) {})
	v = bytes.Replace(v, []byte(`"to":{`), []byte(`"to":{"fax":"+8613800138000",`), 1)
	add(badCase{name: "unknown field in to", value: v, code: intent.CodeUnknownField, field: "to.fax"})
	_, v = edit(func(*intent.Intent) {})
	v = bytes.Replace(v, []byte(`"locale":"zh-CN"`), []byte(`"locale":"zh-CN","locale":"en"`), 1)
	add(badCase{name: "duplicate key", value: v, code: intent.CodeDuplicateField, field: "locale"})
	_, v = edit(func(*intent.Intent) {})
	v = bytes.Replace(v, []byte(`"name":"张三"`), []byte(`"name":"张三","name":"李四"`), 1)
	add(badCase{name: "duplicate param", value: v, code: intent.CodeDuplicateField, field: "params.name"})

	in, v = edit(func(in *intent.Intent) {
		p := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
		in.ExpiresAt = &p
	})
	add(badCase{name: "expired", value: v, outcome: outExpired, code: "expired", field: "expires_at", id: in.ID})

	for _, ch := range []intent.Channel{intent.Email, intent.SMS} {
		in, v = edit(func(in *intent.Intent) {
			in.Channels = []intent.Channel{ch}
			in.Params["name"] = "<script>alert(1)</script>"
		})
		add(badCase{name: "script in params by " + string(ch), value: v, outcome: outSent, id: in.ID})
	}
	// Values that do not fit their param's type are field errors, never text
	// inside the bank's message.
	in, v = edit(func(in *intent.Intent) { in.Params["amount"] = `<b onmouseover="alert(2)">1,000</b>` })
	add(badCase{name: "HTML as an amount", value: v, code: intent.CodeInvalidFormat, field: "params.amount", id: in.ID, recorded: true})
	in, v = edit(func(in *intent.Intent) { in.Params["amount"] = "0.00. URGENT: pay at http://pay.example" })
	add(badCase{name: "a link after an amount", value: v, code: intent.CodeInvalidFormat, field: "params.amount", id: in.ID, recorded: true})
	in, v = edit(func(in *intent.Intent) { in.Params["name"] = "张三‮00.432,1" })
	add(badCase{name: "a right-to-left override in a name", value: v, code: intent.CodeInvalidFormat, field: "params.name", id: in.ID, recorded: true})
	return out
}

// validBad makes the valid SMS intents interleaved with the bad ones.
func validBad(g *sample.Generator, n int) []intent.Intent {
	out := make([]intent.Intent, n)
	for i := range out {
		in := g.Next()
		in.DebtorID = badDebtor
		in.Channels, in.Fallback = []intent.Channel{intent.SMS}, false
		out[i] = in
	}
	return out
}

// badProducer writes to reminders.intents like any kafka-go client, with
// room for large values.
func badProducer(brokers []string) *kafka.Writer {
	return &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: kafkaio.DefaultTopics.Intents, Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond, BatchSize: 1000,
		BatchBytes: 32 << 20, WriteTimeout: 30 * time.Second,
	}
}

// badLatencies returns, per intent, the time from start[id] to its sent entry.
func badLatencies(t *testing.T, svc *running, ins []intent.Intent, start map[string]time.Time) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, in := range ins {
		rec, err := svc.Store().GetFor(context.Background(), in.DebtorID, in.ID)
		if err != nil {
			t.Fatalf("record of %s: %v", in.ID, err)
		}
		var sent *status.Entry
		for i, e := range rec.Timeline {
			if e.State == status.Sent {
				sent = &rec.Timeline[i]
			}
		}
		if sent == nil {
			t.Fatalf("intent %s has no sent entry: %+v", in.ID, rec.Timeline)
		}
		out = append(out, sent.At.Sub(start[in.ID]))
	}
	return out
}

// p95 is the 95th percentile (nearest rank).
func badP95(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := (95*len(s) + 99) / 100
	return s[max(k-1, 0)]
}

// badProblem is an error response of the API.
type badProblem struct {
	Error  string              `json:"error"`
	Fields []intent.FieldError `json:"fields"`
}

func badPost(t *testing.T, base string, body []byte) (int, badProblem) {
	t.Helper()
	res := api(t, http.MethodPost, base+"/v1/intents", string(body))
	defer res.Body.Close()
	var p badProblem
	b, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(b, &p)
	return res.StatusCode, p
}

// TestBadInputEndToEnd feeds the running service bad input of every kind,
// through Kafka and over HTTP, each between two valid intents for the same
// debtor. Every bad input ends with a reason naming its field (a DLQ record,
// or a 400/413 with field errors), expired ones end suppressed, valid ones
// that only look hostile are sent with their HTML escaped, and the valid
// intents go through as fast as in a run without bad input.
func TestBadInputEndToEnd(t *testing.T) {
	h, _ := kfHarness(t, 3)
	mailer := smtptest.NewServer(t, smtptest.WithoutSTARTTLS())
	h.vars = map[string]string{
		"DISPATCHER_EMAIL_PROVIDER": "smtp", "DISPATCHER_SMTP_ADDR": mailer.Addr(),
		"DISPATCHER_SMTP_FROM": "示例银行 <noreply@bank.example>", "DISPATCHER_SMTP_TLS": "none",
	}
	svc := h.start(Roles{Worker: true, API: true, Dev: true}) // dev: plaintext SMTP to the local server
	g := sample.New(97, 50, time.Now())
	w := badProducer(h.brokers)
	defer w.Close()
	ctx := context.Background()

	// The group has joined and the lane runs before anything is measured.
	warm := validBad(g, 1)
	h.produceIntents(warm)
	testenv.Eventually(t, 60*time.Second, "the first intent sent", func() bool { return h.statesOf(svc, warm)[status.Sent] == 1 })

	kafkaCases, httpCases := badInputs(t, g), badInputs(t, g)

	// run sends the Kafka stream in one write, then posts the HTTP stream
	// one request at a time, and waits until every valid intent is sent.
	// Bad inputs are nil in the control run: only the valid intents go.
	type result struct {
		valid []intent.Intent
		lat   []time.Duration
	}
	run := func(name string, kafkaBad, httpBad []badCase) result {
		start := map[string]time.Time{}
		var valid []intent.Intent
		kv := validBad(g, len(kafkaCases)+1)
		var msgs []kafka.Message
		for i, in := range kv {
			msgs = append(msgs, kafka.Message{Key: []byte(badDebtor), Value: mustJSON(t, in)})
			if i < len(kafkaBad) {
				msgs = append(msgs, kafka.Message{Key: []byte(badDebtor), Value: kafkaBad[i].value})
			}
		}
		t0 := time.Now()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("%s: produce: %v", name, err)
		}
		for _, in := range kv {
			start[in.ID] = t0
		}
		valid = append(valid, kv...)

		hv := validBad(g, len(httpCases)+1)
		for i, in := range hv {
			start[in.ID] = time.Now()
			if code, p := badPost(t, svc.base, mustJSON(t, in)); code != http.StatusAccepted {
				t.Fatalf("%s: POST of a valid intent: HTTP %d %+v", name, code, p)
			}
			if i >= len(httpBad) {
				continue
			}
			c := httpBad[i]
			code, p := badPost(t, svc.base, c.value)
			badCheckHTTP(t, c, code, p)
		}
		valid = append(valid, hv...)
		testenv.Eventually(t, 90*time.Second, name+": every valid intent sent", func() bool {
			return h.statesOf(svc, valid)[status.Sent] == len(valid)
		})
		return result{valid: valid, lat: badLatencies(t, svc, valid, start)}
	}

	control := run("control run", nil, nil)
	badRun := run("bad-input run", kafkaCases, httpCases)

	// The 10 MB body over HTTP: 413, and the server answers without
	// reading it all.
	badCheckHuge(t, svc.base, 10<<20)
	after := validBad(g, 1)
	if code, p := badPost(t, svc.base, mustJSON(t, after[0])); code != http.StatusAccepted {
		t.Fatalf("POST after the 10 MB body: HTTP %d %+v", code, p)
	}

	// Outcomes of the bad inputs that went through Kafka.
	var wantDLQ int
	byHash := map[[32]byte]*badCase{}
	for i, c := range kafkaCases {
		if c.outcome == outDLQ {
			wantDLQ++
			byHash[sha256.Sum256(c.value)] = &kafkaCases[i]
		}
	}
	testenv.Eventually(t, 60*time.Second, "the expired intent suppressed and the hostile-looking ones sent", func() bool {
		for _, c := range kafkaCases {
			rec, err := svc.Store().GetFor(ctx, badDebtor, c.id)
			switch {
			case c.outcome == outExpired && (err != nil || rec.State != status.Suppressed):
				return false
			case c.outcome == outSent && (err != nil || rec.State != status.Sent):
				return false
			}
		}
		for _, c := range httpCases {
			if rec, err := svc.Store().GetFor(ctx, badDebtor, c.id); c.outcome == outSent && (err != nil || rec.State != status.Sent) {
				return false
			}
		}
		return h.statesOf(svc, after)[status.Sent] == 1
	})
	for _, c := range kafkaCases {
		if c.outcome != outExpired {
			continue
		}
		rec, _ := svc.Store().GetFor(ctx, badDebtor, c.id)
		if rec.State != status.Suppressed || rec.Reason != status.ReasonExpired {
			t.Errorf("Kafka %s: %s/%s, want suppressed/expired", c.name, rec.State, rec.Reason)
		}
	}

	dlq := h.consumeAll(kafkaio.DefaultTopics.DLQ, wantDLQ)
	seen := map[*badCase]int{}
	for _, r := range dlq {
		c := byHash[sha256.Sum256(r.Value)]
		if c == nil {
			t.Errorf("DLQ record that is no bad input (%d bytes): %.80q", len(r.Value), r.Value)
			continue
		}
		seen[c]++
		hdr := map[string]string{}
		for _, x := range r.Headers {
			hdr[x.Key] = string(x.Value)
		}
		reason := hdr[kafkaio.HeaderReason]
		prefix := "invalid intent: "
		if c.field != "" {
			prefix += c.field + ": "
		}
		if hdr[kafkaio.HeaderCode] != c.code || !strings.HasPrefix(reason, prefix) || strings.ContainsAny(reason, "\r\n") {
			t.Errorf("Kafka %s: DLQ code %q reason %q, want code %q and a reason starting %q", c.name, hdr[kafkaio.HeaderCode], reason, c.code, prefix)
		}
		if c.secret != "" && strings.Contains(reason, c.secret) {
			t.Errorf("Kafka %s: the DLQ reason repeats the rejected value: %q", c.name, reason)
		}
		if string(r.Key) != badDebtor || hdr[kafkaio.HeaderSourceTopic] != kafkaio.DefaultTopics.Intents ||
			hdr[kafkaio.HeaderSourcePartition] == "" || hdr[kafkaio.HeaderSourceOffset] == "" || hdr[kafkaio.HeaderRejectedAt] == "" {
			t.Errorf("Kafka %s: DLQ key %q headers %v, want the original key and every source header", c.name, r.Key, hdr)
		}
	}
	for _, c := range kafkaCases {
		if c.outcome == outDLQ && seen[byHash[sha256.Sum256(c.value)]] != 1 {
			t.Errorf("Kafka %s: %d DLQ records, want 1", c.name, seen[byHash[sha256.Sum256(c.value)]])
		}
		if c.recorded {
			rec, err := svc.Store().GetFor(ctx, badDebtor, c.id)
			if err != nil || rec.State != status.Rejected {
				t.Errorf("Kafka %s: record %v %s, want rejected", c.name, err, rec.State)
			}
		}
	}
	if len(dlq) != wantDLQ {
		t.Errorf("DLQ has %d records, want %d (the Kafka bad inputs only)", len(dlq), wantDLQ)
	}

	// Every valid intent sent once, by the sandbox.
	counts := svc.Sandbox.Counts()
	for _, in := range append(append(append(warm, control.valid...), badRun.valid...), after...) {
		if counts[in.ID] != 1 {
			t.Errorf("valid intent %s handed to the sandbox %d times, want 1", in.ID, counts[in.ID])
		}
	}

	// Hostile-looking params are valid: sent as they are in the SMS, and
	// escaped in the e-mail's HTML.
	badCheckScript(t, svc, mailer, append(slices.Clone(kafkaCases), httpCases...))

	cp, bp := badP95(control.lat), badP95(badRun.lat)
	t.Logf("valid intents: control run %d, p95 %s (max %s); bad-input run %d between %d bad Kafka values and %d bad HTTP bodies, p95 %s (max %s)",
		len(control.lat), cp, slices.Max(control.lat), len(badRun.lat), len(kafkaCases), len(httpCases), bp, slices.Max(badRun.lat))
	if bp > cp+time.Second {
		t.Errorf("valid intents behind bad ones were delayed: p95 %s against %s without bad input", bp, cp)
	}
}

// badCheckHTTP checks the API's answer to one bad body.
func badCheckHTTP(t *testing.T, c badCase, code int, p badProblem) {
	t.Helper()
	switch c.outcome {
	case outSent:
		if code != http.StatusAccepted {
			t.Errorf("HTTP %s: %d %+v, want 202", c.name, code, p)
		}
		return
	case outExpired:
		// The API refuses what has already expired instead of queueing it.
	}
	want := http.StatusBadRequest
	if c.code == intent.CodeTooLarge {
		want = http.StatusRequestEntityTooLarge
	}
	if code != want || len(p.Fields) == 0 {
		t.Errorf("HTTP %s: %d %+v, want %d with field errors", c.name, code, p, want)
		return
	}
	if f := p.Fields[0]; f.Field != c.field || f.Code != c.code || f.Message == "" {
		t.Errorf("HTTP %s: first field error %+v, want field %q code %q", c.name, f, c.field, c.code)
	}
	if c.secret != "" && strings.Contains(fmt.Sprint(p), c.secret) {
		t.Errorf("HTTP %s: the answer repeats the rejected value: %+v", c.name, p)
	}
}

// badHugeBody is a request body of n bytes that stops after its first MiB
// until answered is closed, so a server that read the whole body before
// answering would be caught.
type badHugeBody struct {
	n, produced int64
	answered    chan struct{}
	gaveUp      bool
	reads       atomic.Int64
}

func (b *badHugeBody) Read(p []byte) (int, error) {
	if b.produced >= b.n {
		return 0, io.EOF
	}
	if b.produced >= 1<<20 && !b.gaveUp {
		select {
		case <-b.answered:
			return 0, errors.New("answered; the rest is not needed")
		case <-time.After(30 * time.Second):
			// No answer without the rest: send it, and the test fails below.
			b.gaveUp = true
		}
	}
	k := min(int64(len(p)), b.n-b.produced, 32<<10)
	if b.produced == 0 {
		k = int64(copy(p, `{"id":"`))
	} else {
		for i := range p[:k] {
			p[i] = 'a'
		}
	}
	b.produced += k
	b.reads.Store(b.produced)
	return int(k), nil
}

// badCheckHuge posts an n-byte body and checks that the API answers 413
// with a field error before it has been sent the whole body.
func badCheckHuge(t *testing.T, base string, n int64) {
	t.Helper()
	body := &badHugeBody{n: n, answered: make(chan struct{})}
	defer func() {
		select {
		case <-body.answered:
		default:
			close(body.answered)
		}
	}()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/intents", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = n
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatalf("POST of %d bytes: %v", n, err)
	}
	sent := body.reads.Load()
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	close(body.answered)
	var p badProblem
	_ = json.Unmarshal(b, &p)
	t.Logf("POST of %d MB: HTTP %d after %d KiB of the body had been handed to the connection", n>>20, res.StatusCode, sent>>10)
	if res.StatusCode != http.StatusRequestEntityTooLarge || len(p.Fields) == 0 || p.Fields[0].Code != intent.CodeTooLarge || p.Fields[0].Field != "" {
		t.Errorf("POST of %d bytes: HTTP %d %s, want 413 with a too_large field error", n, res.StatusCode, b)
	}
	if sent >= n {
		t.Errorf("the API answered only after the client had sent all %d bytes: it reads the whole body", n)
	}
}

// badCheckScript checks the intents whose params carry HTML and script:
// the SMS carries them as text, the e-mail's HTML part escaped.
func badCheckScript(t *testing.T, svc *running, mailer *smtptest.Server, cases []badCase) {
	t.Helper()
	const script = "<script>alert(1)</script>"
	var outbox struct {
		Entries []struct {
			IntentID string `json:"intent_id"`
			Channel  string `json:"channel"`
			Body     string `json:"body"`
		} `json:"entries"`
	}
	if code := getJSON(t, svc.base+"/v1/sandbox/outbox", &outbox); code != http.StatusOK {
		t.Fatalf("outbox: HTTP %d", code)
	}
	ids := map[string]bool{}
	wantSMS, wantMails := 0, 0
	for _, c := range cases {
		if c.outcome != outSent {
			continue
		}
		ids[c.id] = true
		if strings.Contains(c.name, "email") {
			wantMails++
		} else {
			wantSMS++
		}
	}
	var sms, mails int
	for _, e := range outbox.Entries {
		if !ids[e.IntentID] {
			continue
		}
		sms++
		if e.Channel != "sms" || !strings.Contains(e.Body, script) {
			t.Errorf("sandbox %s message %.200q, want the SMS with the name as written", e.Channel, e.Body)
		}
	}
	for _, m := range mailer.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("mail: %v", err)
		}
		if !ids[msg.Header.Get("X-Dispatcher-Intent")] {
			continue
		}
		mails++
		text, html := badMailParts(t, msg)
		if !strings.Contains(text, script) {
			t.Errorf("the text part lacks the name as written:\n%s", text)
		}
		low := strings.ToLower(html)
		if strings.Contains(low, "<script") || strings.Contains(low, "<b onmouseover") || strings.Contains(low, `onmouseover="`) {
			t.Errorf("the HTML part carries the params' markup unescaped:\n%s", html)
		}
		if !strings.Contains(html, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("the HTML part lacks the escaped params:\n%s", html)
		}
	}
	if sms != wantSMS || mails != wantMails {
		t.Errorf("%d SMS in the sandbox outbox and %d e-mails at the SMTP server for the intents with markup in their params, want %d and %d", sms, mails, wantSMS, wantMails)
	}
}

// badMailParts returns the decoded text/plain and text/html parts of msg.
func badMailParts(t *testing.T, msg *mail.Message) (text, html string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		t.Fatalf("mail Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	var walk func(r *multipart.Reader)
	walk = func(r *multipart.Reader) {
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("mail part: %v", err)
			}
			ct, cp, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if strings.HasPrefix(ct, "multipart/") {
				walk(multipart.NewReader(p, cp["boundary"]))
				continue
			}
			var body io.Reader = p
			switch strings.ToLower(p.Header.Get("Content-Transfer-Encoding")) {
			case "base64":
				body = base64.NewDecoder(base64.StdEncoding, p)
			case "quoted-printable":
				body = quotedprintable.NewReader(p)
			}
			b, err := io.ReadAll(body)
			if err != nil {
				t.Fatalf("mail part %s: %v", ct, err)
			}
			switch ct {
			case "text/plain":
				text = string(b)
			case "text/html":
				html = string(b)
			}
		}
	}
	walk(multipart.NewReader(msg.Body, params["boundary"]))
	if text == "" || html == "" {
		t.Fatalf("mail without both a text and an HTML part")
	}
	return text, html
}

// TestBadInputOversizeOnKafka: values over the size limit that the broker
// accepted — 10 MB on a broker that allows it, and one just under the
// default limit of 1 MiB — are dead-lettered like any other bad input, and
// the intents behind them on their partition are decided.
// The DLQ keeps the value's first 256 KiB with its length and SHA-256.
func TestBadInputOversizeOnKafka(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		opts []kfake.Opt
	}{
		{"10 MB", 10 << 20, []kfake.Opt{kfake.BrokerConfigs(map[string]string{"message.max.bytes": "33554432"})}},
		{"just under the default broker limit", 1<<20 - 200, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := kfHarness(t, 3, tc.opts...)
			svc := h.start(Roles{Worker: true, API: true, Dev: true})
			g := sample.New(98, 10, time.Now())
			valid := validBad(g, 2)
			big := append([]byte(`{"id":"`), bytes.Repeat([]byte("a"), tc.size-7)...)
			w := badProducer(h.brokers)
			defer w.Close()
			// One write each, so each is a batch of its own under the limit.
			for _, v := range [][]byte{mustJSON(t, valid[0]), big, mustJSON(t, valid[1])} {
				if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(badDebtor), Value: v}); err != nil {
					t.Fatalf("the broker refused a %d-byte value: %v", len(v), err)
				}
			}
			// Sent is recorded before a batch is published; the partition
			// moves on once the DLQ record and the events are written and the
			// offsets committed.
			deadline := time.Now().Add(60 * time.Second)
			for h.statesOf(svc, valid)[status.Sent] != 2 || !h.allCommitted() {
				if time.Now().After(deadline) {
					m := scrape(t, svc.base)
					t.Fatalf("the intents around the %d-byte value: %v, all committed %v after 60s (%v infrastructure errors, %v rejected to the DLQ)",
						len(big), h.statesOf(svc, valid), h.allCommitted(), m["dispatcher_infrastructure_errors_total"], m["dispatcher_dlq_total"])
				}
				time.Sleep(100 * time.Millisecond)
			}
			dlq := h.consumeAll(kafkaio.DefaultTopics.DLQ, 1)
			if len(dlq) != 1 {
				t.Fatalf("%d DLQ records, want 1 for the oversize value", len(dlq))
			}
			hdr := map[string]string{}
			for _, x := range dlq[0].Headers {
				hdr[x.Key] = string(x.Value)
			}
			if hdr[kafkaio.HeaderTruncated] != strconv.Itoa(len(big)) || len(hdr[kafkaio.HeaderSHA256]) != 64 || len(dlq[0].Value) != 256<<10 {
				t.Errorf("DLQ record of %d bytes with headers %v, want the first 256 KiB, the length and the digest", len(dlq[0].Value), hdr)
			}
		})
	}
}
