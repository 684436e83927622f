// Package twilio sends SMS and voice calls through Twilio's REST API (the
// 2010-04-01 Messages and Calls resources). It owns what Twilio needs added
// to a rendered message (the SMS opt-out line, a call's TwiML) and the one
// reading of Twilio's failures as the dispatcher's error kinds (classify).
//
// Twilio takes no idempotency key when a message or a call is created, so
// neither adapter is idempotent: a send whose outcome is unknown must not be
// repeated blindly.
package twilio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/contactd/dispatcher/pkg/channel"
)

// Provider is the name on receipts.
const Provider = "twilio"

// DefaultBaseURL is Twilio's REST API.
const DefaultBaseURL = "https://api.twilio.com"

// twilioHost is the host twilio-go sends every 2010-04-01 request to.
const twilioHost = "api.twilio.com"

// Config configures an SMS or a Voice adapter.
type Config struct {
	AccountSID string
	AuthToken  string
	// From is the sender: a Twilio number (required for calls) or an
	// alphanumeric sender id.
	From string
	// MessagingServiceSID, if set, sends SMS through that Messaging
	// Service instead of From: the service picks the sender.
	MessagingServiceSID string
	// BaseURL is where requests for api.twilio.com go instead; only to
	// point at a test server. Default DefaultBaseURL.
	BaseURL string
	// StatusCallbackURL is our /webhooks/twilio/status as the outside
	// sees it; Twilio posts delivery and call progress there. Optional.
	StatusCallbackURL string
	// Timeout bounds each request to Twilio; default 10s.
	Timeout time.Duration
	// Concurrency is how many calls to Twilio this adapter makes at once:
	// its keep-alive transport keeps that many connections. Default
	// channel.DefaultConcurrency.
	Concurrency int
	// HTTPClient, if set, lends its Transport (proxies, TLS settings)
	// instead, and Concurrency does not size it.
	// Its Timeout, Jar and redirect policy are not used: Timeout bounds
	// each request, and redirects are never followed.
	HTTPClient *http.Client
}

// Validate reports a config that cannot work. Unset fields with a default
// are fine.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.AccountSID == "":
		errs = append(errs, errors.New("twilio: account SID is required"))
	case !alnum(c.AccountSID):
		// twilio-go refuses such credentials at every call (21222).
		errs = append(errs, errors.New("twilio: account SID must be letters and digits only"))
	}
	switch {
	case c.AuthToken == "":
		errs = append(errs, errors.New("twilio: auth token is required"))
	case !alnum(c.AuthToken):
		errs = append(errs, errors.New("twilio: auth token must be letters and digits only"))
	}
	if c.From == "" && c.MessagingServiceSID == "" {
		errs = append(errs, errors.New("twilio: From or MessagingServiceSID is required"))
	}
	if c.BaseURL != "" {
		if err := absURL(c.BaseURL); err != nil {
			errs = append(errs, fmt.Errorf("twilio: base URL: %w", err))
		}
	}
	if c.StatusCallbackURL != "" {
		if err := absURL(c.StatusCallbackURL); err != nil {
			errs = append(errs, fmt.Errorf("twilio: status callback URL: %w", err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("twilio: negative timeout"))
	}
	if c.Concurrency < 0 {
		errs = append(errs, errors.New("twilio: negative concurrency"))
	}
	return errors.Join(errs...)
}

func (c *Config) defaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// absURL checks an absolute http(s) URL. The URL itself stays out of the
// error: it may carry credentials.
func absURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("not an absolute http(s) URL")
	}
	return nil
}

// caller makes calls to Twilio's REST API, each bound to its own context.
// twilio-go builds its requests with context.Background(), so the context,
// the trace that tells whether a request was written, and the redirection
// to BaseURL all live in a RoundTripper made for each call.
type caller struct {
	cfg    Config
	target *url.URL // where api.twilio.com requests go; nil: Twilio itself
	rt     http.RoundTripper
	own    *http.Transport // rt when it is the adapter's own; nil when lent
	now    func() time.Time
}

// close drops the idle connections of the adapter's own transport.
func (c *caller) close() error {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

func newCaller(cfg Config) (*caller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	c := &caller{cfg: cfg, now: time.Now}
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		c.rt = cfg.HTTPClient.Transport
	} else {
		c.own = channel.Transport(cfg.Concurrency)
		c.rt = c.own
	}
	if cfg.BaseURL != DefaultBaseURL {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("twilio: base URL: %w", err)
		}
		c.target = u
	}
	return c, nil
}

// call runs create against an API service bound to ctx, under the
// configured timeout, and returns what the call came to. create returns the
// SID of the resource it made.
func (c *caller) call(ctx context.Context, create func(*openapi.ApiService) (string, error)) outcome {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	a := &attempt{ctx: ctx, base: c.rt, target: c.target, done: make(chan struct{})}
	tc := &client.Client{
		Credentials: client.NewCredentials(c.cfg.AccountSID, c.cfg.AuthToken),
		HTTPClient: &http.Client{
			Transport: a,
			// A create that answers with a redirect did not create
			// anything where we asked; following it would post again.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	tc.SetAccountSid(c.cfg.AccountSID)
	// A RequestHandler of our own rather than client.NewRequestHandler,
	// which reads TWILIO_EDGE and TWILIO_REGION from the environment.
	api := openapi.NewApiService(&client.RequestHandler{Client: tc})
	sid, err := create(api)
	return a.outcome(sid, err)
}

// receipt turns an outcome into the adapter's answer. op names the call in
// the error; nothing personal goes into it.
func (c *caller) receipt(o outcome, op string) (channel.Receipt, error) {
	now := c.now()
	if e := classify(o, now); e != nil {
		e.Err = fmt.Errorf("%s: %w", op, e.Err)
		return channel.Receipt{}, e
	}
	return channel.Receipt{Provider: Provider, ProviderID: o.sid, At: now.UTC()}, nil
}

// writeSettle is how long a failed round trip waits for the news of how
// writing its request ended, when a connection was in hand but that news
// has not come yet (the failure raced the write).
const writeSettle = 50 * time.Millisecond

// maxErrorBody bounds the error reply kept for twilio-go to decode.
const maxErrorBody = 64 << 10

// attempt is the RoundTripper of one call: it sends each request under the
// call's context and traces how far the request got.
type attempt struct {
	ctx    context.Context
	base   http.RoundTripper
	target *url.URL

	conn  atomic.Bool   // a connection was in hand: writing may have begun
	wrote atomic.Bool   // a request was written in full
	once  sync.Once     // closes done
	done  chan struct{} // closed when writing a request ended, well or not

	// Set by RoundTrip, read after the call returned, on the same
	// goroutine: http.Client.Do calls RoundTrip on its caller's.
	status     int
	retryAfter string
}

func (a *attempt) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := httptrace.WithClientTrace(a.ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { a.conn.Store(true) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				a.wrote.Store(true)
			}
			a.once.Do(func() { close(a.done) })
		},
	})
	r := req.Clone(ctx)
	if a.target != nil && r.URL.Host == twilioHost {
		r.URL.Scheme, r.URL.Host = a.target.Scheme, a.target.Host
		r.URL.Path = strings.TrimSuffix(a.target.Path, "/") + r.URL.Path
		r.URL.RawPath = ""
		r.Host = ""
	}
	resp, err := a.base.RoundTrip(r)
	if err != nil {
		if a.conn.Load() && !a.wrote.Load() {
			t := time.NewTimer(writeSettle)
			select {
			case <-a.done:
			case <-t.C:
			}
			t.Stop()
		}
		return nil, err
	}
	a.status = resp.StatusCode
	a.retryAfter = resp.Header.Get("Retry-After")
	if resp.StatusCode >= 400 {
		// twilio-go decodes an error reply but never closes its body,
		// which would hold the connection: keep a bounded copy instead.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

// outcome reads what the transport saw together with what twilio-go
// returned.
func (a *attempt) outcome(sid string, err error) outcome {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop the URL and the account SID in it
	}
	o := outcome{err: err, status: a.status, retryAfter: a.retryAfter, sid: sid}
	switch {
	case a.wrote.Load():
		o.sent = sent
	case !a.conn.Load():
		o.sent = unsent
	case closed(a.done):
		// Writing failed part way: Twilio cannot act on a request whose
		// body was cut short.
		o.sent = unsent
	default:
		o.sent = maybeSent
	}
	return o
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// callbackURL names the intent in the status callback's query, so a
// callback finds its intent without an index of provider ids. Twilio signs
// the URL with its query.
func callbackURL(base string, m channel.Message) string {
	u, err := url.Parse(base)
	if err != nil || m.IntentID == "" {
		return base
	}
	q := u.Query()
	q.Set("intent_id", m.IntentID)
	q.Set("debtor_id", m.DebtorID)
	u.RawQuery = q.Encode()
	return u.String()
}
