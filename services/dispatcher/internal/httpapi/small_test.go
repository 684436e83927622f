package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestPagesCannotBeFramed: the ops page, its sign-in form and the opt-out
// page forbid framing (clickjacking).
func TestPagesCannotBeFramed(t *testing.T) {
	_, ts := newEdgeServer(t, HTTPConfig{}, nil)
	for _, tc := range []struct{ name, key, path string }{
		{"sign-in form", "", "/ops"},
		{"ops page", readKey, "/ops"},
		{"opt-out page", "", "/u/not-a-token"},
	} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+tc.path, nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q lacks frame-ancestors 'none'", tc.name, csp)
		}
		if xfo := res.Header.Get("X-Frame-Options"); xfo != "DENY" {
			t.Errorf("%s: X-Frame-Options %q, want DENY", tc.name, xfo)
		}
	}
}

// TestBearerSchemeAnyCase: RFC 6750's scheme is case-insensitive.
func TestBearerSchemeAnyCase(t *testing.T) {
	_, ts := newEdgeServer(t, HTTPConfig{}, nil)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/debtors/D-1/optouts", nil)
		req.Header.Set("Authorization", scheme+" "+readKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("scheme %q: HTTP %d, want 200", scheme, res.StatusCode)
		}
	}
	if code, _ := call(t, ts.URL, "", "GET", "/v1/debtors/D-1/optouts", ""); code != http.StatusUnauthorized {
		t.Errorf("no key: HTTP %d", code)
	}
}

// TestReadyzHidesErrorsFromStrangers: a failing dependency's error text
// only to a caller with a key.
func TestReadyzHidesErrorsFromStrangers(t *testing.T) {
	_, ts := newEdgeServer(t, HTTPConfig{}, func(d *Deps) {
		d.Ready = []Check{{Name: "kafka", Ping: func(context.Context) error { return errors.New("dial tcp 10.1.2.3:9092: connection refused") }}}
	})
	code, body := call(t, ts.URL, "", "GET", "/readyz", "")
	if code != http.StatusServiceUnavailable || strings.Contains(body, "10.1.2.3") || strings.Contains(body, "refused") || !strings.Contains(body, `"kafka":"unreachable"`) {
		t.Errorf("readyz without a key: HTTP %d %s, want 503 naming kafka without the error", code, body)
	}
	code, body = call(t, ts.URL, readKey, "GET", "/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "connection refused") {
		t.Errorf("readyz with a key: HTTP %d %s, want the error text", code, body)
	}
}

// TestDebtIDChecked: a conversation's debt_id has the form of a debtor id.
func TestDebtIDChecked(t *testing.T) {
	_, ts := newEdgeServer(t, HTTPConfig{}, nil)
	for _, id := range []string{`bad{id`, `L 1`, `L-1\n`, strings.Repeat("L", 129), `债务-1`} {
		code, body := call(t, ts.URL, writeKey, "POST", "/v1/debtors/D-9/conversations", `{"debt_id":`+jsonString(id)+`,"channel":"voice"}`)
		if code != http.StatusBadRequest || !strings.Contains(body, `"field":"debt_id"`) {
			t.Errorf("debt_id %q: HTTP %d %s, want 400 on debt_id", id, code, body)
		}
	}
	if code, body := call(t, ts.URL, writeKey, "POST", "/v1/debtors/D-9/conversations", `{"debt_id":"L-2024.0042:a_b","channel":"voice"}`); code != http.StatusCreated {
		t.Errorf("a well-formed debt_id: HTTP %d %s", code, body)
	}
	if code, body := call(t, ts.URL, readKey, "GET", "/v1/debtors/D-9/contacts?debt_id=bad%7Bid", ""); code != http.StatusBadRequest || !strings.Contains(body, `"field":"debt_id"`) {
		t.Errorf("contacts with a malformed debt_id: HTTP %d %s", code, body)
	}
}

// TestLoneSurrogateRejected: a \ud800 escape with no partner is refused,
// not turned into U+FFFD; a proper pair is fine.
func TestLoneSurrogateRejected(t *testing.T) {
	_, ts := newEdgeServer(t, HTTPConfig{}, nil)
	for _, tc := range []struct {
		name, name2 string
		code        int
	}{
		{"high alone", `\ud800`, 400},
		{"low alone", `x\udc00y`, 400},
		{"high then not low", `\ud83d\u0041`, 400},
		{"high at the end", `张三\uDBFF`, 400},
		{"a pair", `\ud83d\ude00`, 202},
		{"an escaped backslash", `\\ud800`, 202},
	} {
		body := strings.Replace(validIntent, `"name":"张三"`, `"name":"`+tc.name2+`"`, 1)
		if body == validIntent {
			t.Fatal("the test intent has no name param")
		}
		body = strings.Replace(body, `"id":"I-NEW-1"`, `"id":"I-SUR-`+strings.ReplaceAll(tc.name, " ", "-")+`"`, 1)
		code, resp := call(t, ts.URL, writeKey, "POST", "/v1/intents", body)
		if code != tc.code || (code == 400 && !strings.Contains(resp, `"code":"invalid_utf8"`)) {
			t.Errorf("%s: HTTP %d %s, want %d", tc.name, code, resp, tc.code)
		}
	}
	code, resp := call(t, ts.URL, writeKey, "PUT", "/v1/debtors/D-1/optouts/sms", `{"reason":"asked \ud800"}`)
	if code != 400 || !strings.Contains(resp, "invalid_utf8") {
		t.Errorf("an opt-out reason with a lone surrogate: HTTP %d %s, want 400", code, resp)
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
