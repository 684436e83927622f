package email

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"sync"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/email/smtptest"
)

// numbered is the test message with an intent id of its own.
func numbered(i int) channel.Message {
	m := testMessage()
	m.IntentID = fmt.Sprintf("%s-%04d", testIntent, i)
	return m
}

// sendOK sends the i-th message and fails the test if it is not accepted.
func sendOK(t *testing.T, m *Mailer, i int) {
	t.Helper()
	if _, err := m.Send(context.Background(), numbered(i)); err != nil {
		t.Fatalf("Send #%d: %v", i, err)
	}
}

// perIntent counts the server's messages by their intent header.
func perIntent(msgs []smtptest.Received) map[string]int {
	out := map[string]int{}
	for _, r := range msgs {
		msg, err := mail.ReadMessage(bytes.NewReader(r.Data))
		if err != nil {
			out["unreadable"]++
			continue
		}
		out[msg.Header.Get(HeaderIntent)]++
	}
	return out
}

func kindOf(t *testing.T, err error) *channel.Error {
	t.Helper()
	var ce *channel.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v is not a *channel.Error", err, err)
	}
	return ce
}

// TestPoolReusesConnections sends messages one after another and counts,
// at the server, the connections, AUTHs and RSETs they took.
func TestPoolReusesConnections(t *testing.T) {
	const n = 12
	tests := []struct {
		name      string
		pool, max int
		wantConns int
	}{
		{"one session carries them all", 4, 100, 1},
		{"a new session after each 5", 4, 5, 3},
		{"one connection per message", 4, 1, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
			m := newMailer(t, srv, func(c *Config) { c.PoolSize, c.MaxMessagesPerConn = tt.pool, tt.max })
			for i := range n {
				sendOK(t, m, i)
			}
			st := srv.Stats()
			if st.Messages != n || st.Conns != tt.wantConns || st.Auths != tt.wantConns {
				t.Errorf("server stats %+v: want %d messages over %d connections, each authenticated once", st, n, tt.wantConns)
			}
			// RSET before every message a session carries after its first.
			if want := n - tt.wantConns; st.Resets != want {
				t.Errorf("%d RSETs, want %d", st.Resets, want)
			}
			perConn := map[int]int{}
			for _, r := range srv.Messages() {
				perConn[r.Conn]++
				if !r.TLS || r.User != "dispatcher" {
					t.Errorf("message on connection %d: TLS=%v user=%q", r.Conn, r.TLS, r.User)
				}
			}
			for c, k := range perConn {
				if k > tt.max {
					t.Errorf("connection %d carried %d messages, more than the cap %d", c, k, tt.max)
				}
			}
			for id, k := range perIntent(srv.Messages()) {
				if k != 1 {
					t.Errorf("%s delivered %d times", id, k)
				}
			}
		})
	}
}

// TestPoolBoundsConnections sends from many goroutines at once: the relay
// never sees more connections than the pool's size, and gets every message
// once.
func TestPoolBoundsConnections(t *testing.T) {
	const size, senders, each = 3, 24, 4
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	m := newMailer(t, srv, func(c *Config) { c.PoolSize = size })
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for g := range senders {
		wg.Go(func() {
			for k := range each {
				if _, err := m.Send(context.Background(), numbered(g*each+k)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	st := srv.Stats()
	if st.Conns > size || st.MaxOpen > size {
		t.Errorf("%d connections, at most %d open at once; want at most %d", st.Conns, st.MaxOpen, size)
	}
	if st.Messages != senders*each {
		t.Errorf("%d messages, want %d", st.Messages, senders*each)
	}
	for id, k := range perIntent(srv.Messages()) {
		if k != 1 {
			t.Errorf("%s delivered %d times", id, k)
		}
	}
}

// TestPoolWaitsForAFreeConnection: with every connection busy, a send waits
// for one instead of opening another, and gives up Retryable when its
// deadline comes first.
func TestPoolWaitsForAFreeConnection(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	srv.HangAfterData(10 * time.Second)
	m := newMailer(t, srv, func(c *Config) { c.PoolSize = 1 })
	busy := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := m.Send(ctx, numbered(1))
		busy <- err
	}()
	for len(srv.Messages()) == 0 { // the first send holds the one connection
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := m.Send(ctx, numbered(2))
	if ce := kindOf(t, err); ce.Kind != channel.Retryable || ce.Code != "timeout" {
		t.Errorf("second send: %s %q (%v), want Retryable timeout", ce.Kind, ce.Code, err)
	}
	if st := srv.Stats(); st.Conns != 1 || st.Mails != 1 {
		t.Errorf("server stats %+v: the waiting send must not have opened a connection", st)
	}
	if ce := kindOf(t, <-busy); ce.Kind != channel.Unknown {
		t.Errorf("the held send: %v, want Unknown", ce)
	}
}

// TestPoolReplacesBrokenConnections: a session that died, while idle or
// before the message was given, is replaced and the message delivered once;
// a session that died after the message was given is not resent.
func TestPoolReplacesBrokenConnections(t *testing.T) {
	tests := []struct {
		name      string
		fault     func(*smtptest.Server)
		wantKind  channel.Kind // of the second send; 0: success
		wantMsgs  int          // messages at the server after the second send
		wantConns int          // connections after the second send
		wantMails int          // MAIL FROM commands after the second send
	}{
		{
			name:     "the relay drops idle connections: RSET fails, a new one carries the message",
			fault:    (*smtptest.Server).DropConnections,
			wantMsgs: 2, wantConns: 2, wantMails: 2,
		},
		{
			name:     "the session dies at MAIL FROM: the message goes once more, on a new connection",
			fault:    func(s *smtptest.Server) { s.DropOnMail(1) },
			wantMsgs: 2, wantConns: 2, wantMails: 3,
		},
		{
			name:     "the session dies after the message was given: unknown, never resent",
			fault:    func(s *smtptest.Server) { s.DropAfterData(1) },
			wantKind: channel.Unknown, wantMsgs: 2, wantConns: 1, wantMails: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
			m := newMailer(t, srv, func(c *Config) { c.PoolSize = 1 })
			sendOK(t, m, 1)
			tt.fault(srv)
			_, err := m.Send(context.Background(), numbered(2))
			switch {
			case tt.wantKind == 0 && err != nil:
				t.Fatalf("second send: %v", err)
			case tt.wantKind != 0:
				if ce := kindOf(t, err); ce.Kind != tt.wantKind {
					t.Fatalf("second send: %v, want %s", err, tt.wantKind)
				}
			}
			st := srv.Stats()
			if st.Messages != tt.wantMsgs || st.Conns != tt.wantConns || st.Mails != tt.wantMails {
				t.Errorf("server stats %+v, want %d messages, %d connections, %d MAIL FROM", st, tt.wantMsgs, tt.wantConns, tt.wantMails)
			}
			for id, k := range perIntent(srv.Messages()) {
				if k != 1 {
					t.Errorf("%s delivered %d times", id, k)
				}
			}
			if msgs := srv.Messages(); tt.wantKind == 0 && msgs[1].Conn == msgs[0].Conn {
				t.Errorf("the second message went on connection %d, the broken one", msgs[1].Conn)
			}
			// The pool recovers: the next message goes through.
			sendOK(t, m, 3)
			if got := srv.Stats().Messages; got != tt.wantMsgs+1 {
				t.Errorf("%d messages after a third send, want %d", got, tt.wantMsgs+1)
			}
		})
	}
}

// TestPoolFreshConnectionNotRetried: a connection opened for this message
// that dies is the relay's trouble, not a stale session: the send fails
// Retryable, with one attempt.
func TestPoolFreshConnectionNotRetried(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	srv.DropOnMail(2)
	m := newMailer(t, srv, nil)
	_, err := m.Send(context.Background(), numbered(1))
	if ce := kindOf(t, err); ce.Kind != channel.Retryable || ce.Code != "connection_lost" {
		t.Errorf("Send: %s %q (%v), want Retryable connection_lost", ce.Kind, ce.Code, err)
	}
	if st := srv.Stats(); st.Conns != 1 || st.Mails != 1 || st.Messages != 0 {
		t.Errorf("server stats %+v, want one connection and one MAIL FROM", st)
	}
}

// TestPoolKeepsSessionAfterARefusal: a refused recipient is an answer, not
// a broken session; the next message goes on the same connection.
func TestPoolKeepsSessionAfterARefusal(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	srv.RejectRcpt(testTo, 550, "5.1.1 no such user")
	m := newMailer(t, srv, nil)
	if _, err := m.Send(context.Background(), numbered(1)); kindOf(t, err).Kind != channel.Permanent {
		t.Fatalf("Send: %v, want Permanent", err)
	}
	srv.Reset()
	sendOK(t, m, 2)
	if st := srv.Stats(); st.Conns != 0 || st.Resets != 1 || st.Messages != 1 {
		t.Errorf("server stats %+v after Reset: want the message on the connection already open, after one RSET", st)
	}
}

// TestCloseClosesThePool: Close says goodbye to the idle sessions, and a
// send after it fails without connecting.
func TestCloseClosesThePool(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	m := newMailer(t, srv, func(c *Config) { c.PoolSize = 3 })
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() { sendOK(t, m, i) })
	}
	wg.Wait()
	if st := srv.Stats(); st.Open == 0 {
		t.Fatalf("server stats %+v: no connection kept open between sends", st)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wait := time.Now().Add(5 * time.Second)
	for srv.Stats().Open > 0 && time.Now().Before(wait) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := srv.Stats(); st.Open != 0 {
		t.Errorf("server stats %+v: connections still open after Close", st)
	}
	conns := srv.Stats().Conns
	_, err := m.Send(context.Background(), numbered(7))
	if ce := kindOf(t, err); ce.Kind != channel.Retryable || ce.Code != "closed" {
		t.Errorf("Send after Close: %s %q (%v), want Retryable closed", ce.Kind, ce.Code, err)
	}
	if got := srv.Stats().Conns; got != conns {
		t.Errorf("a send after Close connected")
	}
}
