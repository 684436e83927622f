package httpapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// sigHMAC is Twilio's signature, computed here without the Twilio library:
// HMAC-SHA1 over the URL followed by each POST parameter's name and first
// value, in the order of the names' bytes, base64.
func sigHMAC(token, u string, params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := hmac.New(sha1.New, []byte(token))
	io.WriteString(m, u)
	for _, k := range keys {
		io.WriteString(m, k)
		io.WriteString(m, params[k])
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// sigURLs are the URLs a signature from Twilio may cover for a request to
// u: u itself, and u with the scheme's default port added when it has no
// port (Twilio signs with or without it).
func sigURLs(u string) []string {
	out := []string{u}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return out
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := rest[:end]
	if strings.Contains(host, ":") || strings.Contains(host, "@") || strings.Contains(host, "[") {
		return out // has a port, or is more than a plain host name: the exact URL only
	}
	port := ":80"
	if strings.EqualFold(scheme, "https") {
		port = ":443"
	}
	return append(out, scheme+"://"+host+port+rest[end:])
}

// bodyParams are the POST parameters of a Twilio webhook: those of an
// urlencoded body, first value of each name; ok is false for a body that
// cannot be parsed. Other bodies carry none (the fuzz target checks that
// the handler reads none from them).
func bodyParams(ct string, body []byte) (map[string]string, bool) {
	out := map[string]string{}
	if mt, _, _ := mime.ParseMediaType(ct); mt == "application/x-www-form-urlencoded" {
		vs, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, false
		}
		for k, v := range vs {
			out[k] = v[0]
		}
	}
	return out, true
}

// FuzzTwilioSignature: for any public base URL, query string, POST
// parameters and X-Twilio-Signature, the webhook middleware never panics,
// lets a request through only if its signature is the HMAC of the URL and
// the POST parameters, lets every request through that carries that
// signature, and the handler behind it reads no value the signature does
// not cover.
//
// mode picks the body's encoding (mode/5 % 3: urlencoded, multipart, none)
// and the signature (mode % 5): 0 the fuzzed string, 1 the right one, 2 the
// right one with a character changed, 3 the URL's alone (no parameters),
// 4 the right one made with another token. A multipart or text body has no
// parameters; it need not be accepted (Twilio posts urlencoded forms), but
// nothing in it may reach the handler.
func FuzzTwilioSignature(f *testing.F) {
	f.Add("https://collect.bank.example", "", "From", "+8613800138000", "Body", "TD", "", uint8(1))
	f.Add("https://collect.bank.example/", "debtor_id=D-1&intent_id=I-1", "MessageSid", "SM1", "MessageStatus", "delivered", "", uint8(2))
	f.Add("http://localhost:8080", "", "From", "+15005550006", "Body", "STOP", "", uint8(3))
	f.Add("https://collect.bank.example:8443", "a=1", "", "", "", "", "", uint8(3))
	f.Add("https://collect.bank.example", "", "Body", "退订", "Body", "START", "", uint8(4))
	f.Add("", "%zz", "a;b", "c", "d", "%", "AAAA", uint8(0))
	f.Add("https://h", "x", "b", "c", "a", "bc", "not base64 at all\r\n", uint8(0))
	f.Add("https://collect.bank.example", "", "From", "+8613800138000", "Body", "TD", "", uint8(5+1))
	f.Add("https://collect.bank.example", "", "From", "+8613800138000", "Body", "TD", "", uint8(5+3))
	f.Add("https://collect.bank.example", "", "From", "+8613800138000", "Body", "TD", "", uint8(10+1))

	f.Fuzz(func(t *testing.T, base, query, k1, v1, k2, v2, sig string, mode uint8) {
		const token = twilioToken
		s := &Server{Deps: Deps{TwilioAuthToken: token, PublicBaseURL: base}}

		target := "/webhooks/twilio/inbound"
		if query != "" {
			target = "/webhooks/twilio/status?" + query
		}
		for i := 0; i < len(target); i++ {
			if c := target[i]; c <= ' ' || c == 0x7f || c == '#' {
				return // not a request-target a client can send
			}
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // the server answers 400 before any handler
		}

		var body []byte
		var ct string
		switch (mode / 5) % 3 {
		case 0:
			ct = "application/x-www-form-urlencoded"
			if strings.ContainsAny(k1, "&=") {
				body = []byte(k1) // a raw body, perhaps unparsable
			} else {
				form := url.Values{}
				form.Add(k1, v1)
				form.Add(k2, v2)
				body = []byte(form.Encode())
			}
		case 1:
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			for _, kv := range [][2]string{{k1, v1}, {k2, v2}} {
				w, err := mw.CreateFormField(kv[0])
				if err != nil {
					return
				}
				io.WriteString(w, kv[1])
			}
			mw.Close()
			body, ct = buf.Bytes(), mw.FormDataContentType()
		case 2:
			body, ct = []byte(k1+"="+v1), "text/plain"
		}
		params, parsable := bodyParams(ct, body)
		if _, err := url.ParseQuery(u.RawQuery); err != nil {
			parsable = false // ParseForm parses the query too
		}

		full := strings.TrimRight(base, "/") + target
		right := sigHMAC(token, full, params)
		switch mode % 5 {
		case 1:
			sig = right
		case 2:
			i := int(mode) % len(right)
			c := byte('A')
			if right[i] == 'A' {
				c = 'B'
			}
			sig = right[:i] + string(c) + right[i+1:]
		case 3:
			sig = sigHMAC(token, full, nil)
		case 4:
			sig = sigHMAC("another-"+token, full, params)
		}

		req := &http.Request{
			Method: http.MethodPost, URL: u, RequestURI: target, Host: "collect.bank.example",
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		}
		req.Header.Set("Content-Type", ct)
		req.Header.Set("X-Twilio-Signature", sig)
		c := echo.New().NewContext(req, httptest.NewRecorder())
		accepted := false
		qv, _ := url.ParseQuery(u.RawQuery)
		err = s.twilioSigned(func(c echo.Context) error {
			accepted = true
			// What the handlers read (r.FormValue) is signed: a POST
			// parameter, or else a parameter of the signed URL.
			for _, k := range []string{k1, k2, "From", "Body", "MessageSid", "MessageStatus", "CallSid", "CallStatus", "ErrorCode", "AnsweredBy"} {
				got := c.Request().FormValue(k)
				want, ok := params[k]
				if !ok {
					want = qv.Get(k)
				}
				if got != want {
					t.Fatalf("the handler reads %s=%q; the signed request has %q", k, got, want)
				}
			}
			return nil
		})(c)

		var valid bool
		for _, cu := range sigURLs(full) {
			valid = valid || hmac.Equal([]byte(sig), []byte(sigHMAC(token, cu, params)))
		}
		switch {
		case accepted && !parsable:
			t.Fatalf("accepted a request whose body or query cannot be parsed: %q %q", target, body)
		case accepted && !valid:
			t.Fatalf("accepted signature %q for %q with %v; the right one is %q", sig, full, params, right)
		case !accepted && parsable && mode%5 == 1 && !strings.HasPrefix(ct, "multipart/"):
			t.Fatalf("refused the right signature for %q with %v: %v", full, params, err)
		case !accepted:
			var he *echo.HTTPError
			if !errors.As(err, &he) || he.Code != http.StatusForbidden && he.Code != http.StatusBadRequest {
				t.Fatalf("refused with %v, want a 403 or a 400", err)
			}
		case err != nil:
			t.Fatalf("accepted, yet the middleware returned %v", err)
		}
	})
}
