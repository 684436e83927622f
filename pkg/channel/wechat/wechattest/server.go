// Package wechattest is an HTTP server that speaks the two WeChat Official
// Account endpoints the dispatcher uses, stable_token and template send, with
// WeChat's token and de-duplication rules, and faults a test can program.
// The wechat adapter's tests and the dispatcher's integration tests point a
// real client at it.
package wechattest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// The server's defaults, as WeChat documents them.
const (
	// DefaultTokenTTL is an access token's lifetime.
	DefaultTokenTTL = 7200 * time.Second
	// RenewWithin is how close to its expiry a token is replaced by a
	// normal-mode stable_token call; until then the same token comes back.
	RenewWithin = 5 * time.Minute
	// ForceInterval is the least time between two forced refreshes that
	// take effect; a closer one returns the current token unchanged.
	ForceInterval = 30 * time.Second
	// DefaultDedupWindow is how long a repeat of the same openid and
	// client_msg_id is answered with the first message instead of sent.
	DefaultDedupWindow = 10 * time.Minute
)

// Field is one keyword of a template message's data, in the order sent.
type Field struct{ Key, Value string }

// Data is a template message's data, in the order of the JSON object.
type Data []Field

// Get returns the value of key, or "".
func (d Data) Get(key string) string {
	for _, f := range d {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// UnmarshalJSON keeps the object's key order: {"k":{"value":"v"},…}.
func (d *Data) UnmarshalJSON(b []byte) error {
	*d = nil
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("data: not an object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		var v struct {
			Value string `json:"value"`
		}
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("data %q: %w", t, err)
		}
		*d = append(*d, Field{Key: t.(string), Value: v.Value})
	}
	_, err := dec.Token()
	return err
}

// Body is a template send request as decoded by the server.
type Body struct {
	ToUser      string `json:"touser"`
	TemplateID  string `json:"template_id"`
	URL         string `json:"url"`
	Data        Data   `json:"data"`
	ClientMsgID string `json:"client_msg_id"`
	// Keys lists the body's top-level keys in the order sent, so a test
	// can tell an omitted key from an empty one.
	Keys []string `json:"-"`
}

// Send is one template send request the server received.
type Send struct {
	Token   string    // the access_token it carried
	Body    Body      // decoded
	Raw     []byte    // as received
	Time    time.Time // when it was read
	Status  int       // the HTTP status answered
	Errcode int       // the errcode answered; 0 for success
	MsgID   int64     // the msgid answered on success
	// Repeat: a repeat of an openid and client_msg_id already delivered,
	// answered with the first msgid and not delivered again.
	Repeat bool
}

// Delivered reports whether this request delivered a message.
func (s Send) Delivered() bool { return s.Status == http.StatusOK && s.Errcode == 0 && !s.Repeat }

type token struct {
	expires time.Time
	revoked int // 0: valid until expires; else the errcode it now answers
}

type delivery struct {
	msgID int64
	at    time.Time
}

// Server is a WeChat-shaped HTTP server. It is safe for concurrent use.
type Server struct {
	conns         atomic.Int64 // connections accepted
	srv           *httptest.Server
	appID, secret string

	mu         sync.Mutex
	ttl        time.Duration
	dedup      time.Duration
	tokens     map[string]*token
	current    string
	issued     int
	forced     int
	lastForced time.Time
	sends      []Send
	delivered  int
	seen       map[string]delivery // openid + "\x00" + client_msg_id
	msgID      int64
	failN      int
	failCode   int
	httpN      int
	httpStatus int
	failUser   map[string]int
	delay      time.Duration
}

// NewServer starts a server for one account. Close it when done.
func NewServer(appID, secret string) *Server {
	s := &Server{
		appID: appID, secret: secret,
		ttl: DefaultTokenTTL, dedup: DefaultDedupWindow,
		tokens: map[string]*token{}, seen: map[string]delivery{}, failUser: map[string]int{},
		msgID: 200228331,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cgi-bin/stable_token", s.stableToken)
	mux.HandleFunc("POST /cgi-bin/message/template/send", s.templateSend)
	s.srv = httptest.NewUnstartedServer(mux)
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

// URL is the base URL to configure a client with.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// TokenTTL sets the lifetime of tokens issued from now on. A lifetime
// shorter than RenewWithin makes every normal-mode call issue a new token.
func (s *Server) TokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = d
}

// DedupWindow sets how long a delivered openid and client_msg_id are
// remembered (default DefaultDedupWindow).
func (s *Server) DedupWindow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dedup = d
}

// TokensIssued counts stable_token calls answered with a token, whether
// the token was new or the current one handed out again.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// ForcedRefreshes counts stable_token calls with force_refresh true that
// replaced the token.
func (s *Server) ForcedRefreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forced
}

// ExpireTokens makes every token issued so far answer 42001 (expired), as
// if they all ran out now; the next stable_token call issues a new one.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.revoked == 0 {
			t.revoked = 42001
		}
	}
}

// Fail makes the next n template sends with a valid token answer errcode.
func (s *Server) Fail(n, errcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = n, errcode
}

// FailHTTP makes the next n template sends answer HTTP status with no
// WeChat body, before anything else is looked at.
func (s *Server) FailHTTP(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.httpN, s.httpStatus = n, status
}

// FailUser makes every template send to openid answer errcode, until Reset;
// errcode 0 clears it.
func (s *Server) FailUser(openid string, errcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errcode == 0 {
		delete(s.failUser, openid)
		return
	}
	s.failUser[openid] = errcode
}

// Delay makes template sends answer d after the request was read and acted
// on: a client that stops waiting does not undo the send, as with WeChat.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// ClearFaults ends every programmed fault (Fail, FailHTTP, FailUser,
// Delay) and keeps what was recorded and the de-duplication memory: a
// provider that recovers.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode, s.httpN, s.httpStatus, s.delay = 0, 0, 0, 0, 0
	s.failUser = map[string]int{}
}

// Reset clears the faults, the recorded sends, the de-duplication memory
// and the counters. Issued tokens stay valid, and TokenTTL and DedupWindow
// stay as set: use ExpireTokens for an expiry.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode, s.httpN, s.httpStatus, s.delay = 0, 0, 0, 0, 0
	s.failUser = map[string]int{}
	s.sends, s.delivered, s.issued, s.forced = nil, 0, 0, 0
	s.seen = map[string]delivery{}
}

// Sends returns every template send request received, in order.
func (s *Server) Sends() []Send {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Send(nil), s.sends...)
}

// Delivered counts the messages delivered: successful sends less repeats.
func (s *Server) Delivered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}

// errmsgs are WeChat's messages for the codes the server answers.
var errmsgs = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40002: "invalid grant_type",
	40003: "invalid openid",
	40013: "invalid appid",
	40037: "invalid template_id",
	40125: "invalid appsecret",
	41001: "access_token missing",
	42001: "access_token expired",
	43004: "require subscribe",
	43101: "user refuse to accept the msg",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit",
	45015: "response out of time limit or subscription is canceled",
	45047: "out of response count limit",
	47001: "data format error",
}

func rid() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int) {
	msg, ok := errmsgs[code]
	if !ok {
		msg = "error"
	}
	writeJSON(w, map[string]any{"errcode": code, "errmsg": msg + " rid: " + rid()})
}

func (s *Server) stableToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, 47001)
		return
	}
	switch {
	case req.GrantType != "client_credential":
		writeErr(w, 40002)
		return
	case req.AppID != s.appID:
		writeErr(w, 40013)
		return
	case req.Secret != s.secret:
		writeErr(w, 40125)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	cur, ok := s.tokens[s.current]
	usable := ok && cur.revoked == 0 && now.Before(cur.expires)
	switch {
	case req.ForceRefresh && (s.lastForced.IsZero() || now.Sub(s.lastForced) >= ForceInterval):
		// A forced refresh invalidates every earlier token at once.
		for _, t := range s.tokens {
			if t.revoked == 0 {
				t.revoked = 40001
			}
		}
		s.lastForced = now
		s.forced++
		s.mint(now)
	case usable && (req.ForceRefresh || cur.expires.Sub(now) > RenewWithin):
		// Normal mode hands the current token out again while it has
		// more than RenewWithin to live; so does a forced refresh asked
		// for too soon after the last one.
	default:
		// In its last minutes (or once gone) a token is replaced; the
		// old one keeps working until its own expiry.
		s.mint(now)
	}
	s.issued++
	t := s.tokens[s.current]
	writeJSON(w, map[string]any{"access_token": s.current, "expires_in": int(t.expires.Sub(now) / time.Second)})
}

func (s *Server) mint(now time.Time) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	s.current = hex.EncodeToString(b[:])
	s.tokens[s.current] = &token{expires: now.Add(max(s.ttl, time.Second))}
}

// keys lists the top-level keys of a JSON object in order.
func keys(b []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return out
		}
		out = append(out, t.(string))
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return out
		}
	}
	return out
}

func (s *Server) templateSend(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	send := Send{Token: r.URL.Query().Get("access_token"), Raw: raw, Time: time.Now(), Status: http.StatusOK}
	bodyErr := json.Unmarshal(raw, &send.Body)
	send.Body.Keys = keys(raw)

	s.mu.Lock()
	send.Errcode = s.answer(&send, bodyErr)
	if send.Errcode == 0 && send.Status == http.StatusOK {
		send.MsgID, send.Repeat = s.deliver(send)
	}
	s.sends = append(s.sends, send)
	delay := s.delay
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch {
	case send.Status != http.StatusOK:
		http.Error(w, http.StatusText(send.Status), send.Status)
	case send.Errcode != 0:
		writeErr(w, send.Errcode)
	default:
		writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": send.MsgID})
	}
}

// answer decides, under s.mu, how a send is answered: an HTTP status other
// than 200 (set on send), or an errcode.
func (s *Server) answer(send *Send, bodyErr error) int {
	if s.httpN > 0 {
		s.httpN--
		send.Status = s.httpStatus
		return 0
	}
	switch t, ok := s.tokens[send.Token]; {
	case send.Token == "":
		return 41001
	case !ok:
		return 40001
	case t.revoked != 0:
		return t.revoked
	case !send.Time.Before(t.expires):
		return 42001
	}
	if s.failN > 0 {
		s.failN--
		return s.failCode
	}
	switch b := send.Body; {
	case bodyErr != nil:
		return 47001
	case b.ToUser == "":
		return 40003
	case b.TemplateID == "":
		return 40037
	}
	if code, ok := s.failUser[send.Body.ToUser]; ok {
		return code
	}
	return 0
}

// deliver records a successful send under s.mu and returns its msgid, and
// whether it repeats a delivered one.
func (s *Server) deliver(send Send) (int64, bool) {
	key := send.Body.ToUser + "\x00" + send.Body.ClientMsgID
	if send.Body.ClientMsgID != "" {
		if d, ok := s.seen[key]; ok && send.Time.Sub(d.at) < s.dedup {
			return d.msgID, true
		}
	}
	s.msgID++
	s.delivered++
	if send.Body.ClientMsgID != "" {
		s.seen[key] = delivery{msgID: s.msgID, at: send.Time}
	}
	return s.msgID, false
}
