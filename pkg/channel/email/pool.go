package email

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/textproto"
	"sync"
	"time"

	"github.com/wneessen/go-mail/smtp"
)

// errClosed: a Send after Close.
var errClosed = errors.New("the mailer is closed")

// quitWait bounds the polite QUIT of each idle session when the Mailer
// closes.
const quitWait = time.Second

// session is one SMTP session with the relay, greeted, upgraded to TLS and
// authenticated, that carries messages one after another.
type session struct {
	raw  net.Conn // the TCP connection: closing it ends any TLS on top of it
	c    *smtp.Client
	sent int         // messages the relay accepted on it
	stop func() bool // ends the binding to the current send's context
}

// bind ties the session to ctx: ctx's deadline is the connection's, and
// ctx's end closes the connection, so no step outlives the send.
func (ss *session) bind(ctx context.Context) error {
	var dl time.Time // none
	if d, ok := ctx.Deadline(); ok {
		dl = d
	}
	if err := ss.raw.SetDeadline(dl); err != nil {
		return err
	}
	ss.stop = context.AfterFunc(ctx, func() { ss.raw.Close() })
	return nil
}

// unbind undoes bind. It reports false when the context ended first and
// closed the connection.
func (ss *session) unbind() bool {
	if ss.stop == nil {
		return true
	}
	ok := ss.stop()
	ss.stop = nil
	if ok {
		ok = ss.raw.SetDeadline(time.Time{}) == nil
	}
	return ok
}

// end closes the session, politely (QUIT, under the bound context) if quit.
func (ss *session) end(quit bool) {
	if quit && ss.c != nil {
		_ = ss.c.Quit()
	}
	ss.unbind()
	_ = ss.raw.Close()
}

// pool holds a Mailer's sessions. slots bounds the sessions open or being
// opened, so the relay never sees more than its size; idle holds those
// between sends, the most recently used last (the likeliest to be alive).
type pool struct {
	slots  chan struct{}
	mu     sync.Mutex
	idle   []*session
	closed bool
}

func newPool(size int) *pool { return &pool{slots: make(chan struct{}, size)} }

// acquire takes a slot, waiting for one until ctx ends.
func (p *pool) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		<-p.slots
		return errClosed
	}
	return nil
}

// release gives the slot back.
func (p *pool) release() { <-p.slots }

// take returns the newest idle session, or nil.
func (p *pool) take() *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	ss := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return ss
}

// put keeps an unbound, healthy session for the next send, or closes it if
// the pool is closed.
func (p *pool) put(ss *session) {
	p.mu.Lock()
	if !p.closed {
		p.idle = append(p.idle, ss)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), quitWait)
	defer cancel()
	if ss.bind(ctx) == nil {
		ss.end(true)
		return
	}
	ss.end(false)
}

// shut closes the pool: it keeps no session from now on, and the idle ones
// are said goodbye to, all at once.
func (p *pool) shut() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), quitWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, ss := range idle {
		wg.Go(func() {
			if ss.bind(ctx) == nil {
				ss.end(true)
				return
			}
			ss.end(false)
		})
	}
	wg.Wait()
}

// Close closes the Mailer's connections: idle ones now, those in use when
// their send ends. A Send after Close fails Retryable ("closed").
func (s *Mailer) Close() error {
	s.pool.shut()
	return nil
}

// transmit hands one message to the relay on a pooled session and returns
// the final reply's text, or the stage it failed at.
//
// A session that has carried a message before is reset (RSET) before the
// next: a session that died while idle fails there, before anything of the
// message is said, and is replaced. A session that dies after RSET but
// before DATA was accepted cannot have the message either, so the message
// goes once more on a fresh connection. Nothing is resent once DATA was
// accepted: from then on the relay may have the message.
func (s *Mailer) transmit(ctx context.Context, env envelope, msg []byte) (reply string, st stage, err error) {
	if err := s.pool.acquire(ctx); err != nil {
		return "", stageWait, err
	}
	defer s.pool.release()
	fresh := false // only a new connection will do
	for {
		ss, reused, st, err := s.session(ctx, fresh)
		if err != nil {
			return "", st, err
		}
		reply, st, err := s.deliver(ss, env, msg)
		if err == nil {
			ss.sent++
			s.keep(ss, ss.sent < s.cfg.MaxMessagesPerConn)
			return reply, st, nil
		}
		s.keep(ss, replied(err))
		if reused && notTaken(st, err) && ctx.Err() == nil {
			fresh = true
			continue
		}
		return "", st, err
	}
}

// session returns an idle session reset for a new message, or else a new
// one; reused says which. With fresh it always opens a new one.
func (s *Mailer) session(ctx context.Context, fresh bool) (ss *session, reused bool, st stage, err error) {
	for !fresh {
		ss := s.pool.take()
		if ss == nil {
			break
		}
		if err := ss.bind(ctx); err != nil {
			ss.end(false)
			continue
		}
		if err := ss.c.Reset(); err != nil {
			ss.end(false) // died while idle, or the relay timed it out
			if ctx.Err() != nil {
				return nil, false, stageDial, err
			}
			continue
		}
		return ss, true, 0, nil
	}
	ss, st, err = s.open(ctx)
	return ss, false, st, err
}

// keep puts a session back in the pool if it is fit to carry another
// message; else it ends it (politely, if it is merely used up).
func (s *Mailer) keep(ss *session, fit bool) {
	switch {
	case !fit:
		ss.end(ss.sent >= s.cfg.MaxMessagesPerConn) // used up: say goodbye; broken: just close
	case ss.unbind():
		s.pool.put(ss)
	default:
		ss.end(false) // the send's context ended and closed it
	}
}

// replied reports an error that is the relay's answer to a command: the
// session is intact, unless the answer is 421, the relay closing it.
func replied(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te) && te.Code != 421
}

// notTaken reports a failure that leaves the message certainly not taken
// and the session broken: the connection failed, or the relay closed it
// (421), before DATA was accepted.
func notTaken(st stage, err error) bool {
	return (st == stageMail || st == stageRcpt || st == stageData) && !replied(err)
}

// open dials the relay and readies a session: TLS, EHLO, STARTTLS, AUTH.
// The session is bound to ctx.
func (s *Mailer) open(ctx context.Context) (*session, stage, error) {
	conn, err := s.dialer.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, stageDial, err
	}
	ss := &session{raw: conn}
	if err := ss.bind(ctx); err != nil {
		ss.end(false)
		return nil, stageDial, err
	}
	fail := func(st stage, err error) (*session, stage, error) {
		ss.end(false)
		return nil, st, err
	}
	if s.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, s.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(stageDial, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		return fail(stageGreeting, err)
	}
	ss.c = c
	if err := c.Hello(s.cfg.HelloName); err != nil {
		return fail(stageGreeting, err)
	}
	if s.cfg.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			_ = c.Quit()
			return fail(stageTLS, errNoStartTLS)
		}
		if err := c.StartTLS(s.tlsConfig()); err != nil {
			return fail(stageTLS, err)
		}
	}
	if s.cfg.Username != "" {
		if err := c.Auth(s.auth(c)); err != nil {
			return fail(stageAuth, err)
		}
	}
	return ss, 0, nil
}

// deliver runs one mail transaction on a ready session.
func (s *Mailer) deliver(ss *session, env envelope, msg []byte) (reply string, st stage, err error) {
	c := ss.c
	st = stageMail
	if err := c.Mail(env.from); err != nil {
		return "", st, err
	}
	st = stageRcpt
	if err := c.Rcpt(env.to); err != nil {
		return "", st, err
	}
	st = stageData
	w, err := c.Data()
	if err != nil {
		return "", st, err
	}
	st = stageBody
	if _, err := w.Write(msg); err != nil {
		// The final dot is not written: the server discards what it got.
		return "", st, err
	}
	st = stageReply
	if err := w.Close(); err != nil {
		return "", st, err
	}
	if dc, ok := w.(*smtp.DataCloser); ok {
		reply = dc.ServerResponse()
	}
	return reply, st, nil
}
