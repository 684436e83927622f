package twilio

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/contactd/dispatcher/pkg/channel"
)

// sendState says how far a request got before its call ended.
type sendState int

const (
	unsent    sendState = iota // never written, or cut short: Twilio cannot have it
	sent                       // written in full: Twilio may have acted on it
	maybeSent                  // writing had begun and its end is not known
)

// outcome is what one create call came to.
type outcome struct {
	err        error     // what twilio-go returned
	sent       sendState // how far the request got
	status     int       // HTTP status of the reply; 0 when none came
	retryAfter string    // the reply's Retry-After header
	sid        string    // the SID created, on success
}

// Twilio error codes read here (https://www.twilio.com/docs/api/errors).
const (
	codeUnsubscribed = 21610 // the recipient replied STOP: no more messages from this sender
	codeTooMany      = 20429 // too many requests
)

// recipientCodes are Twilio errors about the recipient's number: the
// debtor's number will not take this channel, which is no fault of
// Twilio's and must not count against its breaker.
var recipientCodes = map[int]bool{
	21211: true, // invalid 'To' phone number
	21614: true, // 'To' is not a valid mobile number
	21612: true, // 'To' is not reachable via SMS (from this sender)
	21408: true, // no permission to send to the 'To' number's region
	21217: true, // phone number does not appear to be valid (calls)
	13224: true, // Dial: invalid phone number
	13223: true, // Dial: invalid phone number format
	21214: true, // 'To' phone number cannot be reached (calls)
	21265: true, // 'To' cannot be a short code
	21401: true, // invalid phone number
	21407: true, // this number type does not support SMS
	21421: true, // phone number is invalid
	21635: true, // 'To' cannot be a landline
}

// classify reads what a create call came to, at now, as the dispatcher's
// error kinds; nil means Twilio created the message or call. It is the one
// place that says what a Twilio failure means. The errors it makes carry
// codes and HTTP statuses only: Twilio's messages name the recipient's
// number, so they are never kept.
func classify(o outcome, now time.Time) *channel.Error {
	status, code := o.status, 0
	var re *client.TwilioRestError
	var v1 *client.RestErrorV1
	switch {
	case errors.As(o.err, &re):
		code = re.Code
		if re.Status != 0 {
			status = re.Status
		}
	case errors.As(o.err, &v1):
		code = v1.Code
		if v1.HttpStatusCode != 0 {
			status = v1.HttpStatusCode
		}
	}
	switch {
	case status >= 400 || code != 0:
		return restError(status, code, channel.RetryAfter(o.retryAfter, now))
	case o.err == nil && o.sid != "":
		return nil
	case o.status != 0 || o.err == nil:
		// Twilio answered below 400, so it took the request, but no SID
		// could be read from the reply: nobody can say it was not created.
		return &channel.Error{Kind: channel.Unknown, Code: "bad_reply",
			Err: fmt.Errorf("HTTP %d without a readable SID", o.status)}
	case o.sent == unsent:
		return &channel.Error{Kind: channel.Retryable, Code: channel.TransportCode(o.err), Err: fmt.Errorf("not sent: %w", o.err)}
	default:
		// Written (or perhaps written), then no answer: Twilio may have
		// created it.
		return &channel.Error{Kind: channel.Unknown, Code: channel.TransportCode(o.err), Err: fmt.Errorf("no answer: %w", o.err)}
	}
}

// restError classifies an error reply from Twilio.
func restError(status, code int, after time.Duration) *channel.Error {
	e := &channel.Error{Code: strconv.Itoa(code), Err: fmt.Errorf("HTTP %d, Twilio error %d", status, code)}
	if code == 0 {
		e.Code, e.Err = "http_"+strconv.Itoa(status), fmt.Errorf("HTTP %d", status)
	}
	switch {
	case code == codeUnsubscribed:
		e.Kind, e.OptOut = channel.Permanent, true
	case recipientCodes[code]:
		e.Kind = channel.Permanent
	case code == codeTooMany || status == http.StatusTooManyRequests:
		e.Kind = channel.Retryable
	case status >= 500:
		// Twilio did not create the resource.
		e.Kind = channel.Retryable
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Our credentials or account: a provider-side fault that must
		// count against the breaker, and retrying after a fix is right.
		e.Kind = channel.Retryable
	default:
		// Any other 4xx: the same request fails the same way every time.
		e.Kind = channel.Permanent
	}
	if e.Kind == channel.Retryable {
		e.RetryAfter = after
	}
	return e
}
