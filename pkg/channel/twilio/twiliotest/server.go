// Package twiliotest is an HTTP server that speaks the part of Twilio's REST
// API the dispatcher uses: creating messages and calls
// (POST /2010-04-01/Accounts/{sid}/Messages.json and Calls.json), with
// Twilio's Basic auth, its reply and error shapes, and faults a test can
// program (failures, per-number failures, slow answers, dropped
// connections). The twilio adapter's tests and the dispatcher's
// integration and fault tests point a real client at it.
//
// Like Twilio, the server creates a resource once it has read the request,
// before it answers: a request held by Delay whose client gave up is still
// recorded with its SID, as Twilio would still send it.
package twiliotest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

const apiPrefix = "/2010-04-01/Accounts/"

// Request is one request the server received on an API route.
type Request struct {
	Path   string     // e.g. /2010-04-01/Accounts/AC…/Messages.json
	Form   url.Values // the form-encoded body
	Time   time.Time  // when it was read
	Status int        // the HTTP status it was answered with (or would have been)
	SID    string     // the SID created; "" when the request failed
}

// Failure is how a request fails.
type Failure struct {
	Status int // HTTP status; default 500
	// Code is Twilio's error code in the reply; default one that goes
	// with Status (20003 for 401, 20429 for 429, 20500 for 500, …).
	Code int
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter string
	// Body, if set, is the reply instead of Twilio's error JSON, as a
	// proxy in front of Twilio would answer.
	Body string
	// Drop closes the connection after reading the request, without an
	// answer (Status and the rest are ignored). The resource is still
	// created, as when Twilio's answer is lost on the way back.
	Drop bool
}

// Server is a Twilio-shaped test server. It is safe for concurrent use.
type Server struct {
	conns      atomic.Int64 // connections accepted
	srv        *httptest.Server
	accountSID string
	authToken  string
	closing    chan struct{}
	closeOnce  sync.Once

	mu      sync.Mutex
	reqs    []Request
	fail    Failure
	failN   int // requests left to fail; < 0 until cleared
	delay   time.Duration
	numbers map[string]Failure
	seq     int
	count   int  // requests answered
	forget  bool // keep no requests (benchmarks: a million would be large)
}

// Forget stops keeping requests (Requests and Created are empty from then
// on; Count still counts them): for benchmarks.
func (s *Server) Forget(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget = on
}

// NewServer starts a server for one account: requests must authenticate
// with the account SID as user and the auth token as password.
func NewServer(accountSID, authToken string) *Server {
	s := &Server{
		accountSID: accountSID,
		authToken:  authToken,
		closing:    make(chan struct{}),
		numbers:    map[string]Failure{},
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Start()
	return s
}

// Conns is how many connections clients opened to the server: a client
// that keeps its connections alive opens few.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// URL is the server's base URL, to use as the adapter's BaseURL.
func (s *Server) URL() string { return s.srv.URL }

// Close ends requests held by Delay (their connections are dropped) and
// shuts the server down.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.srv.Close()
}

// Fail makes the next n requests fail with status and Twilio error code;
// n < 0 fails every request until Clear, n == 0 stops failing.
func (s *Server) Fail(n int, status, code int) {
	s.FailWith(n, Failure{Status: status, Code: code})
}

// FailWith makes the next n requests fail as f; n < 0 fails every request
// until Clear, n == 0 stops failing.
func (s *Server) FailWith(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.failN = f, n
}

// Delay holds each request d after reading it, before answering (or
// dropping it); 0 answers at once. A client that times out meanwhile has
// had its request taken.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// FailNumber makes every request to the recipient fail with status
// and Twilio error code (e.g. 400 and 21610, unsubscribed, or 21211,
// invalid number).
func (s *Server) FailNumber(to string, status, code int) {
	s.FailNumberWith(to, Failure{Status: status, Code: code})
}

// FailNumberWith makes every request to the recipient fail as f.
func (s *Server) FailNumberWith(to string, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.numbers[to] = f
}

// Clear removes every programmed failure and delay. The requests received
// stay recorded.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.failN, s.delay = Failure{}, 0, 0
	clear(s.numbers)
}

// Count is how many requests the server received on its API routes,
// whatever it answered.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forget {
		return s.count
	}
	return len(s.reqs)
}

// Requests returns a copy of the requests received, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		r.Form = cloneValues(r.Form)
		out[i] = r
	}
	return out
}

// Created returns the requests that created a message or a call.
func (s *Server) Created() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.SID != "" {
			out = append(out, r)
		}
	}
	return out
}

// answer is what the server decided to reply to one request.
type answer struct {
	status     int
	body       []byte
	retryAfter string
	drop       bool
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	resource, pathSID, ok := route(r.URL.Path)
	if !ok {
		writeJSON(w, errorAnswer(Failure{Status: http.StatusNotFound, Code: 20404}, r.URL.Path, ""))
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, errorAnswer(Failure{Status: http.StatusMethodNotAllowed, Code: 20004}, r.URL.Path, ""))
		return
	}
	user, pass, hasAuth := r.BasicAuth()
	authorized := hasAuth &&
		subtle.ConstantTimeCompare([]byte(user), []byte(s.accountSID)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.authToken)) == 1
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	formErr := r.ParseForm()
	now := time.Now().UTC()

	a, delay := s.decide(resource, pathSID, r.URL.Path, authorized, formErr, r.PostForm, now)

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			panic(http.ErrAbortHandler) // the client is gone
		case <-s.closing:
			t.Stop()
			panic(http.ErrAbortHandler) // drop the connection, answer nothing
		}
	}
	if a.drop {
		panic(http.ErrAbortHandler)
	}
	writeJSON(w, a)
}

// decide picks the answer to a request, records the request, and creates
// the resource when the request succeeds.
func (s *Server) decide(resource, pathSID, path string, authorized bool, formErr error, form url.Values, now time.Time) (answer, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	to := form.Get("To")
	rec := Request{Path: path, Form: cloneValues(form), Time: now}
	var a answer
	switch {
	case !authorized:
		a = errorAnswer(Failure{Status: http.StatusUnauthorized, Code: 20003}, path, to)
	case pathSID != s.accountSID:
		a = errorAnswer(Failure{Status: http.StatusNotFound, Code: 20404}, path, to)
	case formErr != nil:
		a = errorAnswer(Failure{Status: http.StatusBadRequest}, path, to)
	case s.failN != 0:
		if s.failN > 0 {
			s.failN--
		}
		a = s.failure(s.fail, &rec, resource, form, now)
	default:
		if f, ok := s.numbers[to]; ok {
			a = s.failure(f, &rec, resource, form, now)
			break
		}
		if f, ok := validate(resource, form); !ok {
			a = errorAnswer(f, path, to)
			break
		}
		a = s.create(&rec, resource, form, now)
	}
	rec.Status = a.status
	s.count++
	if !s.forget {
		s.reqs = append(s.reqs, rec)
	}
	return a, s.delay
}

// failure answers with f; a dropped connection still creates the resource.
func (s *Server) failure(f Failure, rec *Request, resource string, form url.Values, now time.Time) answer {
	if f.Drop {
		a := s.create(rec, resource, form, now)
		a.drop = true
		return a
	}
	return errorAnswer(f, rec.Path, form.Get("To"))
}

// create makes a message or a call and the reply describing it.
func (s *Server) create(rec *Request, resource string, form url.Values, now time.Time) answer {
	s.seq++
	date := now.Format(time.RFC1123Z)
	var body any
	switch resource {
	case "Messages":
		rec.SID = fmt.Sprintf("SM%032x", s.seq)
		body = s.message(rec.SID, form, date)
	default:
		rec.SID = fmt.Sprintf("CA%032x", s.seq)
		body = s.call(rec.SID, form, date)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return answer{status: http.StatusInternalServerError}
	}
	return answer{status: http.StatusCreated, body: b}
}

// message is a Message resource as Twilio returns it.
type message struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                *string           `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

func (s *Server) message(sid string, form url.Values, date string) message {
	uri := apiPrefix + s.accountSID + "/Messages/" + sid
	m := message{
		AccountSID: s.accountSID, APIVersion: "2010-04-01", Body: form.Get("Body"),
		DateCreated: date, DateUpdated: date, Direction: "outbound-api",
		NumMedia: "0", NumSegments: fmt.Sprint(segments(form.Get("Body"))), PriceUnit: "USD",
		SID: sid, Status: "queued", To: form.Get("To"), URI: uri + ".json",
		SubresourceURIs: map[string]string{"media": uri + "/Media.json"},
	}
	if v := form.Get("From"); v != "" {
		m.From = &v
	}
	if v := form.Get("MessagingServiceSid"); v != "" {
		m.MessagingServiceSID = &v
		if m.From == nil {
			// Twilio accepts the message and picks a sender later.
			m.Status, m.NumSegments = "accepted", "0"
		}
	}
	return m
}

// call is a Call resource as Twilio returns it.
type call struct {
	AccountSID      string            `json:"account_sid"`
	AnsweredBy      *string           `json:"answered_by"`
	APIVersion      string            `json:"api_version"`
	CallerName      *string           `json:"caller_name"`
	DateCreated     string            `json:"date_created"`
	DateUpdated     string            `json:"date_updated"`
	Direction       string            `json:"direction"`
	Duration        *string           `json:"duration"`
	EndTime         *string           `json:"end_time"`
	ForwardedFrom   *string           `json:"forwarded_from"`
	From            string            `json:"from"`
	FromFormatted   string            `json:"from_formatted"`
	GroupSID        *string           `json:"group_sid"`
	ParentCallSID   *string           `json:"parent_call_sid"`
	PhoneNumberSID  string            `json:"phone_number_sid"`
	Price           *string           `json:"price"`
	PriceUnit       string            `json:"price_unit"`
	SID             string            `json:"sid"`
	StartTime       *string           `json:"start_time"`
	Status          string            `json:"status"`
	SubresourceURIs map[string]string `json:"subresource_uris"`
	To              string            `json:"to"`
	ToFormatted     string            `json:"to_formatted"`
	URI             string            `json:"uri"`
}

func (s *Server) call(sid string, form url.Values, date string) call {
	uri := apiPrefix + s.accountSID + "/Calls/" + sid
	return call{
		AccountSID: s.accountSID, APIVersion: "2010-04-01",
		DateCreated: date, DateUpdated: date, Direction: "outbound-api",
		From: form.Get("From"), FromFormatted: form.Get("From"),
		PhoneNumberSID: "PN" + strings.Repeat("0", 32), PriceUnit: "USD",
		SID: sid, Status: "queued", To: form.Get("To"), ToFormatted: form.Get("To"), URI: uri + ".json",
		SubresourceURIs: map[string]string{
			"notifications": uri + "/Notifications.json",
			"recordings":    uri + "/Recordings.json",
			"events":        uri + "/Events.json",
		},
	}
}

// segments counts the SMS parts of a body: 160 GSM characters in one
// part, 153 a part when split; 70 and 67 for UCS-2.
func segments(body string) int {
	n, one, many := utf8.RuneCountInString(body), 160, 153
	for _, r := range body {
		if r > 0x7f {
			one, many = 70, 67
			break
		}
	}
	if n <= one {
		return 1
	}
	return (n + many - 1) / many
}

// validate checks the parameters Twilio requires, with its error codes.
func validate(resource string, form url.Values) (Failure, bool) {
	to := form.Get("To")
	bad := func(code int) (Failure, bool) { return Failure{Status: http.StatusBadRequest, Code: code}, false }
	if resource == "Messages" {
		switch {
		case to == "":
			return bad(21604)
		case form.Get("From") == "" && form.Get("MessagingServiceSid") == "":
			return bad(21603)
		case form.Get("Body") == "" && form.Get("MediaUrl") == "" && form.Get("ContentSid") == "":
			return bad(21602)
		case !phone(to):
			return bad(21211)
		case utf8.RuneCountInString(form.Get("Body")) > 1600:
			return bad(21617)
		}
		return Failure{}, true
	}
	switch {
	case to == "":
		return bad(21201)
	case form.Get("From") == "":
		return bad(21213)
	case form.Get("Url") == "" && form.Get("Twiml") == "" && form.Get("ApplicationSid") == "":
		return bad(21205)
	case !phone(to):
		return bad(21211)
	}
	return Failure{}, true
}

// phone reports an E.164-looking number: "+" and 8 to 15 digits.
func phone(s string) bool {
	d, ok := strings.CutPrefix(s, "+")
	if !ok || len(d) < 8 || len(d) > 15 || d[0] == '0' {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}

// route splits an API path into its resource ("Messages" or "Calls") and
// account SID.
func route(path string) (resource, sid string, ok bool) {
	rest, ok := strings.CutPrefix(path, apiPrefix)
	if !ok {
		return "", "", false
	}
	sid, file, ok := strings.Cut(rest, "/")
	if !ok || sid == "" {
		return "", "", false
	}
	switch file {
	case "Messages.json":
		return "Messages", sid, true
	case "Calls.json":
		return "Calls", sid, true
	}
	return "", "", false
}

// defaultCodes are Twilio's codes for a bare HTTP status.
var defaultCodes = map[int]int{
	http.StatusUnauthorized:        20003,
	http.StatusForbidden:           20403,
	http.StatusNotFound:            20404,
	http.StatusMethodNotAllowed:    20004,
	http.StatusTooManyRequests:     20429,
	http.StatusInternalServerError: 20500,
	http.StatusServiceUnavailable:  20503,
}

// messages are Twilio's texts for the codes a test is likely to use. Like
// Twilio's, some name the recipient's number: an adapter must not pass
// them on to logs.
var messages = map[int]string{
	13223: "Dial: Invalid phone number format",
	13224: "Dial: Invalid phone number",
	20003: "Authenticate",
	20004: "Method not allowed",
	20403: "Forbidden",
	20404: "The requested resource {path} was not found",
	20429: "Too Many Requests",
	20500: "An internal server error has occurred",
	20503: "Service Unavailable",
	21201: "No 'To' number is specified",
	21205: "Url parameter is required.",
	21211: "The 'To' number {to} is not a valid phone number.",
	21213: "No 'From' number is specified",
	21217: "Phone number does not appear to be valid",
	21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
	21602: "Message body is required.",
	21603: "A 'From' phone number is required.",
	21604: "A 'To' phone number is required.",
	21610: "Attempt to send to unsubscribed recipient",
	21612: "The 'To' phone number: {to}, is not currently reachable via SMS.",
	21614: "'To' number {to} is not a valid mobile number",
	21617: "The concatenated message body exceeds the 1600 character limit.",
}

// errorAnswer is Twilio's error reply for f to a request on path to the
// recipient to.
func errorAnswer(f Failure, path, to string) answer {
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	if f.Code == 0 {
		f.Code = defaultCodes[f.Status]
	}
	a := answer{status: f.Status, retryAfter: f.RetryAfter}
	if f.Body != "" {
		a.body = []byte(f.Body)
		return a
	}
	msg, ok := messages[f.Code]
	if !ok {
		msg = http.StatusText(f.Status)
	}
	msg = strings.NewReplacer("{path}", path, "{to}", to).Replace(msg)
	e := struct {
		Code     int    `json:"code"`
		Message  string `json:"message"`
		MoreInfo string `json:"more_info"`
		Status   int    `json:"status"`
	}{Code: f.Code, Message: msg, MoreInfo: fmt.Sprintf("https://www.twilio.com/docs/errors/%d", f.Code), Status: f.Status}
	a.body, _ = json.Marshal(e)
	return a
}

func writeJSON(w http.ResponseWriter, a answer) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	if a.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="Twilio API"`)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return url.Values{}
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
