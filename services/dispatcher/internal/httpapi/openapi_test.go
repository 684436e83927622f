package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/docs"
	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

func init() {
	// The pages, TwiML replies and metrics are checked as strings.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/xml", openapi3filter.PlainBodyDecoder)
}

// loadSpec loads and validates docs/openapi.yaml as the binary serves it.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	b, err := docs.FS.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// specOpsData reads the activity the processes share through Redis.
type specOpsData struct {
	rdb    redis.UniversalClient
	prefix string
}

func (o specOpsData) View(ctx context.Context, at time.Time) (opsdata.View, error) {
	return opsdata.Read(ctx, o.rdb, o.prefix, at)
}

// newSpecServer is newServer with everything a deployment may have: the
// sandbox (dev mode), metrics, readiness checks, the resolver, the
// providers' states and the recorded activity.
func newSpecServer(t *testing.T) (*Server, *store.Store, *sandbox.Sandbox) {
	t.Helper()
	base, st := newServer(t, "cn-bank", now)
	rdb, prefix := testenv.Redis(t)
	rec := opsdata.NewRecorder()
	for range 3 {
		rec.Decision("sent", "", "sms")
	}
	rec.Decision("failed", "provider_error", "sms")
	rec.Decision("deferred", "frequency_cap", "sms")
	rec.Failed(opsdata.Failure{At: now, IntentID: "I-F", Channel: "sms", State: "failed", Reason: "provider_error", Code: "30003"})
	rec.Rejected("invalid_format", "to.phone: not a valid phone number", now)
	rec.Backlog(map[int64]int{now.Add(5*time.Hour).Unix() / 3600: 4})
	if err := rec.Flush(context.Background(), rdb, prefix, now); err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	consumed := prometheus.NewCounter(prometheus.CounterOpts{Name: "dispatcher_intents_consumed_total", Help: "Intents read."})
	reg.MustRegister(consumed)
	consumed.Inc()
	d := base.Deps
	d.Sandbox, d.Gatherer, d.Resolver, d.Ops = sb, reg, st, st
	d.OpsData, d.OpsRec = specOpsData{rdb: rdb, prefix: prefix}, rec
	d.Ready = []Check{{Name: "redis", Ping: st.Ping}}
	d.Previewer = worker.NewPreviewer(st, d.Templates.(worker.Templates), d.Profile)
	d.Canceler, d.Holds = st, st
	s, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	return s, st, sb
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// openAPIPath turns Echo's /v1/intents/:id into /v1/intents/{id}.
func openAPIPath(p string) string { return echoParam.ReplaceAllString(p, "{$1}") }

// routeDiff returns the routes served that the spec lacks and the spec's
// operations no route serves, as "METHOD /path".
func routeDiff(routes []Route, doc *openapi3.T) (undocumented, unserved []string) {
	served := map[string]bool{}
	for _, r := range routes {
		served[r.Method+" "+openAPIPath(r.Path)] = true
	}
	specified := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			specified[method+" "+path] = true
		}
	}
	for k := range served {
		if !specified[k] {
			undocumented = append(undocumented, k)
		}
	}
	for k := range specified {
		if !served[k] {
			unserved = append(unserved, k)
		}
	}
	sort.Strings(undocumented)
	sort.Strings(unserved)
	return undocumented, unserved
}

func TestOpenAPIRoutesParity(t *testing.T) {
	doc := loadSpec(t)
	s, _, _ := newSpecServer(t)
	undocumented, unserved := routeDiff(s.Routes(), doc)
	if len(undocumented) > 0 {
		t.Errorf("routes served but missing from docs/openapi.yaml:\n  %s", strings.Join(undocumented, "\n  "))
	}
	if len(unserved) > 0 {
		t.Errorf("operations in docs/openapi.yaml that no route serves:\n  %s", strings.Join(unserved, "\n  "))
	}

	t.Run("a difference is reported", func(t *testing.T) {
		routes := slices.DeleteFunc(s.Routes(), func(r Route) bool { return r.Path == "/v1/intents/:id" && r.Method == http.MethodGet })
		routes = append(routes, Route{Method: http.MethodPatch, Path: "/v1/intents/:id"})
		undocumented, unserved := routeDiff(routes, doc)
		if !slices.Contains(undocumented, "PATCH /v1/intents/{id}") || !slices.Contains(unserved, "GET /v1/intents/{id}") {
			t.Errorf("undocumented %v, unserved %v; want the PATCH and the GET", undocumented, unserved)
		}
	})
}

func TestOpenAPIServed(t *testing.T) {
	s, _, _ := newSpecServer(t)
	rr := serveAs(t, s, "", http.MethodGet, "/openapi.yaml", "")
	want, _ := docs.FS.ReadFile("openapi.yaml")
	if rr.Code != http.StatusOK || !bytes.Equal(rr.Body.Bytes(), want) || rr.Header().Get("Content-Type") != "application/yaml" {
		t.Errorf("GET /openapi.yaml: HTTP %d, %s, %d bytes; want 200 and docs/openapi.yaml", rr.Code, rr.Header().Get("Content-Type"), rr.Body.Len())
	}
	// A worker process (ops routes only) serves it too.
	d := s.Deps
	d.OpsOnly = true
	w, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	if rr := serveAs(t, w, "", http.MethodGet, "/openapi.yaml", ""); rr.Code != http.StatusOK {
		t.Errorf("ops-only GET /openapi.yaml: HTTP %d", rr.Code)
	}
}

// noKey sends a request without an Authorization header.
const noKey = "-"

// specCase is one request driven through the real handlers and checked
// against the spec.
type specCase struct {
	name         string
	method, path string // path with its query
	key          string // "" uses the key of the operation's x-scope (none on public routes)
	header       map[string]string
	ctype        string // Content-Type of the body; JSON when a body is set
	body         string
	code         int
	badRequest   bool     // the spec must refuse the request, as the server does
	want         []string // substrings of the response body
	setup        func() (undo func())
}

// specRunner checks requests and responses against the spec.
type specRunner struct {
	doc    *openapi3.T
	router routers.Router
	s      *Server
	opts   *openapi3filter.Options
}

func newSpecRunner(t *testing.T, doc *openapi3.T, s *Server) *specRunner {
	t.Helper()
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &specRunner{doc: doc, router: router, s: s, opts: &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    authenticate,
	}}
}

// authenticate accepts what the spec's security schemes describe: a bearer
// key, or the ops page's cookie. Whether the key is known is the server's
// business.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecuritySchemeName {
	case "bearerAuth":
		if in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
			return errors.New("bearerAuth is not an HTTP bearer scheme")
		}
		if k, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || k == "" {
			return errors.New("no bearer key")
		}
		return nil
	case "opsCookie":
		if c, err := r.Cookie(in.SecurityScheme.Name); err != nil || c.Value == "" {
			return errors.New("no ops cookie")
		}
		return nil
	}
	return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
}

var scopeKeys = map[string]string{ScopeRead: readKey, ScopeWrite: writeKey, ScopeCompliance: complianceKey, ScopeAdmin: adminKey}

func (c specCase) request(key string) *http.Request {
	var req *http.Request
	if c.body != "" {
		req = httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		ct := c.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	} else {
		req = httptest.NewRequest(c.method, c.path, nil)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return req
}

// scopeOf returns the scope an operation documents in x-scope, or "".
func scopeOf(op *openapi3.Operation) string {
	s, _ := op.Extensions["x-scope"].(string)
	return s
}

// result is what one case did.
type result struct {
	op     string // "METHOD /path" of the spec
	status int
	body   []byte
	in     *openapi3filter.RequestValidationInput
	header http.Header
}

// run drives c and returns every way it disagrees with the spec or its
// expectations.
func (r *specRunner) run(c specCase) (result, []string) {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	probe := c.request("")
	route, params, err := r.router.FindRoute(probe)
	if err != nil {
		fail("the spec has no operation for %s %s: %v", c.method, c.path, err)
		return result{}, problems
	}
	res := result{op: c.method + " " + route.Path}
	key := c.key
	switch key {
	case "":
		key = scopeKeys[scopeOf(route.Operation)]
	case noKey:
		key = ""
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: c.request(key), PathParams: params, Route: route, Options: r.opts}
	err = openapi3filter.ValidateRequest(ctx, in)
	switch {
	case c.badRequest && err == nil:
		fail("the spec accepts the request; the server refuses it")
	case !c.badRequest && err != nil:
		fail("the spec refuses the request: %v", err)
	}
	if c.setup != nil {
		defer c.setup()()
	}
	rr := httptest.NewRecorder()
	r.s.Handler().ServeHTTP(rr, c.request(key))
	res.status, res.body, res.in, res.header = rr.Code, rr.Body.Bytes(), in, rr.Header()
	if rr.Code != c.code {
		fail("HTTP %d, want %d: %.300s", rr.Code, c.code, rr.Body)
	}
	for _, w := range c.want {
		if !bytes.Contains(rr.Body.Bytes(), []byte(w)) {
			fail("the response lacks %q: %.300s", w, rr.Body)
		}
	}
	if err := r.validateResponse(in, rr.Code, rr.Header(), rr.Body.Bytes()); err != nil {
		fail("the response (HTTP %d) disagrees with the spec: %v", rr.Code, err)
	}
	return res, problems
}

func (r *specRunner) validateResponse(in *openapi3filter.RequestValidationInput, code int, h http.Header, body []byte) error {
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: code, Header: h, Options: r.opts}
	out.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), out)
}

// failingPublisher is Kafka refusing writes.
type failingPublisher struct{}

func (failingPublisher) WriteMessages(context.Context, ...kafka.Message) error {
	return errors.New("kafka: not enough replicas")
}

// seeded are the data the cases read.
type seeded struct {
	token, expired, tampered, oneClick string
	hold, hold2                        string // holds on D-HOLD to lift
}

func seedSpec(t *testing.T, s *Server, st *store.Store, sb *sandbox.Sandbox) seeded {
	t.Helper()
	ctx := context.Background()
	// An intent deferred by a rule, with its audit trail.
	if _, _, err := st.Accept(ctx, "I-GATE", "D-1001", "overdue_notice", status.Entry{At: now.Add(-2 * time.Hour), State: status.Accepted, Detail: "received over HTTP"}); err != nil {
		t.Fatal(err)
	}
	until := now.Add(5 * time.Hour)
	if _, err := st.ApplyEvents(ctx, []status.Event{{
		Kind: status.KindTransition, ID: "I-GATE", DebtorID: "D-1001", Seq: 2, State: status.Deferred, Reason: "frequency_cap",
		Channel: "sms", At: now.Add(-2*time.Hour + time.Second), Rule: "cn.sms.daily", Profile: "cn-bank", Version: s.Profile.Version, Until: &until,
		Inputs: &status.Inputs{Zones: []string{"Asia/Shanghai"}, LocalTimes: []string{"2026-11-23T09:00:01+08:00"}, Counts: map[string]int{"cn.sms.daily": 2}},
	}}, now); err != nil {
		t.Fatal(err)
	}
	// I-D-SPEC: sent by SMS to +8613800138000 (decided; its number leads to D-SPEC).
	indexNumber(t, st, "D-SPEC", "+8613800138000")
	// I-UNSURE: sent_unconfirmed, to be resolved.
	if _, err := st.Claim(ctx, store.ClaimRequest{ID: "I-UNSURE", DebtorID: "D-1001", Owner: "w", Now: now, LeaseUntil: now.Add(time.Minute),
		Target: status.Sending, Channel: "sms", Entry: status.Entry{At: now, State: status.Sending}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Finish(ctx, store.FinishRequest{ID: "I-UNSURE", DebtorID: "D-1001", Owner: "w", Now: now, State: status.SentUnconfirmed,
		Channel: "sms", Entry: status.Entry{At: now, State: status.SentUnconfirmed, Reason: "timeout", Provider: "twilio"}}); err != nil {
		t.Fatal(err)
	}
	// D-7 was texted twice today.
	for i, at := range []time.Time{now.Add(-3 * time.Hour), now.Add(-2 * time.Hour)} {
		id := "I-7" + strconv.Itoa(i)
		for _, ch := range []string{"sms", policy.ChannelAny} {
			if err := st.RecordEvent(ctx, "D-7", store.Stream{Event: policy.EventAttempt, Channel: ch, Scope: policy.ScopeDebtor}, id, at, 48*time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := st.Accept(ctx, id, "D-7", "overdue_notice", status.Entry{At: at, State: status.Accepted}); err != nil {
			t.Fatal(err)
		}
	}
	// D-OPT opted out of SMS and disputes the debt.
	for _, o := range []optout.OptOut{
		{DebtorID: "D-OPT", Channel: "sms", Source: optout.SourceSMSKeyword, Reason: "reply TD", At: now},
		{DebtorID: "D-OPT", Channel: optout.DNCPrefix + "dispute_open", Source: optout.SourceBankRequest, At: now},
	} {
		if err := s.OptOuts.Record(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// A worker's breaker for twilio is open.
	open := now.Add(30 * time.Second)
	ws, _ := json.Marshal(map[string]any{"provider": "twilio", "state": "open", "open_until": open, "requests": 10, "failures": 6,
		"latency_p50_ms": 120.5, "latency_p95_ms": 900, "worker": "worker-1", "updated": now.Add(-time.Second)})
	if err := st.PutProviderStates(ctx, "worker-1", map[string][]byte{"twilio": ws}); err != nil {
		t.Fatal(err)
	}
	// The sandbox sent one SMS.
	if _, err := sb.Send(ctx, channel.Message{IntentID: "I-SB", DebtorID: "D-1001", Channel: "sms", To: "+8613800138000",
		Locale: "zh-CN", Template: "overdue_notice", Text: "【示例银行】尊敬的张三……"}); err != nil {
		t.Fatal(err)
	}
	keys, err := optout.ParseKeys(testOptOutKeys)
	if err != nil {
		t.Fatal(err)
	}
	var sd seeded
	sign := func(ch string, exp time.Time) string {
		tok, err := keys.Sign(optout.Claims{DebtorID: "D-U", Channel: ch, Expires: exp})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	sd.token = sign("email", now.Add(time.Hour))
	sd.oneClick = sign("wechat", now.Add(time.Hour))
	sd.expired = sign("email", now.Add(-time.Second))
	sd.tampered = sd.token[:len(sd.token)-3] + "AAA"
	// Two holds to lift.
	sd.hold, sd.hold2 = "H-SPEC-a", "H-SPEC-b"
	for _, h := range []*string{&sd.hold, &sd.hold2} {
		o := optout.OptOut{DebtorID: "D-HOLD", Channel: optout.HoldPrefix + *h, Source: optout.SourceBankRequest, Reason: "promise_to_pay", At: now, UntilMS: now.Add(48 * time.Hour).UnixMilli()}
		b, _ := json.Marshal(o)
		if err := st.SetOptOut(ctx, "D-HOLD", o.Channel, b); err != nil {
			t.Fatal(err)
		}
	}
	return sd
}

const validIntent = `{"id":"I-NEW-1","debtor_id":"D-1001","debt_id":"L-2024-0042","template":"overdue_notice","locale":"zh-CN",
"channels":["sms","email"],"fallback":true,"to":{"phone":"+8613800138000","email":"zhang@example.cn"},
"params":{"name":"张三","amount":"1,234.00","due_date":"2026-11-30"},"timezone":"Asia/Shanghai",
"not_before":"2026-11-23T09:00:00+08:00","expires_at":"2026-11-30T00:00:00+08:00"}`

func intentWith(id string, change func(m map[string]any)) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(validIntent), &m); err != nil {
		panic(err)
	}
	m["id"] = id
	if change != nil {
		change(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

const twilioBase = "https://collect.bank.example"

func twilioForm(path string, form url.Values) (body string, header map[string]string) {
	return form.Encode(), map[string]string{"X-Twilio-Signature": twilioSign(twilioToken, twilioBase+path, form)}
}

// specSession starts an ops session for the read key and returns its id.
func specSession(s *Server) string {
	id := "spec-session-" + strconv.Itoa(int(time.Now().UnixNano()))
	b, _ := json.Marshal(opsSession{KeyID: HashAPIKey(readKey)[:12], Scope: ScopeRead, Expires: now.Add(time.Hour)})
	if err := s.Sessions.PutSession(context.Background(), sessionDigest(id), b, time.Hour); err != nil {
		panic(err)
	}
	return id
}

func specCases(s *Server, sd seeded) []specCase {
	const form = "application/x-www-form-urlencoded"
	sameSite := map[string]string{"Origin": twilioBase}
	statusPath := "/webhooks/twilio/status?debtor_id=D-SPEC&intent_id=I-D-SPEC"
	delivered, deliveredSig := twilioForm(statusPath, url.Values{"MessageSid": {"SMD-SPEC"}, "MessageStatus": {"delivered"}})
	call, callSig := twilioForm("/webhooks/twilio/status?debtor_id=D-SPEC&intent_id=I-CALL", url.Values{"CallSid": {"CA1"}, "CallStatus": {"completed"}, "AnsweredBy": {"human"}})
	notOurs, notOursSig := twilioForm("/webhooks/twilio/status", url.Values{"MessageSid": {"SMX"}, "MessageStatus": {"sent"}})
	stop, stopSig := twilioForm("/webhooks/twilio/inbound", url.Values{"From": {"+8613800138000"}, "To": {"+15005550006"}, "Body": {"TD"}, "MessageSid": {"SMin1"}})
	hello, helloSig := twilioForm("/webhooks/twilio/inbound", url.Values{"From": {"+8613800138000"}, "Body": {"hello"}})
	help, helpSig := twilioForm("/webhooks/twilio/inbound", url.Values{"From": {"+15005550006"}, "Body": {"HELP"}})
	badSig := map[string]string{"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
	padded := validIntent[:len(validIntent)-1] + strings.Repeat(" ", 70_000) + "}"

	readyFails := func() func() {
		old := s.Ready
		s.Ready = []Check{old[0], {Name: "kafka", Ping: func(context.Context) error { return errors.New("dial tcp: connection refused") }}}
		return func() { s.Ready = old }
	}
	kafkaDown := func() func() {
		old := s.Publisher
		s.Publisher = failingPublisher{}
		return func() { s.Publisher = old }
	}
	optoutsDown := func() func() {
		old := s.OptOuts
		rec := old.(*optout.Recorder)
		s.OptOuts = &optout.Recorder{Topic: rec.Topic, Pub: failingPublisher{}, Hot: rec.Hot}
		return func() { s.OptOuts = old }
	}
	return []specCase{
		// What-if.
		{name: "preview a send", method: "POST", path: "/v1/intents/preview?at=2026-11-23T11:00:00%2B08:00", body: intentWith("I-PREVIEW", nil), code: 200, want: []string{`"decision":"send"`, `"profile_version"`}},
		{name: "preview a holiday call", method: "POST", path: "/v1/intents/preview?at=2027-02-07T10:00:00%2B08:00",
			body: intentWith("I-PREVIEW", func(m map[string]any) {
				m["channels"] = []string{"voice"}
				delete(m, "expires_at")
				delete(m, "not_before")
			}),
			code: 200, want: []string{`"decision":"defer"`, `"rule":"cn.voice.holidays"`}},
		{name: "preview at a bad time", method: "POST", path: "/v1/intents/preview?at=tomorrow", body: intentWith("I-PREVIEW", nil), code: 400, badRequest: true, want: []string{`"at"`}},
		{name: "preview of no intent", method: "POST", path: "/v1/intents/preview", body: `{"id":`, code: 400, badRequest: true, want: []string{"malformed_json"}},
		{name: "preview too large", method: "POST", path: "/v1/intents/preview", body: padded, code: 413},
		// Health.
		{name: "healthz", method: "GET", path: "/healthz", code: 200, want: []string{`"ok"`}},
		{name: "ready", method: "GET", path: "/readyz", code: 200, want: []string{`"redis":"ok"`}},
		{name: "not ready", method: "GET", path: "/readyz", code: 503, setup: readyFails, want: []string{`"kafka":"unreachable`}},
		{name: "metrics", method: "GET", path: "/metrics", code: 200, want: []string{"dispatcher_intents_consumed_total 1"}},
		{name: "spec", method: "GET", path: "/openapi.yaml", code: 200, want: []string{"openapi: 3.0.3"}},

		// Intents.
		{name: "intent accepted", method: "POST", path: "/v1/intents", body: validIntent, code: 202, want: []string{`"status_url":"/v1/intents/I-NEW-1"`}},
		{name: "intent already decided", method: "POST", path: "/v1/intents", body: intentWith("I-D-SPEC", func(m map[string]any) { m["debtor_id"] = "D-SPEC" }), code: 200, want: []string{`"duplicate":true`, `"state":"sent"`}},
		{name: "intent of an unknown template", method: "POST", path: "/v1/intents",
			body: intentWith("I-NEW-2", func(m map[string]any) { m["template"] = "no_such_template" }), code: 400, want: []string{`"field":"template"`}},
		{name: "intent with a wrong type", method: "POST", path: "/v1/intents", badRequest: true,
			body: intentWith("I-NEW-3", func(m map[string]any) { m["channels"] = "sms" }), code: 400, want: []string{`"code":"wrong_type"`}},
		{name: "intent with an unknown field", method: "POST", path: "/v1/intents", badRequest: true,
			body: intentWith("I-NEW-4", func(m map[string]any) { m["priority"] = "high" }), code: 400, want: []string{`"code":"unknown_field"`}},
		{name: "intent expired", method: "POST", path: "/v1/intents",
			body: intentWith("I-NEW-5", func(m map[string]any) { delete(m, "not_before"); m["expires_at"] = "2026-11-22T00:00:00Z" }), code: 400, want: []string{`"code":"expired"`}},
		{name: "intent too large", method: "POST", path: "/v1/intents", body: padded, code: 413, want: []string{`"code":"too_large"`}},
		{name: "intent while Kafka is down", method: "POST", path: "/v1/intents", body: intentWith("I-NEW-6", nil), code: 503, setup: kafkaDown},
		{name: "intent record with its audit trail", method: "GET", path: "/v1/intents/I-GATE", code: 200,
			want: []string{`"rule":"cn.sms.daily"`, `"profile":"cn-bank"`, `"source":"GB/T 45251`, `"until":"2026-11-23T08:00:00Z"`, `"inputs":{"zones":["Asia/Shanghai"]`}},
		{name: "intent unknown", method: "GET", path: "/v1/intents/I-NOPE", code: 404},
		{name: "an intent id reused for another debtor", method: "POST", path: "/v1/intents", body: intentWith("I-D-SPEC", nil), code: 409, want: []string{`"id_conflict"`, `"debtor_id"`}},
		{name: "hold a debt", method: "POST", path: "/v1/debtors/D-HOLD/holds", body: `{"debt_id":"L-1","reason":"paid"}`, code: 201, want: []string{`"canceled":0`, `"active":true`}},
		{name: "hold for no known reason", method: "POST", path: "/v1/debtors/D-HOLD/holds", body: `{"reason":"tired"}`, code: 400, badRequest: true},
		{name: "hold while Kafka is down", method: "POST", path: "/v1/debtors/D-HOLD/holds", body: `{"reason":"paid"}`, code: 503, setup: optoutsDown},
		{name: "lift a hold", method: "DELETE", path: "/v1/debtors/D-HOLD/holds/" + sd.hold, code: 200, want: []string{`"active":false`}},
		{name: "lift a hold while Kafka is down", method: "DELETE", path: "/v1/debtors/D-HOLD/holds/" + sd.hold2, code: 503, setup: optoutsDown},
		{name: "holds", method: "GET", path: "/v1/debtors/D-HOLD/holds", code: 200, want: []string{`"holds"`}},
		{name: "holds of a bad debtor id", method: "GET", path: "/v1/debtors/D%20X/holds", code: 400, badRequest: true},
		{name: "lift an unknown hold", method: "DELETE", path: "/v1/debtors/D-HOLD/holds/H-none", code: 404},
		{name: "lift a hold of a bad debtor id", method: "DELETE", path: "/v1/debtors/D%20X/holds/H-none", code: 400, badRequest: true},
		{name: "cancel before the intent arrives", method: "POST", path: "/v1/intents/I-CANCEL-EARLY/cancel", body: `{"reason":"paid","debtor_id":"D-C"}`, code: 200, want: []string{`"state":"canceled"`, `"reason":"paid"`}},
		{name: "cancel a sent intent", method: "POST", path: "/v1/intents/I-D-SPEC/cancel", body: `{"reason":"paid"}`, code: 409, want: []string{`"sent"`}},
		{name: "cancel an unknown intent", method: "POST", path: "/v1/intents/I-NOPE/cancel", body: `{"reason":"paid"}`, code: 404},
		{name: "cancel for no known reason", method: "POST", path: "/v1/intents/I-D-SPEC/cancel", body: `{"reason":"bored"}`, code: 400, badRequest: true},
		{name: "cancel while Kafka is down", method: "POST", path: "/v1/intents/I-CANCEL-DOWN/cancel", body: `{"reason":"paid","debtor_id":"D-C"}`, code: 503, setup: kafkaDown},
		{name: "resolution", method: "POST", path: "/v1/intents/I-UNSURE/resolution", body: `{"state":"failed","note":"not in the Twilio console"}`, code: 200,
			want: []string{`"state":"failed"`, `"reason":"resolved"`}},
		{name: "resolution of a decided intent", method: "POST", path: "/v1/intents/I-D-SPEC/resolution", body: `{"state":"sent"}`, code: 409},
		{name: "resolution of an unknown intent", method: "POST", path: "/v1/intents/I-NOPE/resolution", body: `{"state":"sent"}`, code: 404},
		{name: "resolution to an unknown state", method: "POST", path: "/v1/intents/I-UNSURE/resolution", body: `{"state":"delivered"}`, code: 400, badRequest: true,
			want: []string{`"field":"state"`}},
		{name: "resolution with an unknown field", method: "POST", path: "/v1/intents/I-UNSURE/resolution", body: `{"state":"sent","by":"me"}`, code: 400, badRequest: true},

		// Debtors.
		{name: "contacts", method: "GET", path: "/v1/debtors/D-7/contacts?timezone=Asia/Shanghai", code: 200,
			want: []string{`"blocked_by":"cn.sms.daily"`, `"count":2`}},
		{name: "contacts in an unknown zone", method: "GET", path: "/v1/debtors/D-7/contacts?timezone=Mars/Base", code: 400, want: []string{`"field":"timezone"`}},
		{name: "contacts of a malformed debtor id", method: "GET", path: "/v1/debtors/bad%7Bid/contacts", code: 400, badRequest: true},
		{name: "conversation", method: "POST", path: "/v1/debtors/D-9/conversations", body: `{"debt_id":"L-1","channel":"voice","at":"2026-11-23T02:00:00Z"}`, code: 201},
		{name: "conversation without a debt", method: "POST", path: "/v1/debtors/D-9/conversations", body: `{"channel":"voice"}`, code: 400, badRequest: true,
			want: []string{`"field":"debt_id"`}},
		{name: "conversation in the future", method: "POST", path: "/v1/debtors/D-9/conversations", body: `{"debt_id":"L-1","at":"2026-11-24T03:00:00Z"}`, code: 400,
			want: []string{`"field":"at"`}},
		{name: "opt-outs", method: "GET", path: "/v1/debtors/D-OPT/optouts", code: 200,
			want: []string{`"channel":"dispute_open"`, `"source":"sms_keyword"`, `"stopped":["email","sms","voice","wechat"]`}},
		{name: "opt-outs of a malformed debtor id", method: "GET", path: "/v1/debtors/bad%7Bid/optouts", code: 400, badRequest: true},
		{name: "opt out of SMS", method: "PUT", path: "/v1/debtors/D-5/optouts/sms", body: `{"reason":"asked at the branch"}`, code: 200, want: []string{`"stopped":["sms"]`}},
		{name: "opt out of SMS again, no body", method: "PUT", path: "/v1/debtors/D-5/optouts/sms", code: 200},
		{name: "opt out of a fax", method: "PUT", path: "/v1/debtors/D-5/optouts/fax", code: 400, badRequest: true},
		{name: "opt out from a rumour", method: "PUT", path: "/v1/debtors/D-5/optouts/sms", body: `{"source":"rumour"}`, code: 400, badRequest: true},
		{name: "opt-out with a source only the service writes", method: "PUT", path: "/v1/debtors/D-5/optouts/sms", body: `{"source":"link"}`, code: 400, badRequest: true,
			want: []string{`"code":"reserved"`}},
		{name: "dispute", method: "PUT", path: "/v1/debtors/D-5/optouts/dispute_open", key: complianceKey, code: 200, want: []string{`"do_not_contact":[{`}},
		{name: "dispute by a write key", method: "PUT", path: "/v1/debtors/D-5/optouts/dispute_open", code: 403},
		{name: "dispute settled by a write key", method: "DELETE", path: "/v1/debtors/D-5/optouts/dispute_open", code: 403},
		{name: "dispute settled", method: "DELETE", path: "/v1/debtors/D-5/optouts/dispute_open", key: complianceKey, code: 200, want: []string{`"do_not_contact":[]`}},
		{name: "lift with a malformed body", method: "DELETE", path: "/v1/debtors/D-5/optouts/sms", body: `{"reason":`, code: 400, badRequest: true},
		{name: "lift every opt-out", method: "DELETE", path: "/v1/debtors/D-5/optouts", code: 200, want: []string{`"stopped":[]`}},
		{name: "opt out of everything", method: "PUT", path: "/v1/debtors/D-5/optouts", body: `{"reason":"complaint","source":"bank_request"}`, code: 200,
			want: []string{`"channel":"all"`}},
		{name: "opt out of everything by a malformed id", method: "PUT", path: "/v1/debtors/bad%7Bid/optouts", code: 400, badRequest: true},
		{name: "lift everything for a malformed id", method: "DELETE", path: "/v1/debtors/bad%7Bid/optouts", code: 400, badRequest: true},

		// Ops and the sandbox.
		{name: "summary", method: "GET", path: "/v1/ops/summary", code: 200, want: []string{`"provider":"twilio"`, `"state":"open"`, `"sandbox":{"sent":1`, `"success_rate":0.75`, `"code":"invalid_format"`, `"count":4`}},
		{name: "outbox", method: "GET", path: "/v1/sandbox/outbox", code: 200, want: []string{`"intent_id":"I-SB"`, `"to":"+86`}},
		{name: "fault", method: "PUT", path: "/v1/sandbox/faults/sms", body: `{"kind":"retryable","code":"503","delay":"2s","times":3}`, code: 204},
		{name: "fault cleared", method: "PUT", path: "/v1/sandbox/faults/sms", body: `{}`, code: 204},
		{name: "fault of an unknown kind", method: "PUT", path: "/v1/sandbox/faults/sms", body: `{"kind":"sometimes"}`, code: 400, badRequest: true},
		{name: "fault with a bad delay", method: "PUT", path: "/v1/sandbox/faults/email", body: `{"delay":"soon"}`, code: 400},
		{name: "fault on a fax", method: "PUT", path: "/v1/sandbox/faults/fax", body: `{}`, code: 400, badRequest: true},
		{name: "ops page", method: "GET", path: "/ops?intent=I-GATE", code: 200, want: []string{"I-GATE"}},
		{name: "ops page by session", method: "GET", path: "/ops", key: noKey, header: map[string]string{"Cookie": opsCookie + "=" + specSession(s)}, code: 200},
		{name: "ops page with a key as the cookie", method: "GET", path: "/ops", key: noKey, header: map[string]string{"Cookie": opsCookie + "=" + readKey}, code: 401, badRequest: false},
		{name: "ops sign-in", method: "POST", path: "/ops/login", ctype: form, body: "key=" + readKey, header: sameSite, code: 303},
		{name: "ops sign-in with a wrong key", method: "POST", path: "/ops/login", ctype: form, body: "key=nope", header: sameSite, code: 401},
		{name: "ops sign-in from another site", method: "POST", path: "/ops/login", ctype: form, body: "key=" + readKey, header: map[string]string{"Origin": "https://evil.example"}, code: 403},
		{name: "ops sign-in too large", method: "POST", path: "/ops/login", ctype: form, body: "key=" + strings.Repeat("k", 5000), header: sameSite, code: 413},
		{name: "ops sign-in as JSON", method: "POST", path: "/ops/login", body: `{"key":"x"}`, header: sameSite, code: 415, badRequest: true},
		{name: "ops sign-out", method: "POST", path: "/ops/logout", header: map[string]string{"Origin": twilioBase, "Cookie": opsCookie + "=" + specSession(s)}, code: 303},
		{name: "ops sign-out from another site", method: "POST", path: "/ops/logout", header: map[string]string{"Origin": "https://evil.example"}, code: 403},

		// The opt-out link.
		{name: "opt-out page", method: "GET", path: "/u/" + sd.token + "?lang=en", code: 200, want: []string{`id="confirm"`}},
		{name: "opt-out page of a tampered link", method: "GET", path: "/u/" + sd.tampered, header: map[string]string{"Accept-Language": "en"}, code: 400, want: []string{`id="error"`}},
		{name: "opt-out page of an expired link", method: "GET", path: "/u/" + sd.expired, code: 400},
		{name: "opt-out confirmed", method: "POST", path: "/u/" + sd.token, ctype: form, code: 200, want: []string{`id="result"`}},
		{name: "opt-out one-click", method: "POST", path: "/u/" + sd.oneClick, ctype: form, body: "List-Unsubscribe=One-Click", code: 200, want: []string{"unsubscribed"}},
		{name: "opt-out one-click of an expired link", method: "POST", path: "/u/" + sd.expired, ctype: form, body: "List-Unsubscribe=One-Click", code: 400, want: []string{"expired"}},
		{name: "opt-out confirmed on a tampered link", method: "POST", path: "/u/" + sd.tampered, ctype: form, code: 400, want: []string{`id="error"`}},

		// Twilio.
		{name: "delivery callback", method: "POST", path: statusPath, ctype: form, body: delivered, header: deliveredSig, code: 204},
		{name: "call callback", method: "POST", path: "/webhooks/twilio/status?debtor_id=D-SPEC&intent_id=I-CALL", ctype: form, body: call, header: callSig, code: 204},
		{name: "callback not about an intent", method: "POST", path: "/webhooks/twilio/status", ctype: form, body: notOurs, header: notOursSig, code: 204},
		{name: "callback with a bad signature", method: "POST", path: statusPath, ctype: form, body: delivered, header: badSig, code: 403},
		{name: "callback without a signature", method: "POST", path: statusPath, ctype: form, body: delivered, code: 403, badRequest: true},
		{name: "callback with an unreadable form", method: "POST", path: statusPath, ctype: form, body: "MessageSid=%zz", header: badSig, code: 400, badRequest: true},
		{name: "SMS reply TD", method: "POST", path: "/webhooks/twilio/inbound", ctype: form, body: stop, header: stopSig, code: 200, want: []string{"<Response><Message>您已退订"}},
		{name: "SMS reply hello", method: "POST", path: "/webhooks/twilio/inbound", ctype: form, body: hello, header: helloSig, code: 200, want: []string{"<Response></Response>"}},
		{name: "SMS reply HELP", method: "POST", path: "/webhooks/twilio/inbound", ctype: form, body: help, header: helpSig, code: 200, want: []string{"95500"}},
		{name: "SMS reply with a bad signature", method: "POST", path: "/webhooks/twilio/inbound", ctype: form, body: stop, header: badSig, code: 403},
		{name: "SMS reply with an unreadable form", method: "POST", path: "/webhooks/twilio/inbound", ctype: form, body: "Body=%zz", header: badSig, code: 400, badRequest: true},
		{name: "a number that replied TD", method: "POST", path: "/v1/numbers/lookup", body: `{"phone":"+8613800138000"}`, code: 200,
			want: []string{`"stopped":["sms"]`, `"source":"sms_keyword"`, `"phone":"+86`}},
		{name: "a number that never replied", method: "POST", path: "/v1/numbers/lookup", body: `{"phone":"+8613900139000"}`, code: 200, want: []string{`"stopped":[]`}},
		{name: "a number not in E.164", method: "POST", path: "/v1/numbers/lookup", body: `{"phone":"138 0013 8000"}`, code: 400, badRequest: true, want: []string{`"field":"phone"`}},
		{name: "a number lookup with an unknown field", method: "POST", path: "/v1/numbers/lookup", body: `{"phone":"+8613800138000","debtor_id":"D-1"}`, code: 400, badRequest: true},
	}
}

// authCases are, for every operation that needs a key: none (401), an
// unknown one (401) and, below the operation's scope, the next lesser (403).
func authCases(t *testing.T, doc *openapi3.T) []specCase {
	t.Helper()
	pathValues := map[string]string{"id": "X-1", "channel": "sms", "token": "x"}
	var out []specCase
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Security == nil || len(*op.Security) == 0 {
				continue
			}
			scope := scopeOf(op)
			if scopeRank[scope] == 0 {
				t.Errorf("%s %s needs a key but documents no x-scope (read, write, compliance or admin)", method, path)
				continue
			}
			p := path
			for k, v := range pathValues {
				p = strings.ReplaceAll(p, "{"+k+"}", v)
			}
			body := ""
			if rb := op.RequestBody; rb != nil {
				if mt := rb.Value.Content.Get("application/json"); mt != nil && mt.Schema.Value.Example != nil {
					b, _ := json.Marshal(mt.Schema.Value.Example)
					body = string(b)
				}
			}
			c := specCase{method: method, path: p, body: body, code: http.StatusUnauthorized}
			none, unknown := c, c
			none.name, none.key, none.badRequest = "no key", noKey, true
			unknown.name, unknown.key = "unknown key", "not-a-key"
			out = append(out, none, unknown)
			if lesser := scopeRank[scope] - 1; lesser > 0 {
				for s, r := range scopeRank {
					if r == lesser {
						less := c
						less.name, less.key, less.code = s+" key", scopeKeys[s], http.StatusForbidden
						out = append(out, less)
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].path+out[i].method+out[i].name < out[j].path+out[j].method+out[j].name
	})
	return out
}

// TestOpenAPIResponses drives every operation through the real handlers,
// on its happy path and its error codes, and checks each request and
// response against docs/openapi.yaml.
func TestOpenAPIResponses(t *testing.T) {
	doc := loadSpec(t)
	s, st, sb := newSpecServer(t)
	sd := seedSpec(t, s, st, sb)
	r := newSpecRunner(t, doc, s)

	seen := map[string]map[int]bool{} // operation → statuses answered
	cases := append(specCases(s, sd), authCases(t, doc)...)
	for _, c := range cases {
		t.Run(c.method+" "+c.path+" "+c.name, func(t *testing.T) {
			res, problems := r.run(c)
			for _, p := range problems {
				t.Error(p)
			}
			if res.op != "" {
				if seen[res.op] == nil {
					seen[res.op] = map[int]bool{}
				}
				seen[res.op][res.status] = true
			}
		})
	}

	// Every operation was driven, through every status it documents but
	// the ones no test can bring about on purpose (rate limits, Redis down).
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := method + " " + path
			for code := range op.Responses.Map() {
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s: response %q: only explicit status codes are documented", key, code)
					continue
				}
				if n == http.StatusTooManyRequests || n == http.StatusInternalServerError {
					continue
				}
				if !seen[key][n] {
					t.Errorf("%s: no case answered its documented %d", key, n)
				}
			}
		}
	}
}

// TestOpenAPIValidationFails makes sure the checks above can fail: each
// deliberate mismatch must be caught.
func TestOpenAPIValidationFails(t *testing.T) {
	doc := loadSpec(t)
	s, st, sb := newSpecServer(t)
	seedSpec(t, s, st, sb)
	r := newSpecRunner(t, doc, s)

	res, problems := r.run(specCase{method: "GET", path: "/v1/intents/I-GATE", code: 200})
	if len(problems) > 0 {
		t.Fatalf("the real response: %v", problems)
	}
	mutate := func(change func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(res.body, &m)
		change(m)
		b, _ := json.Marshal(m)
		return b
	}
	entry := func(m map[string]any, i int) map[string]any { return m["timeline"].([]any)[i].(map[string]any) }
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   []byte
	}{
		{"a field of the wrong type", 200, "", mutate(func(m map[string]any) { m["state"] = 42 })},
		{"a state not in the enum", 200, "", mutate(func(m map[string]any) { m["state"] = "lost" })},
		{"a time that is not a date-time", 200, "", mutate(func(m map[string]any) { m["created_at"] = "yesterday" })},
		{"a required field missing", 200, "", mutate(func(m map[string]any) { delete(m, "timeline") })},
		{"an undocumented field", 200, "", mutate(func(m map[string]any) { m["debtor_phone"] = "+8613800138000" })},
		{"a wrong type deep in an entry", 200, "", mutate(func(m map[string]any) {
			entry(m, 1)["inputs"].(map[string]any)["counts"] = map[string]any{"cn.sms.daily": "two"}
		})},
		{"an undocumented status", http.StatusTeapot, "", res.body},
		{"an undocumented content type", 200, "text/html; charset=UTF-8", res.body},
		{"a problem for a record", 200, "", []byte(`{"error":"not found"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := res.header.Clone()
			if tc.ctype != "" {
				h.Set("Content-Type", tc.ctype)
			}
			if err := r.validateResponse(res.in, tc.status, h, tc.body); err == nil {
				t.Errorf("not caught: HTTP %d %s", tc.status, tc.body)
			}
		})
	}

	for _, tc := range []struct {
		name string
		c    specCase
	}{
		{"an expectation the server does not meet", specCase{method: "GET", path: "/v1/intents/I-NOPE", code: 200}},
		{"a request the spec accepts and the server refuses, not marked", specCase{method: "POST", path: "/v1/intents/I-UNSURE/resolution", body: `{"state":"delivered"}`, code: 400}},
		{"a refused request the spec accepts", specCase{method: "GET", path: "/v1/debtors/D-7/contacts?timezone=Mars/Base", code: 400, badRequest: true}},
		{"a wrong type in a request", specCase{method: "POST", path: "/v1/debtors/D-9/conversations", body: `{"debt_id":7}`, code: 400}},
		{"a route the spec lacks", specCase{method: "PATCH", path: "/v1/intents/I-GATE", code: 405}},
		{"a missing body text", specCase{method: "GET", path: "/healthz", code: 200, want: []string{"degraded"}}},
		{"a key below the operation's scope", specCase{method: "POST", path: "/v1/intents/I-UNSURE/resolution", key: writeKey, body: `{"state":"sent"}`, code: 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, problems := r.run(tc.c); len(problems) == 0 {
				t.Errorf("not caught: %+v", tc.c)
			}
		})
	}
}

// TestOpenAPIIntentMatchesJSONSchema keeps the spec's Intent and
// docs/intent.schema.json saying the same: the same fields, required ones,
// patterns, lengths, counts and enums, and the JSON Schema's example is a
// valid Intent.
func TestOpenAPIIntentMatchesJSONSchema(t *testing.T) {
	doc := loadSpec(t)
	b, err := docs.FS.ReadFile("intent.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]any
	if err := json.Unmarshal(b, &js); err != nil {
		t.Fatal(err)
	}
	intentSchema := doc.Components.Schemas["Intent"]
	if intentSchema == nil {
		t.Fatal("the spec has no Intent schema")
	}
	for _, d := range compareSchemas("intent", js, intentSchema.Value) {
		t.Error(d)
	}
	for i, ex := range js["examples"].([]any) {
		if err := intentSchema.Value.VisitJSON(ex); err != nil {
			t.Errorf("example %d of intent.schema.json is not a valid Intent of the spec: %v", i, err)
		}
	}

	t.Run("a difference is reported", func(t *testing.T) {
		var changed map[string]any
		_ = json.Unmarshal(b, &changed)
		props := changed["properties"].(map[string]any)
		props["id"].(map[string]any)["pattern"] = "^[A-Z]+$"
		props["priority"] = map[string]any{"type": "string"}
		delete(props["to"].(map[string]any)["properties"].(map[string]any), "wechat_openid")
		if d := compareSchemas("intent", changed, intentSchema.Value); len(d) != 3 {
			t.Errorf("differences %q, want the pattern, the new field and the removed one", d)
		}
	})
}

// compareSchemas lists where the OpenAPI schema o says otherwise than the
// JSON Schema js on what both can express.
func compareSchemas(at string, js map[string]any, o *openapi3.Schema) []string {
	var diffs []string
	ob, _ := json.Marshal(o)
	var om map[string]any
	_ = json.Unmarshal(ob, &om)
	for _, k := range []string{"pattern", "format", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "maxProperties", "enum"} {
		want, ok := js[k]
		if !ok {
			continue
		}
		if got := om[k]; fmt.Sprint(got) != fmt.Sprint(want) {
			diffs = append(diffs, fmt.Sprintf("%s: %s is %v in the spec, %v in intent.schema.json", at, k, got, want))
		}
	}
	if req, ok := js["required"].([]any); ok {
		var want []string
		for _, r := range req {
			want = append(want, r.(string))
		}
		got := slices.Clone(o.Required)
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			diffs = append(diffs, fmt.Sprintf("%s: required is %v in the spec, %v in intent.schema.json", at, got, want))
		}
	}
	if ap, ok := js["additionalProperties"].(bool); ok && !ap && (o.AdditionalProperties.Has == nil || *o.AdditionalProperties.Has) {
		diffs = append(diffs, fmt.Sprintf("%s: the spec allows other fields", at))
	}
	if ap, ok := js["additionalProperties"].(map[string]any); ok {
		if o.AdditionalProperties.Schema == nil {
			diffs = append(diffs, fmt.Sprintf("%s: the spec has no schema for other fields", at))
		} else {
			diffs = append(diffs, compareSchemas(at+".*", ap, o.AdditionalProperties.Schema.Value)...)
		}
	}
	if items, ok := js["items"].(map[string]any); ok && o.Items != nil {
		diffs = append(diffs, compareSchemas(at+"[]", items, o.Items.Value)...)
	}
	props, _ := js["properties"].(map[string]any)
	for name, p := range props {
		op := o.Properties[name]
		if op == nil {
			diffs = append(diffs, fmt.Sprintf("%s.%s: in intent.schema.json, not in the spec", at, name))
			continue
		}
		diffs = append(diffs, compareSchemas(at+"."+name, p.(map[string]any), op.Value)...)
	}
	for name := range o.Properties {
		if _, ok := props[name]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s.%s: in the spec, not in intent.schema.json", at, name))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// TestAPIDoc: docs/api.md's index has one row per operation of the spec,
// with the scope it documents, and no other.
func TestAPIDoc(t *testing.T) {
	doc := loadSpec(t)
	b, err := os.ReadFile("../../../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z]+ /[^`]*)` \\| ([a-z]+) \\| .* \\|$").FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = m[2]
	}
	if len(rows) == 0 {
		t.Fatal("docs/api.md has no operation rows")
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := method + " " + path
			want := scopeOf(op)
			if want == "" {
				want = "public"
			}
			got, ok := rows[key]
			switch {
			case !ok:
				t.Errorf("docs/api.md lacks %s", key)
			case got != want:
				t.Errorf("docs/api.md gives %s scope %s; the spec says %s", key, got, want)
			}
			delete(rows, key)
		}
	}
	for key := range rows {
		t.Errorf("docs/api.md lists %s, which the spec does not", key)
	}
}
