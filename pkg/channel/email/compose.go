package email

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gomail "github.com/wneessen/go-mail"

	"github.com/contactd/dispatcher/pkg/channel"
)

// HeaderIntent carries the intent id, so a bounce or a complaint that
// quotes the headers leads back to the intent.
const HeaderIntent = "X-Dispatcher-Intent"

// oneClick is the List-Unsubscribe-Post value of RFC 8058.
const oneClick = "List-Unsubscribe=One-Click"

// signedHeaders are the fields the DKIM signature covers. RFC 8058 §4
// requires both List-Unsubscribe fields. Fields a message lacks are still
// listed, and the address and unsubscribe fields are listed twice: a field
// of that name added in transit, or a second one, then breaks the
// signature (RFC 6376 §5.4, "over-signing").
var signedHeaders = []string{
	"From", "From",
	"To", "To",
	"Cc", "Reply-To",
	"Subject", "Subject",
	"Date", "Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Unsubscribe", "List-Unsubscribe",
	"List-Unsubscribe-Post", "List-Unsubscribe-Post",
	HeaderIntent,
}

// envelope is what the SMTP exchange needs besides the message bytes.
type envelope struct {
	from, to  string // MAIL FROM and RCPT TO paths, "<addr>"
	messageID string // "<id@domain>"
}

// compose writes m as MIME bytes, DKIM-signed if a key is configured. Its
// errors, but for signing, are about the message itself: the same message
// fails the same way on every try, so they are Permanent and never reach
// the breaker.
func (s *Mailer) compose(m channel.Message, now time.Time) ([]byte, envelope, error) {
	to, err := recipient(m.To)
	if err != nil {
		return nil, envelope{}, err
	}
	if m.IntentID == "" || len(m.IntentID) > 256 || !isASCII(m.IntentID) || strings.ContainsAny(m.IntentID, " \t") {
		return nil, envelope{}, badMessage("the intent id is empty or not printable ASCII")
	}
	if m.Text == "" && m.HTML == "" {
		return nil, envelope{}, badMessage("the message has neither a text nor an HTML body")
	}
	text, htm := m.Text, m.HTML
	var unsub string
	oneClickOK := false
	if m.OptOutURL != "" {
		u, err := optOutURL(m.OptOutURL)
		if err != nil {
			return nil, envelope{}, err
		}
		text, htm = withFooter(text, htm, u.String(), m.Locale)
		unsub = "<" + u.String() + ">"
		if s.cfg.UnsubscribeMailto != "" {
			unsub += ", <mailto:" + s.cfg.UnsubscribeMailto + "?subject=unsubscribe>"
		}
		// One-click needs an HTTPS link (RFC 8058 §3.1); an http link (a
		// development base URL) is still offered, without the promise.
		oneClickOK = u.Scheme == "https"
	}

	// Text travels in canonical form, CRLF line ends (RFC 2046 §4.1.1):
	// base64 would otherwise carry bare LFs.
	text, htm = crlf(text), crlf(htm)

	msgID := msgIDLocal(m.IntentID) + "@" + s.fromDomain
	g := gomail.NewMsg(gomail.WithEncoding(gomail.EncodingB64), gomail.WithCharset(gomail.CharsetUTF8), gomail.WithNoDefaultUserAgent())
	g.FromMailAddress(s.from)
	g.ToMailAddress(&mail.Address{Address: to})
	g.Subject(strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(m.Subject))
	g.SetDateWithValue(now)
	g.SetMessageIDWithValue(msgID) // written as <msgID>
	g.SetGenHeaderPreformatted(HeaderIntent, m.IntentID)
	if unsub != "" {
		g.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribe, unsub)
		if oneClickOK {
			g.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribePost, oneClick)
		}
	}
	// Plain text first: in multipart/alternative the last part is the
	// preferred one (RFC 2046 §5.1.4).
	switch {
	case text != "" && htm != "":
		g.SetBodyString(gomail.TypeTextPlain, text)
		g.AddAlternativeString(gomail.TypeTextHTML, htm)
	case text != "":
		g.SetBodyString(gomail.TypeTextPlain, text)
	default:
		g.SetBodyString(gomail.TypeTextHTML, htm)
	}
	var raw bytes.Buffer
	if _, err := g.WriteTo(&raw); err != nil {
		return nil, envelope{}, badMessage("writing the MIME message failed")
	}
	env := envelope{from: (&mail.Address{Address: s.from.Address}).String(), to: (&mail.Address{Address: to}).String(), messageID: "<" + msgID + ">"}
	if s.dkim == nil {
		return raw.Bytes(), env, nil
	}
	var signed bytes.Buffer
	signed.Grow(raw.Len() + 1024)
	opts := *s.dkim
	if err := dkim.Sign(&signed, &raw, &opts); err != nil {
		// Not the message's fault: the key may live in a KMS or an HSM
		// that failed for a moment. Retryable, so a lasting failure
		// opens the breaker instead of failing every intent.
		return nil, envelope{}, &channel.Error{Kind: channel.Retryable, Code: "dkim", Err: fmt.Errorf("DKIM signing failed: %w", err)}
	}
	return signed.Bytes(), env, nil
}

// recipient checks the To address: one bare ASCII address with a domain.
// The address is never put in an error.
func recipient(s string) (string, error) {
	bad := &channel.Error{Kind: channel.Permanent, Code: "invalid_address", Err: errors.New("the recipient address is not a valid ASCII e-mail address")}
	if s == "" || !isASCII(s) {
		return "", bad
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || domainOf(a.Address) == "" || !isASCII(a.Address) {
		return "", bad
	}
	return a.Address, nil
}

// optOutURL accepts an absolute http(s) URL that can stand inside the
// angle brackets of List-Unsubscribe as it is.
func optOutURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, badMessage("the opt-out link is not an absolute http(s) URL")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == ',' {
			return nil, badMessage("the opt-out link has characters List-Unsubscribe cannot carry")
		}
	}
	return u, nil
}

// crlf ends every line of s with CRLF.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func badMessage(msg string) error {
	return &channel.Error{Kind: channel.Permanent, Code: "bad_message", Err: errors.New(msg)}
}

// msgIDLocal turns an intent id into the left side of a Message-ID, a
// dot-atom (RFC 5322 §3.6.4). Intent ids are letters, digits and ". _ : -"
// (ULIDs in practice) and pass unchanged; any other byte, and a dot that
// would make the dot-atom invalid, is written as =XX, and "=" itself as
// =3D, so two ids never give the same Message-ID.
func msgIDLocal(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := isAtext(c) && c != '='
		if c == '.' {
			ok = i > 0 && i < len(id)-1 && id[i-1] != '.'
		}
		if ok {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// isAtext reports an atext character of RFC 5322 §3.2.3.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// The opt-out line every e-mail carries in its body, for mail programs
// that show no unsubscribe button for List-Unsubscribe.
const (
	footerTextZH = "如您不希望再收到此类邮件，请访问以下链接退订："
	footerHTMLZH = "如您不希望再收到此类邮件，请<a href=\"%s\" style=\"color:#0b5cad\">点击此处退订</a>。"
	footerTextEN = "To stop receiving these e-mails, unsubscribe here: "
	footerHTMLEN = "To stop receiving these e-mails, <a href=\"%s\" style=\"color:#0b5cad\">unsubscribe here</a>."
)

// withFooter appends the opt-out line to both bodies: English for an "en"
// locale, Chinese otherwise. In HTML it goes before </body> if there is
// one.
func withFooter(text, htm, link, locale string) (string, string) {
	lineText, lineHTML := footerTextZH, footerHTMLZH
	if locale == "en" || strings.HasPrefix(locale, "en-") {
		lineText, lineHTML = footerTextEN, footerHTMLEN
	}
	if text != "" {
		text = strings.TrimRight(text, "\r\n") + "\n\n" + lineText + link + "\n"
	}
	if htm != "" {
		p := `<p style="margin:16px 0 0;font-size:12px;color:#666666">` +
			strings.Replace(lineHTML, "%s", html.EscapeString(link), 1) + "</p>\n"
		if i := strings.LastIndex(strings.ToLower(htm), "</body>"); i >= 0 {
			htm = htm[:i] + p + htm[i:]
		} else {
			htm = strings.TrimRight(htm, "\r\n") + "\n" + p
		}
	}
	return text, htm
}
