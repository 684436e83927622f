// Package smtptest is a real SMTP server for tests, built on go-smtp: it
// listens on 127.0.0.1, offers STARTTLS with a certificate of its own (or
// implicit TLS, or none), optionally requires AUTH PLAIN, records every
// message it accepts, and answers with faults a test programs: a refused
// sender or recipient, a failed message, a reply that never comes, a
// connection that drops. It counts connections (and the most open at once)
// and can make each new connection cost a greeting delay, as a busy relay
// does, so a client's connection reuse can be seen and measured. The
// email adapter's tests and the dispatcher's integration tests point a
// real client at it.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Received is one message the server accepted.
type Received struct {
	From    string   // MAIL FROM address
	To      []string // RCPT TO addresses
	Data    []byte   // the message as received, CRLF line ends, dots unstuffed
	TLS     bool     // the session was encrypted when the message came
	User    string   // the AUTH user, if any
	QueueID string   // the id given in the final reply ("" with WithoutQueueID)
	Conn    int      // which connection carried it: 1 for the first accepted, and so on
	At      time.Time
}

// Stats counts what clients did.
type Stats struct {
	Conns      int // connections accepted
	Mails      int // MAIL FROM commands that reached the session
	PlainMails int // of those, sent on an unencrypted connection
	Auths      int // successful AUTHs
	AuthFails  int // refused AUTHs
	Messages   int // messages accepted (len(Messages()))
	Open       int // connections open now
	MaxOpen    int // the most connections open at the same time
	Resets     int // RSET commands received
}

// Option configures a Server.
type Option func(*options)

type options struct {
	user, pass string
	noTLS      bool
	implicit   bool
	noQueueID  bool
	greeting   time.Duration
}

// WithAuth makes the server offer AUTH PLAIN (over TLS) and refuse MAIL
// before a successful AUTH with these credentials.
func WithAuth(username, password string) Option {
	return func(o *options) { o.user, o.pass = username, password }
}

// WithoutSTARTTLS makes a plaintext server that does not offer STARTTLS.
// If WithAuth is also given, AUTH is offered in plaintext.
func WithoutSTARTTLS() Option { return func(o *options) { o.noTLS = true } }

// WithImplicitTLS makes the server speak TLS from the first byte (SMTPS)
// instead of offering STARTTLS.
func WithImplicitTLS() Option { return func(o *options) { o.implicit = true } }

// WithGreetingDelay makes the server wait d before greeting each new
// connection, the cost a relay's banner delay, reverse DNS and
// connection-level checks add before the first command.
func WithGreetingDelay(d time.Duration) Option { return func(o *options) { o.greeting = d } }

// WithoutQueueID makes the final reply a bare "250 2.0.0 OK" that names
// no queue id.
func WithoutQueueID() Option { return func(o *options) { o.noQueueID = true } }

// Server is an SMTP server on 127.0.0.1. It is safe for concurrent use.
type Server struct {
	opts     options
	srv      *smtp.Server
	ln       net.Listener
	certPool *x509.CertPool
	done     chan struct{}
	closeOne sync.Once

	mu         sync.Mutex
	messages   []Received
	stats      Stats
	seq        int
	rejectMail *smtp.SMTPError
	rejectRcpt map[string]*smtp.SMTPError // lower-cased address →
	failData   *smtp.SMTPError
	failDataN  int // remaining; <= 0 with failData set: every message
	hang       time.Duration
	dropMail   int // MAIL FROM commands still to answer by dropping the connection
	dropData   int // messages still to take and then drop the connection without a reply
	open       map[*trackedConn]struct{}
}

// NewServer starts a server and stops it when the test ends.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{done: make(chan struct{}), rejectRcpt: map[string]*smtp.SMTPError{}, open: map[*trackedConn]struct{}{}}
	for _, o := range opts {
		o(&s.opts)
	}
	cert, pool, err := selfSigned()
	if err != nil {
		t.Fatalf("smtptest: certificate: %v", err)
	}
	s.certPool = pool
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	srv := smtp.NewServer(backend{s})
	srv.Domain = "smtptest.localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.MaxRecipients = 50
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.Debug = resetCounter{s} // the session's plaintext, after any TLS
	if !s.opts.noTLS && !s.opts.implicit {
		srv.TLSConfig = tlsCfg
	}
	srv.AllowInsecureAuth = s.opts.noTLS
	s.srv = srv

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.ln = ln
	// Connections are counted under any TLS, so go-smtp still sees the
	// *tls.Conn it looks for.
	var serve net.Listener = countingListener{ln, s}
	if s.opts.implicit {
		serve = tls.NewListener(serve, tlsCfg)
	}
	go func() { _ = srv.Serve(serve) }()
	t.Cleanup(s.Close)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// TLSConfig is a client configuration that trusts the server's
// certificate (issued for 127.0.0.1, ::1 and localhost).
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.certPool, MinVersion: tls.VersionTLS12}
}

// Close stops the server and releases any reply held by HangAfterData.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		close(s.done)
		_ = s.srv.Close()
	})
}

// Messages returns the accepted messages, oldest first.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.messages))
	for i, m := range s.messages {
		m.To = append([]string(nil), m.To...)
		m.Data = append([]byte(nil), m.Data...)
		out[i] = m
	}
	return out
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Messages = len(s.messages)
	st.Open = len(s.open)
	return st
}

// RejectMail answers every MAIL FROM with code and msg until Reset. msg
// may start with an enhanced status code ("5.7.1 …"); otherwise the
// server sends X.0.0.
func (s *Server) RejectMail(code int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectMail = smtpError(code, msg)
}

// RejectRcpt answers RCPT TO:<addr> (compared case-insensitively) with
// code and msg until Reset. msg may start with an enhanced status code.
func (s *Server) RejectRcpt(addr string, code int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectRcpt[strings.ToLower(addr)] = smtpError(code, msg)
}

// FailData answers the next n messages, after their content, with code
// instead of accepting them; n <= 0 means every message until Reset.
// They are not recorded.
func (s *Server) FailData(code int, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failData = smtpError(code, "Error: message refused")
	s.failDataN = n
}

// HangAfterData makes the server take each message's content, record the
// message, and wait d before the final reply (or until Close): the client
// sent everything and does not know whether it was taken. 0 turns it off.
func (s *Server) HangAfterData(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = d
}

// DropConnections closes every open connection at once, as a relay that
// restarts or times idle sessions out does. The server keeps listening.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.open))
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// DropOnMail makes the next n MAIL FROM commands close their connection
// instead of answering: a session that dies before the message is given.
func (s *Server) DropOnMail(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropMail = n
}

// DropAfterData makes the server take and record the next n messages and
// then close the connection without the final reply: the client cannot
// know the message was taken.
func (s *Server) DropAfterData(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropData = n
}

// Reset clears every fault, the recorded messages and the counters.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = nil
	s.stats = Stats{}
	s.rejectMail = nil
	s.rejectRcpt = map[string]*smtp.SMTPError{}
	s.failData, s.failDataN = nil, 0
	s.hang = 0
	s.dropMail, s.dropData = 0, 0
}

// smtpError builds a reply, taking a leading enhanced code from msg.
func smtpError(code int, msg string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: msg, EnhancedCode: smtp.EnhancedCodeNotSet}
	first, rest, ok := strings.Cut(msg, " ")
	parts := strings.Split(first, ".")
	if !ok || len(parts) != 3 {
		return e
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return e
		}
		ec[i] = n
	}
	e.EnhancedCode, e.Message = ec, rest
	return e
}

// errAuthRequired is RFC 4954's answer to MAIL before AUTH.
var errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}

type countingListener struct {
	net.Listener
	s *Server
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s, delay: l.s.opts.greeting}
	l.s.mu.Lock()
	l.s.stats.Conns++
	tc.id = l.s.stats.Conns
	l.s.open[tc] = struct{}{}
	l.s.stats.MaxOpen = max(l.s.stats.MaxOpen, len(l.s.open))
	l.s.mu.Unlock()
	return tc, nil
}

// trackedConn is an accepted connection: it leaves the open set when it is
// closed, and its first write (the greeting, or the TLS handshake's first
// flight) waits the greeting delay.
type trackedConn struct {
	net.Conn
	s       *Server
	id      int // 1-based, in the order accepted
	delay   time.Duration
	greeted sync.Once
	closed  sync.Once
}

func (c *trackedConn) Write(b []byte) (int, error) {
	c.greeted.Do(func() {
		if c.delay <= 0 {
			return
		}
		t := time.NewTimer(c.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.s.done:
		}
	})
	return c.Conn.Write(b)
}

func (c *trackedConn) Close() error {
	c.closed.Do(func() {
		c.s.mu.Lock()
		delete(c.s.open, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// resetCounter reads the sessions' traffic for RSET commands. A client
// waits for each reply, so a command arrives as one read of its own.
type resetCounter struct{ s *Server }

func (r resetCounter) Write(b []byte) (int, error) {
	if n := bytes.Count(b, []byte("RSET\r\n")); n > 0 {
		r.s.mu.Lock()
		r.s.stats.Resets += n
		r.s.mu.Unlock()
	}
	return len(b), nil
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ss := &session{s: b.s, conn: c}
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if tc, ok := nc.(*trackedConn); ok {
		ss.connID = tc.id
	}
	return ss, nil
}

// session is one client's transaction state.
type session struct {
	s      *Server
	conn   *smtp.Conn
	connID int
	user   string
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.opts.user == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		ss.s.mu.Lock()
		defer ss.s.mu.Unlock()
		if (identity != "" && identity != username) || username != ss.s.opts.user || password != ss.s.opts.pass {
			ss.s.stats.AuthFails++
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		ss.s.stats.Auths++
		ss.user = username
		return nil
	}), nil
}

func (ss *session) tls() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.stats.Mails++
	if ss.s.dropMail > 0 {
		ss.s.dropMail--
		ss.s.mu.Unlock()
		_ = ss.conn.Conn().Close() // takes the lock to count it
		ss.s.mu.Lock()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "connection dropped"}
	}
	if !ss.tls() {
		ss.s.stats.PlainMails++
	}
	if ss.s.opts.user != "" && ss.user == "" {
		return errAuthRequired
	}
	if e := ss.s.rejectMail; e != nil {
		return e
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if e := ss.s.rejectRcpt[strings.ToLower(to)]; e != nil {
		return e
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	if s.failData != nil {
		e := s.failData
		if s.failDataN > 0 {
			if s.failDataN--; s.failDataN == 0 {
				s.failData = nil
			}
		}
		s.mu.Unlock()
		return e
	}
	s.seq++
	qid := fmt.Sprintf("Q%09d", s.seq)
	if s.opts.noQueueID {
		qid = ""
	}
	s.messages = append(s.messages, Received{
		From: ss.from, To: append([]string(nil), ss.to...), Data: b,
		TLS: ss.tls(), User: ss.user, QueueID: qid, Conn: ss.connID, At: time.Now(),
	})
	hang := s.hang
	drop := s.dropData > 0
	if drop {
		s.dropData--
	}
	s.mu.Unlock()

	if drop {
		_ = ss.conn.Conn().Close()
		return errors.New("connection dropped")
	}

	if hang > 0 {
		t := time.NewTimer(hang)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
		}
	}
	if qid == "" {
		return nil // go-smtp answers "250 2.0.0 OK: queued"
	}
	// A 250 "error" is how go-smtp lets a backend choose the reply text.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + qid}
}

func (ss *session) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *session) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1, ::1 and localhost, and a
// pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
