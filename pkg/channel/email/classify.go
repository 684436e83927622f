package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
)

// stage is how far an SMTP exchange got when it failed.
type stage int

const (
	stageWait     stage = iota + 1 // waiting for a free connection of the pool
	stageDial                      // TCP connect (and the handshake of implicit TLS)
	stageGreeting                  // the server's 220 and our EHLO
	stageTLS                       // STARTTLS and its handshake
	stageAuth                      // AUTH
	stageMail                      // MAIL FROM
	stageRcpt                      // RCPT TO
	stageData                      // the DATA command, before any content
	stageBody                      // content being written; the final dot not yet
	stageReply                     // the final dot written (or being written): waiting for the reply
)

var stageNames = [...]string{"", "wait", "dial", "greeting", "tls", "auth", "mail", "rcpt", "data", "body", "reply"}

func (s stage) String() string {
	if s > 0 && int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// errNoStartTLS: TLS "starttls" is configured and the server does not offer it.
var errNoStartTLS = errors.New("the server does not offer STARTTLS; refusing to continue in plaintext")

// errNoAuthMech: credentials are configured and the server offers neither
// AUTH PLAIN nor AUTH LOGIN.
var errNoAuthMech = errors.New("the server offers no AUTH mechanism we speak (PLAIN, LOGIN)")

// classify says what a failure at stage st means for the intent. ctxErr is
// the send's context error, if any: the connection is closed when the
// context ends, so a read or write failing then is the deadline's doing.
//
// The table, by stage and what came back:
//
//	stage                        4xx reply   5xx reply     no reply (network, TLS, timeout)
//	wait, dial, greeting, tls,   Retryable   Retryable     Retryable
//	auth
//	mail                         Retryable   Retryable     Retryable
//	rcpt, data                   Retryable   Permanent*    Retryable
//	body                         -           -             Retryable
//	reply (after the final dot)  Retryable   Permanent*    Unknown
//
// A 5xx before RCPT is about our account or the relay (authentication,
// sender address, relaying), never the debtor, so it counts against the
// provider. *A 5xx to RCPT or to the message is Permanent — this address
// will not take this mail — except with an enhanced status code of class
// 5.7 (security or policy: relaying denied, authentication required, SPF,
// DKIM or DMARC failure, a blocked sending IP): those are the bank's side
// and fail for every recipient, so they are Retryable and reach the
// breaker. Before the final dot the server cannot have the message; after
// it, only a reply says whether it does.
func classify(st stage, err error, ctxErr error) *channel.Error {
	var ce *channel.Error
	if errors.As(err, &ce) {
		return ce
	}
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 400 && te.Code < 600 {
		enh, text := splitEnhanced(te.Msg)
		e := &channel.Error{Kind: channel.Retryable, Code: strconv.Itoa(te.Code)}
		if enh != "" {
			e.Code += " " + enh
		}
		e.Err = fmt.Errorf("%s: the server replied %d: %s", st, te.Code, scrub(text))
		if te.Code >= 500 && (st == stageRcpt || st == stageData || st == stageReply) && !strings.HasPrefix(enh, "5.7.") {
			e.Kind = channel.Permanent
		}
		return e
	}
	code, what := transportCode(st, err, ctxErr)
	if st == stageReply {
		return &channel.Error{Kind: channel.Unknown, Code: code,
			Err: fmt.Errorf("%s: the message was sent and no final reply came (%s); the server may have it", st, what)}
	}
	return &channel.Error{Kind: channel.Retryable, Code: code, Err: fmt.Errorf("%s: %s", st, what)}
}

// transportCode names a failure that is not an SMTP reply.
func transportCode(st stage, err error, ctxErr error) (code, what string) {
	var (
		ne     net.Error
		unk    x509.UnknownAuthorityError
		host   x509.HostnameError
		inv    x509.CertificateInvalidError
		verify *tls.CertificateVerificationError
		alert  tls.AlertError
		rec    tls.RecordHeaderError
		te     *textproto.Error
	)
	switch {
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return "timeout", "timed out: " + scrub(err.Error())
	case errors.Is(ctxErr, context.Canceled):
		return "canceled", "canceled: " + scrub(err.Error())
	case errors.Is(err, errNoStartTLS):
		return "starttls_unavailable", err.Error()
	case errors.Is(err, errNoAuthMech):
		return "auth_unsupported", err.Error()
	case errors.Is(err, errClosed):
		return "closed", err.Error()
	case errors.As(err, &verify), errors.As(err, &unk), errors.As(err, &host), errors.As(err, &inv),
		errors.As(err, &alert), errors.As(err, &rec):
		return "tls", "TLS failed: " + scrub(err.Error())
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout", "timed out: " + scrub(err.Error())
	case errors.As(err, &te):
		return "protocol", fmt.Sprintf("unexpected reply %d: %s", te.Code, scrub(te.Msg))
	case st == stageDial:
		return "dial", "could not connect: " + scrub(err.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return "connection_lost", "connection lost: " + scrub(err.Error())
	}
	return "smtp", scrub(err.Error())
}

// splitEnhanced separates an RFC 3463 enhanced status code ("5.1.1") from
// the start of a reply text.
func splitEnhanced(msg string) (enh, rest string) {
	first, rest, _ := strings.Cut(msg, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return "", msg
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return "", msg
		}
	}
	return first, rest
}

// emailLike matches what could be an address in a server's text.
var emailLike = regexp.MustCompile(`[^\s<>()\[\]"',;:]+@[^\s<>()\[\]"',;:]+`)

// maxText bounds the server text kept in an error.
const maxText = 200

// scrub makes server text fit for an error string: addresses masked (a
// reply to RCPT often echoes the debtor's address), one line, short.
func scrub(s string) string {
	s = emailLike.ReplaceAllStringFunc(s, intent.MaskEmail)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
