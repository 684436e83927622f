// Package email sends the dispatcher's e-mail through an SMTP relay. It owns
// the message as it goes on the wire — multipart text and HTML, the opt-out
// link in the body and in List-Unsubscribe (RFC 2369, RFC 8058), a
// Message-ID that names the intent, the DKIM signature — and the reading of
// SMTP replies as the dispatcher's error kinds (see classify).
//
// go-mail writes the MIME message; go-msgauth signs the bytes; go-mail's
// smtp package, a net/smtp with exported Hello and StartTLS, carries them.
// The signature has to cover the exact bytes that go out, and go-mail's
// Client only sends a *Msg it serialises itself, so the message is written
// once, signed, and those bytes are sent. Driving the protocol step by step
// also tells which step failed, which is what the classification needs, and
// keeps the final reply, which carries the relay's queue id.
//
// Connections are pooled (pool.go): a relay's greeting, TLS handshake and
// AUTH cost more than a message, so a Mailer keeps up to PoolSize
// authenticated sessions and sends message after message on each, RSET
// between them, a new session after MaxMessagesPerConn. go-mail's Client
// holds one connection and has no pool of its own, so the pool is ours,
// over go-mail's smtp.Client and its Reset.
package email

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/wneessen/go-mail/smtp"

	"github.com/contactd/dispatcher/pkg/channel"
)

// Provider is the adapter's name, on receipts and breakers.
const Provider = "smtp"

// Mailer sends e-mail through one SMTP relay over a pool of reused
// connections. It is safe for concurrent use; Close releases the pool.
type Mailer struct {
	cfg        Config
	host       string        // Addr's host: TLS server name, AUTH host check
	from       *mail.Address // From header; its address is the envelope sender
	fromDomain string        // right side of Message-IDs
	dkim       *dkim.SignOptions
	now        func() time.Time
	dialer     net.Dialer
	pool       *pool
}

// New checks cfg, loads the DKIM key if it is given as a file, and returns
// a Mailer. It does not connect: a relay that is down is a send's
// Retryable failure, not a start-up error.
func New(cfg Config) (*Mailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	host, _, _ := net.SplitHostPort(cfg.Addr)
	from, _ := parseFrom(cfg.From)
	s := &Mailer{cfg: cfg, host: host, from: from, fromDomain: domainOf(from.Address), now: time.Now, pool: newPool(cfg.PoolSize)}
	key := cfg.DKIMKey
	if key == nil && cfg.DKIMKeyFile != "" {
		var err error
		if key, err = loadKey(cfg.DKIMKeyFile); err != nil {
			return nil, err
		}
		if err := checkKey(key); err != nil {
			return nil, err
		}
	}
	if key != nil {
		s.dkim = signOptions(key, cfg.DKIMSelector, cmp.Or(cfg.DKIMDomain, s.fromDomain))
	}
	return s, nil
}

func signOptions(key crypto.Signer, selector, domain string) *dkim.SignOptions {
	return &dkim.SignOptions{
		Domain:                 strings.ToLower(domain),
		Selector:               selector,
		Signer:                 key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders,
	}
}

// Name is the provider's name.
func (s *Mailer) Name() string { return Provider }

// Idempotent is false: SMTP has no de-duplication a sender can rely on. A
// relay that may have taken a message is never given it again blindly.
func (s *Mailer) Idempotent() bool { return false }

// Send writes m and hands it to the relay. The receipt's ProviderID is the
// relay's queue id when its final reply names one, else the Message-ID.
// Errors are *channel.Error; their text never holds an address or a body.
func (s *Mailer) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	raw, env, err := s.compose(m, s.now())
	if err != nil {
		return channel.Receipt{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	reply, st, err := s.transmit(ctx, env, raw)
	if err != nil {
		return channel.Receipt{}, classify(st, err, ctx.Err())
	}
	id := queueID(reply)
	if id == "" {
		id = env.messageID
	}
	return channel.Receipt{Provider: Provider, ProviderID: id, At: s.now().UTC()}, nil
}

// auth picks the mechanism: PLAIN if offered, else LOGIN. Credentials
// only cross an encrypted connection unless AllowPlaintext is set.
func (s *Mailer) auth(c *smtp.Client) smtp.Auth {
	_, mechs := c.Extension("AUTH")
	offered := map[string]bool{}
	for _, m := range strings.Fields(strings.ToUpper(mechs)) {
		offered[m] = true
	}
	plain := s.cfg.TLS == TLSNone && s.cfg.AllowPlaintext
	switch {
	case offered["PLAIN"]:
		return smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, s.host, plain)
	case offered["LOGIN"]:
		return smtp.LoginAuth(s.cfg.Username, s.cfg.Password, s.host, plain)
	}
	return failAuth{}
}

// failAuth reports errNoAuthMech from inside Client.Auth, which then ends
// the session politely.
type failAuth struct{}

func (failAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return "", nil, errNoAuthMech }
func (failAuth) Next([]byte, bool) ([]byte, error)              { return nil, errNoAuthMech }

func (s *Mailer) tlsConfig() *tls.Config {
	var c *tls.Config
	if s.cfg.TLSConfig != nil {
		c = s.cfg.TLSConfig.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = s.host
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// queueRe finds a queue id in a final reply: Postfix and most relays say
// "queued as ABC123", Exim says "id=1abcDE-000123-AB".
var queueRe = regexp.MustCompile(`(?i)(?:queued as|\bid=)\s*<?([A-Za-z0-9][A-Za-z0-9._-]{2,99})`)

// queueID returns the relay's queue id from its final reply, or "".
func queueID(reply string) string {
	if m := queueRe.FindStringSubmatch(reply); m != nil {
		return strings.TrimRight(m[1], ".")
	}
	return ""
}
