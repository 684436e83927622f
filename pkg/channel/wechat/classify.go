package wechat

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
)

// shanghai is the zone WeChat's daily quotas reset in. China has kept UTC+8
// without daylight saving since 1991, so a fixed zone needs no tz database.
var shanghai = time.FixedZone("Asia/Shanghai", 8*60*60)

// nextMidnight is the first midnight in Shanghai after t.
func nextMidnight(t time.Time) time.Time {
	y, m, d := t.In(shanghai).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, shanghai)
}

// tokenInvalid reports an errcode that refuses the access token.
func tokenInvalid(code int) bool {
	return code == 40001 || code == 40014 || code == 42001
}

// classify reads what a template send came to, at now, as the dispatcher's
// error kinds; nil means WeChat took the message. It is the one place that
// says what a WeChat failure means.
func classify(o outcome, now time.Time) *channel.Error {
	switch {
	case o.err != nil && !o.wrote:
		// The request never left: WeChat cannot have it.
		return &channel.Error{Kind: channel.Retryable, Code: channel.TransportCode(o.err), Err: fmt.Errorf("not sent: %w", o.err)}
	case o.err != nil:
		// Written, then no complete answer: WeChat may have sent it.
		return &channel.Error{Kind: channel.Unknown, Code: channel.TransportCode(o.err), Err: fmt.Errorf("no answer: %w", o.err)}
	case o.status >= 500:
		return &channel.Error{Kind: channel.Retryable, Code: "http_" + strconv.Itoa(o.status), Err: fmt.Errorf("HTTP %d", o.status)}
	case o.status != http.StatusOK:
		// WeChat answers 200 with an errcode; anything else came from in
		// front of it (a proxy, a gateway) and did not pass the message on.
		return &channel.Error{Kind: channel.Retryable, Code: "http_" + strconv.Itoa(o.status),
			RetryAfter: channel.RetryAfter(o.retryAfter, now), Err: fmt.Errorf("HTTP %d", o.status)}
	case o.badBody:
		// A 200 that is not WeChat's answer: nobody can say it was not sent.
		return &channel.Error{Kind: channel.Unknown, Code: "bad_reply", Err: errors.New("the reply is not WeChat's JSON")}
	case o.code == 0:
		return nil
	}
	e := &channel.Error{Kind: channel.Retryable, Code: strconv.Itoa(o.code), Err: fmt.Errorf("errcode %d: %s", o.code, clip(o.msg))}
	switch o.code {
	case 43004: // require subscribe: not (or no longer) a follower
		e.Kind = channel.Permanent
	case 43101: // the user refused this account's messages
		e.Kind, e.OptOut = channel.Permanent, true
	case 40003: // invalid openid
		e.Kind = channel.Permanent
	case 40037, 47003, 45067:
		// The template id, the data or the client_msg_id does not fit this
		// template: the same request fails the same way every time, and it
		// is not the provider's outage.
		e.Kind = channel.Permanent
	case 45009: // the account's daily quota is spent; it resets at midnight
		e.Until = nextMidnight(now)
	}
	// Everything else stays Retryable: -1 (system busy), the rate limits
	// (45011, 45015, 45047), a token still refused after one refresh
	// (40001, 40014, 42001), account faults (40013, 40125, 40164, 48001)
	// and codes not known here. WeChat did not send the message, and
	// counting these against the breaker lets a lasting fault open it.
	return e
}

// clip bounds an errmsg kept in an error.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
