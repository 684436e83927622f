// Package httpapi is the dispatcher's HTTP port (Echo): intake of intents,
// their status, health, metrics and the dev sandbox. Every error becomes a
// status code in one place, errorHandler.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

// Publisher writes records to Kafka and returns once they are acked.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Store reads and creates intent records.
type Store interface {
	Get(ctx context.Context, id string) (status.Record, error)
	Accept(ctx context.Context, id, debtorID, template string, e status.Entry) (bool, status.State, error)
}

// Check is a readiness probe of one dependency.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
}

// Deps are what the API works with.
type Deps struct {
	Publisher Publisher
	Store     Store
	Templates intent.Templates
	Profile   *policy.Profile
	Contacts  Contacts
	Ops       Ops
	OpsData   OpsData           // what the ops page shows (nil: nothing yet)
	OpsRec    *opsdata.Recorder // counts the API's own decisions (callbacks)
	Sessions  Sessions          // the ops page's sign-in sessions
	Resolver  Resolver
	Topics    kafkaio.Topics
	Ready     []Check
	Previewer Previewer // answers POST /v1/intents/preview (nil: 503)
	Canceler  Canceler  // POST /v1/intents/{id}/cancel (nil: 503)
	Holds     Holds     // the holds routes (nil: 503)
	// Canceled counts a cancellation (dispatcher_decisions_total).
	Canceled func(reason string)
	Sandbox  *sandbox.Sandbox // dev only: exposes /v1/sandbox
	Gatherer prometheus.Gatherer

	// Opt-outs and webhooks.
	OptOuts       OptOutRecorder
	OptOutReader  OptOutReader
	Numbers       NumberReader // nil: Webhooks, if it reads numbers
	OptOutKeys    *optout.Keys // verify opt-out links
	Webhooks      Webhooks
	PublicBaseURL string // as the outside (Twilio) sees it: webhook signatures cover it
	// TwilioAuthToken checks X-Twilio-Signature on webhooks. Without it,
	// webhooks are refused unless AllowUnsigned (dev mode).
	TwilioAuthToken string
	AllowUnsigned   bool
	// APIKeys guard /v1. PublicRate is the per-IP request rate on /u and
	// the webhooks (default 5/s, burst 20).
	APIKeys    []APIKey
	PublicRate float64
	// TrustedProxies are the proxies whose X-Forwarded-For is believed;
	// without them a client is its socket's address.
	TrustedProxies []*net.IPNet
	// PublicConnsPerIP caps one client's requests in flight on the public
	// routes (default 10).
	PublicConnsPerIP int
	// OpsOnly serves only /healthz, /readyz and /metrics (a worker process).
	OpsOnly bool
	Log     *slog.Logger
	Now     func() time.Time
}

// Server is the HTTP API.
type Server struct {
	Deps
	e      *echo.Echo
	public *ipLimiter // per-client rate on /u and the webhooks
	login  *ipLimiter // per-client sign-in attempts on /ops/login
	conns  *connLimit // per-client requests in flight there
}

// New builds the routes.
func New(d Deps) (*Server, error) {
	if !d.OpsOnly && (d.Publisher == nil || d.Store == nil || d.Templates == nil || d.Profile == nil || d.Contacts == nil ||
		d.OptOuts == nil || d.OptOutReader == nil || d.Webhooks == nil || d.Resolver == nil || d.Sessions == nil) {
		return nil, errors.New("httpapi: publisher, store, contacts, opt-outs, webhooks, sessions, templates and profile are required")
	}
	if n, ok := d.Webhooks.(NumberReader); ok && d.Numbers == nil {
		d.Numbers = n
	}
	if !d.OpsOnly && d.Numbers == nil {
		return nil, errors.New("httpapi: a number reader is required (Numbers, or Webhooks reading numbers)")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Topics == (kafkaio.Topics{}) {
		d.Topics = kafkaio.DefaultTopics
	}
	if d.PublicRate == 0 {
		d.PublicRate = 5
	}
	if d.PublicConnsPerIP == 0 {
		d.PublicConnsPerIP = DefaultPublicConnsPerIP
	}
	s := &Server{Deps: d, e: echo.New(),
		public: newIPLimiter(d.PublicRate, int(4*d.PublicRate), limiterEntries),
		// Sign-in: 5 at once, then one every 5 s.
		login: newIPLimiter(0.2, 5, limiterEntries),
		conns: &connLimit{max: d.PublicConnsPerIP, active: map[netip.Addr]int{}},
	}
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.IPExtractor = ipExtractor(d.TrustedProxies)
	s.e.HTTPErrorHandler = s.errorHandler
	s.e.Use(middleware.Recover())
	s.e.Use(middleware.RequestID())

	s.e.GET("/healthz", s.healthz)
	s.e.GET("/readyz", s.readyz)
	if d.Gatherer != nil {
		s.e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{})))
	}
	s.e.GET("/openapi.yaml", s.getSpec)
	if d.OpsOnly {
		return s, nil
	}
	read, write, admin := s.requireScope(ScopeRead), s.requireScope(ScopeWrite), s.requireScope(ScopeAdmin)
	v1 := s.e.Group("/v1")
	v1.POST("/intents", s.postIntent, write)
	v1.POST("/intents/preview", s.postPreview, read)
	v1.GET("/intents/:id", s.getIntent, read)
	v1.POST("/intents/:id/resolution", s.postResolution, admin)
	v1.POST("/intents/:id/cancel", s.postCancel, write)
	v1.GET("/debtors/:id/contacts", s.getContacts, read)
	v1.POST("/debtors/:id/holds", s.postHold, write)
	v1.GET("/debtors/:id/holds", s.getHolds, read)
	v1.DELETE("/debtors/:id/holds/:hold_id", s.deleteHold, write)
	v1.POST("/debtors/:id/conversations", s.postConversation, write)
	v1.GET("/debtors/:id/optouts", s.getOptOuts, read)
	v1.PUT("/debtors/:id/optouts", s.putOptOut, write)
	v1.DELETE("/debtors/:id/optouts", s.deleteOptOut, write)
	v1.PUT("/debtors/:id/optouts/:channel", s.putOptOut, write)
	v1.DELETE("/debtors/:id/optouts/:channel", s.deleteOptOut, write)
	v1.POST("/numbers/lookup", s.postNumberLookup, read)
	v1.GET("/ops/summary", s.getSummary, read)
	if d.Sandbox != nil {
		v1.GET("/sandbox/outbox", s.outbox, read)
		v1.PUT("/sandbox/faults/:channel", s.putFault, admin)
	}

	s.e.GET("/ops", s.getOpsPage, s.opsAuth)
	s.e.POST("/ops/login", s.postOpsLogin, s.limit(s.login), s.sameOrigin)
	s.e.POST("/ops/logout", s.postOpsLogout, s.sameOrigin)

	// Public routes: signed, rate-limited per client and capped in the
	// requests one client has in flight.
	limit := []echo.MiddlewareFunc{s.limit(s.public), s.holdLimit(s.conns)}
	if d.OptOutKeys != nil {
		s.e.GET("/u/:token", s.getUnsubscribe, limit...)
		s.e.POST("/u/:token", s.postUnsubscribe, limit...)
	}
	s.e.POST("/webhooks/twilio/status", s.postStatus, append(limit, s.twilioSigned)...)
	s.e.POST("/webhooks/twilio/inbound", s.postInbound, append(limit, s.twilioSigned)...)
	return s, nil
}

// Handler returns the http.Handler serving every route.
func (s *Server) Handler() http.Handler { return s.e }

// Route is one method and path the server answers (Echo's :param form).
type Route struct{ Method, Path string }

// Routes lists every route, for the OpenAPI parity test.
func (s *Server) Routes() []Route {
	var out []Route
	for _, r := range s.e.Routes() {
		if r.Method == "echo_route_not_found" || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		out = append(out, Route{Method: r.Method, Path: r.Path})
	}
	return out
}

// Problem is the body of every error response.
type Problem struct {
	Error  string              `json:"error"`
	Fields []intent.FieldError `json:"fields,omitempty"`
}

func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, p := http.StatusInternalServerError, Problem{Error: "internal error"}
	var ie *intent.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ie):
		code, p = http.StatusBadRequest, Problem{Error: "invalid intent", Fields: ie.Fields}
		for _, f := range ie.Fields {
			if f.Code == "too_large" {
				code = http.StatusRequestEntityTooLarge
			}
		}
	case errors.Is(err, store.ErrNotFound):
		code, p = http.StatusNotFound, Problem{Error: "not found"}
	case errors.Is(err, store.ErrConflict):
		code, p = http.StatusConflict, Problem{Error: err.Error()}
	case errors.As(err, &he):
		code, p = he.Code, Problem{Error: http.StatusText(he.Code)}
		if m, ok := he.Message.(string); ok {
			p.Error = m
		}
	default:
		s.Log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
	}
	if err := c.JSON(code, p); err != nil {
		s.Log.Warn("cannot write error response", "err", err)
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	// The errors name hosts and ports: only for a caller with a key.
	token, _ := bearer(c.Request())
	_, detail := s.lookup(token)
	res := map[string]string{}
	ok := true
	for _, ch := range s.Ready {
		if err := ch.Ping(ctx); err != nil {
			res[ch.Name] = "unreachable"
			if detail {
				res[ch.Name] += ": " + err.Error()
			}
			ok = false
		} else {
			res[ch.Name] = "ok"
		}
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	body := map[string]any{"ready": ok, "checks": res}
	if n := s.notices(s.Now()); len(n) > 0 {
		body["notices"] = n // still ready: these need a person, not a restart
	}
	return c.JSON(code, body)
}

// notices are what ops must act on soon without the service being unready:
// holiday calendars about to run out (or run out).
func (s *Server) notices(now time.Time) []string {
	if s.Profile == nil {
		return nil
	}
	if w := s.Profile.CalendarWarning(now, policy.CalendarWarnAhead); w != "" {
		return []string{w}
	}
	return nil
}

// Accepted is the reply to POST /v1/intents.
type Accepted struct {
	ID        string       `json:"id"`
	State     status.State `json:"state"`
	Duplicate bool         `json:"duplicate,omitempty"`
	StatusURL string       `json:"status_url"`
}

func (s *Server) postIntent(c echo.Context) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, intent.MaxSize+1))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "cannot read body")
	}
	in, err := intent.Decode(body)
	if err == nil {
		err = in.Validate(s.Templates)
	}
	if err == nil && s.Profile != nil {
		err = s.Profile.Require(in)
	}
	if err != nil {
		return err
	}
	now := s.Now().UTC()
	if in.ExpiresAt != nil && !now.Before(*in.ExpiresAt) {
		return &intent.Error{Fields: []intent.FieldError{{Field: "expires_at", Code: "expired", Message: "expires_at has already passed"}}}
	}
	ctx := c.Request().Context()
	url := "/v1/intents/" + in.ID
	// The record first, so a GET right after the 202 finds it.
	created, st, err := s.Store.Accept(ctx, in.ID, in.DebtorID, in.Template, status.Entry{At: now, State: status.Accepted, Detail: "received over HTTP"})
	if errors.Is(err, store.ErrIDConflict) {
		// An id binds to one debtor forever: never sent, never shown, for another.
		return c.JSON(http.StatusConflict, Problem{Error: "intent " + in.ID + " belongs to another debtor",
			Fields: []intent.FieldError{{Field: "debtor_id", Code: "id_conflict", Message: "this intent id was first given for another debtor_id; an intent id binds to one debtor forever"}}})
	}
	if err != nil {
		return err
	}
	if !created && st != status.Accepted && st != status.Rejected {
		// Known and decided: intents are idempotent by id, so it is not sent again.
		// (A rejected intent contacted no one; a corrected copy goes through.)
		return c.JSON(http.StatusOK, Accepted{ID: in.ID, State: st, Duplicate: true, StatusURL: url})
	}
	// New, rejected before, or accepted before but perhaps never written (the
	// earlier request failed): write it. A second copy on the topic is harmless; the worker
	// decides an id once.
	if err := s.Publisher.WriteMessages(ctx, kafka.Message{
		Topic: s.Topics.Intents, Key: []byte(in.DebtorID), Value: body,
		Headers: []kafka.Header{{Key: "source", Value: []byte("http")}},
	}); err != nil {
		s.Log.Warn("cannot write intent to Kafka", "intent_id", in.ID, "err", err)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot write the intent to Kafka; retry later")
	}
	return c.JSON(http.StatusAccepted, Accepted{ID: in.ID, State: status.Accepted, StatusURL: url})
}

// Previewer says what the gate would decide for an intent at an instant,
// recording and reserving nothing.
type Previewer interface {
	Preview(ctx context.Context, in intent.Intent, at time.Time) (worker.Preview, error)
}

// postPreview answers "when would this be sent, and why?": the decision the
// gate would make for the intent at ?at= (default now), counting the
// debtor's real recent contacts and opt-outs, writing nothing. A body that
// is not an intent is a 400; an intent the worker would reject is the
// decision "reject" with its field errors.
func (s *Server) postPreview(c echo.Context) error {
	if s.Previewer == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "preview is not served by this process")
	}
	at := s.Now()
	if q := c.QueryParam("at"); q != "" {
		t, err := time.Parse(time.RFC3339, q)
		if err != nil {
			return &intent.Error{Fields: []intent.FieldError{{Field: "at", Code: intent.CodeInvalidFormat, Message: "must be an RFC 3339 time such as 2027-02-07T10:00:00+08:00"}}}
		}
		at = t
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, intent.MaxSize+1))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "cannot read body")
	}
	in, err := intent.Decode(body)
	if err != nil {
		return err
	}
	p, err := s.Previewer.Preview(c.Request().Context(), in, at)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) getIntent(c echo.Context) error {
	rec, err := s.Store.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	s.explain(c.Request().Context(), &rec)
	return c.JSON(http.StatusOK, rec)
}

// ProfileTexts finds the legal sources of a profile version that some
// process decided with (the store keeps them).
type ProfileTexts interface {
	Profile(ctx context.Context, version string) (store.ProfileText, error)
}

// explain adds to each decision the legal sources of the profile version
// that made it (Redis keeps rule ids; the texts are kept once per version):
// the deciding rule's, and for a send those of every rule that could have
// blocked it. A version no process recorded gets none, never the text of
// the profile loaded now (the status events on Kafka carry them as they
// were).
func (s *Server) explain(ctx context.Context, rec *status.Record) {
	texts := map[string]map[string]string{}
	if s.Profile != nil {
		texts[s.Profile.Version] = s.Profile.Sources()
	}
	pt, _ := s.Store.(ProfileTexts)
	for i := range rec.Timeline {
		e := &rec.Timeline[i]
		if e.Version == "" || (e.Rule == "" && e.Inputs == nil) {
			continue
		}
		t, ok := texts[e.Version]
		if !ok && pt != nil {
			if p, err := pt.Profile(ctx, e.Version); err == nil {
				t = p.Sources
			}
			texts[e.Version] = t
		}
		if t == nil {
			continue
		}
		if e.Source == "" {
			e.Source = t[e.Rule]
		}
		if e.State == status.Sending && e.Inputs != nil && e.Sources == nil {
			e.Sources = policy.SendSources(e.Inputs.Checks, e.Channel, false, func(id string) string { return t[id] })
		}
	}
}

func (s *Server) outbox(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{
		"stats":   s.Sandbox.Stats(),
		"entries": s.Sandbox.Recent(200),
	})
}

// faultBody is the body of PUT /v1/sandbox/faults/{channel}.
type faultBody struct {
	Kind  string `json:"kind"` // "", permanent, retryable, unknown_outcome
	Code  string `json:"code"`
	Delay string `json:"delay"` // Go duration
	Times int    `json:"times"`
}

func (s *Server) putFault(c echo.Context) error {
	ch := intent.Channel(c.Param("channel"))
	if !ch.Known() {
		return echo.NewHTTPError(http.StatusBadRequest, "unknown channel")
	}
	var b faultBody
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, 4096)).Decode(&b); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body must be JSON: {kind, code, delay, times}")
	}
	f := sandbox.Fault{Code: b.Code, Times: b.Times}
	switch b.Kind {
	case "":
	case "permanent":
		f.Kind = channel.Permanent
	case "retryable":
		f.Kind = channel.Retryable
	case "unknown_outcome":
		f.Kind = channel.Unknown
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "kind must be permanent, retryable or unknown_outcome")
	}
	if b.Delay != "" {
		d, err := time.ParseDuration(b.Delay)
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "delay must be a Go duration like 2s")
		}
		f.Delay = d
	}
	s.Sandbox.SetFault(ch, f)
	return c.NoContent(http.StatusNoContent)
}
