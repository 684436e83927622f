package email

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// The TLS modes of Config.TLS.
const (
	// TLSStartTLS connects in plaintext and upgrades with STARTTLS before
	// anything else is said; a server that does not offer it is refused.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (SMTPS, usually port 465).
	TLSImplicit = "tls"
	// TLSNone never encrypts: a local development relay only.
	TLSNone = "none"
)

// DefaultTimeout bounds one Send, from dialling to the final reply.
const DefaultTimeout = 30 * time.Second

// DefaultPoolSize is how many connections to the relay a Mailer keeps
// when Config.PoolSize is 0.
const DefaultPoolSize = 4

// DefaultMaxMessagesPerConn is how many messages one connection carries,
// when Config.MaxMessagesPerConn is 0, before it is closed and replaced.
// Relays limit it too (Postfix's smtpd_client_message_rate_limit, Exchange's
// MaxMessagesPerConnection); a fresh session now and then also spreads the
// load over a relay's addresses again.
const DefaultMaxMessagesPerConn = 100

// DefaultHelloName is the name given in EHLO when Config.HelloName is
// empty, as net/smtp does.
const DefaultHelloName = "localhost"

// minRSABits is the smallest RSA key a DKIM verifier must accept (RFC 8301).
const minRSABits = 1024

// Config configures a Mailer.
type Config struct {
	Addr     string // the relay, host:port
	Username string // AUTH user; empty: no AUTH
	Password string
	// From is the From header and, as a bare address, the envelope sender
	// that bounces go to: "示例银行 <noreply@bank.example>".
	From string
	// TLS is TLSStartTLS (the default), TLSImplicit or TLSNone.
	TLS string
	// AllowPlaintext permits TLSNone. Without it a plaintext relay is
	// refused: debtors' addresses and credentials would cross the network
	// in the clear.
	AllowPlaintext bool

	// DKIMKey signs every message (RSA or Ed25519). If nil and DKIMKeyFile
	// is set, New loads the key from that PEM file (PKCS#1 or PKCS#8).
	// Neither: messages go unsigned.
	DKIMKey      crypto.Signer
	DKIMKeyFile  string
	DKIMSelector string // required with a key
	DKIMDomain   string // the d= domain; default From's domain

	// UnsubscribeMailto, if set, is offered in List-Unsubscribe next to
	// the opt-out link: "unsubscribe@bank.example".
	UnsubscribeMailto string

	// PoolSize is how many authenticated connections to the relay the
	// Mailer keeps open, and so how many messages go out at once; a Send
	// beyond it waits for a connection. Default DefaultPoolSize.
	PoolSize int
	// MaxMessagesPerConn is how many messages one connection carries
	// before it is closed and a new one opened; 1 opens a connection for
	// every message. Default DefaultMaxMessagesPerConn.
	MaxMessagesPerConn int

	Timeout   time.Duration // bounds one Send; default DefaultTimeout
	TLSConfig *tls.Config   // base TLS settings (e.g. a test's root CAs); ServerName defaults to Addr's host
	HelloName string        // the EHLO name; default DefaultHelloName
}

// Validate reports the first thing wrong with c. It does not read
// DKIMKeyFile: New does.
func (c Config) Validate() error {
	host, port, err := net.SplitHostPort(c.Addr)
	switch {
	case c.Addr == "":
		return errors.New("email: Addr is required")
	case err != nil || host == "":
		return fmt.Errorf("email: Addr %q is not host:port", c.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("email: Addr %q: bad port", c.Addr)
	}
	if _, err := parseFrom(c.From); err != nil {
		return err
	}
	switch c.TLS {
	case "", TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !c.AllowPlaintext {
			return errors.New(`email: TLS "none" sends addresses and credentials in the clear; set AllowPlaintext (development only)`)
		}
	default:
		return fmt.Errorf(`email: TLS %q: want "starttls", "tls" or "none"`, c.TLS)
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("email: Username and Password go together")
	}
	if c.DKIMKey != nil || c.DKIMKeyFile != "" {
		if c.DKIMSelector == "" || !isDomain(c.DKIMSelector) {
			return errors.New("email: a DKIM key needs a DKIMSelector (a DNS label)")
		}
	}
	if c.DKIMKey != nil {
		if err := checkKey(c.DKIMKey); err != nil {
			return err
		}
	}
	if c.DKIMDomain != "" && !isDomain(c.DKIMDomain) {
		return fmt.Errorf("email: DKIMDomain %q is not a domain name", c.DKIMDomain)
	}
	if c.UnsubscribeMailto != "" {
		a, err := mail.ParseAddress(c.UnsubscribeMailto)
		if err != nil || a.Name != "" || a.Address != c.UnsubscribeMailto || !isASCII(a.Address) {
			return fmt.Errorf("email: UnsubscribeMailto %q is not a bare ASCII address", c.UnsubscribeMailto)
		}
	}
	if c.Timeout < 0 {
		return errors.New("email: Timeout must not be negative")
	}
	if c.PoolSize < 0 || c.MaxMessagesPerConn < 0 {
		return errors.New("email: PoolSize and MaxMessagesPerConn must not be negative")
	}
	if c.HelloName != "" && !isDomain(c.HelloName) {
		return fmt.Errorf("email: HelloName %q is not a host name", c.HelloName)
	}
	return nil
}

func (c *Config) defaults() {
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.HelloName == "" {
		c.HelloName = DefaultHelloName
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.MaxMessagesPerConn == 0 {
		c.MaxMessagesPerConn = DefaultMaxMessagesPerConn
	}
}

// parseFrom reads Config.From: one address, ASCII (no SMTPUTF8 needed),
// with a domain. The display name may be anything.
func parseFrom(s string) (*mail.Address, error) {
	if s == "" {
		return nil, errors.New("email: From is required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("email: From %q: %w", s, err)
	}
	if !isASCII(a.Address) || domainOf(a.Address) == "" {
		return nil, fmt.Errorf("email: From %q: the address must be ASCII with a domain", s)
	}
	return a, nil
}

// loadKey reads a PEM private key: PKCS#1 RSA, or PKCS#8 RSA or Ed25519.
func loadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("email: DKIM key: %w", err)
	}
	k, err := gomail.PrivKeyFromPEM(b)
	if err != nil {
		return nil, fmt.Errorf("email: DKIM key %s: %w", path, err)
	}
	return k, nil
}

// checkKey accepts the keys DKIM verifiers accept.
func checkKey(k crypto.Signer) error {
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("email: DKIM RSA key of %d bits; verifiers ignore keys under %d (2048 recommended)", pub.N.BitLen(), minRSABits)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("email: DKIM key type %T: want RSA or Ed25519", pub)
	}
	return nil
}

// domainOf returns the part of addr after its last "@", lower-cased.
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(addr[at+1:])
}

// isDomain accepts dot-separated labels of letters, digits, '-' and '_'
// (selectors and some relay names use '_').
func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
