package optout_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/optout"
)

const (
	secretA = "0123456789abcdef-secret-A"
	secretB = "fedcba9876543210-secret-B"
)

// now is the clock of these tests; exp is well after it.
var (
	now = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	exp = now.Add(optout.DefaultTokenTTL)
)

func mustKeys(t testing.TB, s string) *optout.Keys {
	t.Helper()
	ks, err := optout.ParseKeys(s)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return ks
}

func mustSign(t testing.TB, ks *optout.Keys, c optout.Claims) string {
	t.Helper()
	tok, err := ks.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

func TestSignVerifyRoundTrip(t *testing.T) {
	ks := mustKeys(t, "k1:"+secretA)
	tests := []struct {
		name    string
		claims  optout.Claims
		maxLen  int
		wantExp time.Time
	}{
		{"sms", optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: exp}, 60, exp},
		{"voice", optout.Claims{DebtorID: "D-000123", Channel: "voice", Expires: exp}, 60, exp},
		{"email", optout.Claims{DebtorID: "D-000123", Channel: "email", Expires: exp}, 60, exp},
		{"wechat", optout.Claims{DebtorID: "D-000123", Channel: "wechat", Expires: exp}, 60, exp},
		{"all channels", optout.Claims{DebtorID: "D-000123", Channel: optout.ChannelAll, Expires: exp}, 60, exp},
		{"one-byte debtor id", optout.Claims{DebtorID: "7", Channel: "sms", Expires: exp}, 60, exp},
		{"every allowed character", optout.Claims{DebtorID: "az.AZ_09:-", Channel: "sms", Expires: exp}, 60, exp},
		{"128-byte debtor id", optout.Claims{DebtorID: strings.Repeat("x", 128), Channel: "sms", Expires: exp}, 220, exp},
		{"expiry in another zone, with nanoseconds", optout.Claims{DebtorID: "D-1", Channel: "sms",
			Expires: time.Date(2027, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("CST", 8*3600))}, 60,
			time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("CST", 8*3600))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mustSign(t, ks, tt.claims)
			if len(tok) > tt.maxLen {
				t.Errorf("token is %d characters, want at most %d", len(tok), tt.maxLen)
			}
			if strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
				t.Errorf("token %q is not unpadded base64url", tok)
			}
			got, err := ks.Verify(tok, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.DebtorID != tt.claims.DebtorID || got.Channel != tt.claims.Channel || !got.Expires.Equal(tt.wantExp) {
				t.Errorf("Verify = %+v, want %+v expiring %v", got, tt.claims, tt.wantExp)
			}
			again := mustSign(t, ks, got)
			if again != tok {
				t.Errorf("signing the verified claims gives %q, want %q", again, tok)
			}
		})
	}
}

// TestTokenLength pins the size a typical link carries.
func TestTokenLength(t *testing.T) {
	ks := mustKeys(t, "k1:"+secretA)
	tok := mustSign(t, ks, optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: exp})
	if len(tok) != 47 {
		t.Errorf("token for D-000123 with key id k1 is %d characters, want 47", len(tok))
	}
}

func TestSignDistinguishesClaims(t *testing.T) {
	ks := mustKeys(t, "k1:"+secretA)
	base := optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: exp}
	seen := map[string]string{mustSign(t, ks, base): "base"}
	for name, c := range map[string]optout.Claims{
		"other debtor":  {DebtorID: "D-000124", Channel: "sms", Expires: exp},
		"other channel": {DebtorID: "D-000123", Channel: "email", Expires: exp},
		"other expiry":  {DebtorID: "D-000123", Channel: "sms", Expires: exp.Add(time.Second)},
	} {
		tok := mustSign(t, ks, c)
		if prev, ok := seen[tok]; ok {
			t.Errorf("%s signs to the same token as %s", name, prev)
		}
		seen[tok] = name
	}
}

func rawToken(t *testing.T, tok string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("decode %q: %v", tok, err)
	}
	return b
}

func TestVerifyTampered(t *testing.T) {
	ks := mustKeys(t, "k1:"+secretA)
	tok := mustSign(t, ks, optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: exp})
	other := mustSign(t, ks, optout.Claims{DebtorID: "D-000124", Channel: "sms", Expires: exp})
	// Offsets for key id "k1" and debtor "D-000123" (see the format in token.go).
	const (
		offVersion = 0
		offKidLen  = 1
		offKid     = 2
		offExpiry  = 4
		offChannel = 9
		offIDLen   = 10
		offID      = 11
		offTag     = 19
		size       = 35
	)
	if n := len(rawToken(t, tok)); n != size {
		t.Fatalf("token is %d bytes, the offsets below assume %d", n, size)
	}
	raw := func(edit func(b []byte) []byte) string {
		return base64.RawURLEncoding.EncodeToString(edit(rawToken(t, tok)))
	}
	set := func(i int, v byte) string { return raw(func(b []byte) []byte { b[i] = v; return b }) }
	flip := func(i int) string { return raw(func(b []byte) []byte { b[i] ^= 0x01; return b }) }

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"version", set(offVersion, 2), optout.ErrMalformed},
		{"version zero", set(offVersion, 0), optout.ErrMalformed},
		{"key id length longer", set(offKidLen, 3), optout.ErrMalformed},
		{"key id length zero", set(offKidLen, 0), optout.ErrMalformed},
		{"key id length past the end", set(offKidLen, 200), optout.ErrMalformed},
		{"key id to another valid id", set(offKid, 'j'), optout.ErrUnknownKey},
		{"key id flipped", flip(offKid + 1), optout.ErrUnknownKey},
		{"key id not alphanumeric", set(offKid, '-'), optout.ErrMalformed},
		{"expiry high byte", flip(offExpiry), optout.ErrBadSignature},
		{"expiry low byte", flip(offExpiry + 4), optout.ErrBadSignature},
		{"expiry zero", raw(func(b []byte) []byte { copy(b[offExpiry:offExpiry+5], make([]byte, 5)); return b }), optout.ErrMalformed},
		{"channel to all", set(offChannel, 0), optout.ErrBadSignature},
		{"channel to email", set(offChannel, 3), optout.ErrBadSignature},
		{"channel unknown", set(offChannel, 5), optout.ErrMalformed},
		{"debtor id length", set(offIDLen, 7), optout.ErrMalformed},
		{"debtor id length zero", set(offIDLen, 0), optout.ErrMalformed},
		{"debtor id length over 128", set(offIDLen, 129), optout.ErrMalformed},
		{"debtor id first byte", set(offID, 'E'), optout.ErrBadSignature},
		{"debtor id last byte", flip(offTag - 1), optout.ErrBadSignature},
		{"debtor id character not allowed", set(offID+1, '/'), optout.ErrMalformed},
		{"debtor id character not ASCII", set(offID+1, 0xe9), optout.ErrMalformed},
		{"tag first byte", flip(offTag), optout.ErrBadSignature},
		{"tag last byte", flip(size - 1), optout.ErrBadSignature},
		{"tag of another token", raw(func(b []byte) []byte { copy(b[offTag:], rawToken(t, other)[offTag:]); return b }), optout.ErrBadSignature},
		{"truncated by a byte", raw(func(b []byte) []byte { return b[:size-1] }), optout.ErrMalformed},
		{"truncated to the tag's start", raw(func(b []byte) []byte { return b[:offTag] }), optout.ErrMalformed},
		{"byte appended", raw(func(b []byte) []byte { return append(b, 0) }), optout.ErrMalformed},
		{"tag appended twice", raw(func(b []byte) []byte { return append(b, b[offTag:]...) }), optout.ErrMalformed},
		{"character dropped", tok[:len(tok)-1], optout.ErrMalformed},
		{"half the token", tok[:len(tok)/2], optout.ErrMalformed},
		{"character appended", tok + "A", optout.ErrMalformed},
		{"padding appended", tok + "=", optout.ErrMalformed},
		{"line break inside", tok[:10] + "\n" + tok[10:], optout.ErrMalformed},
		{"carriage return at the end", tok + "\r", optout.ErrMalformed},
		{"space at the end", tok + " ", optout.ErrMalformed},
		{"plus from the standard alphabet", "+" + tok[1:], optout.ErrMalformed},
		{"slash from the standard alphabet", tok[:5] + "/" + tok[6:], optout.ErrMalformed},
		{"non-zero trailing bits", nonCanonical(t, tok), optout.ErrMalformed},
		{"empty", "", optout.ErrMalformed},
		{"one character", "A", optout.ErrMalformed},
		{"far too long", strings.Repeat("A", 10_000), optout.ErrMalformed},
		{"percent-encoded", "%41" + tok[1:], optout.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.token == tok {
				t.Fatal("the edit left the token as it was")
			}
			got, err := ks.Verify(tt.token, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			for _, e := range []error{optout.ErrMalformed, optout.ErrBadSignature, optout.ErrExpired, optout.ErrUnknownKey} {
				if e != tt.want && errors.Is(err, e) {
					t.Errorf("error %v is also %v", err, e)
				}
			}
			if got != (optout.Claims{}) {
				t.Errorf("claims %+v returned with the error, want none", got)
			}
		})
	}
}

// nonCanonical changes the last character of tok so that it spells the same
// bytes with non-zero padding bits, which a lenient decoder would accept.
func nonCanonical(t *testing.T, tok string) string {
	t.Helper()
	if len(tok)%4 == 0 {
		t.Fatalf("token %q has no padding bits", tok)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	s := tok[:len(tok)-1] + string(alphabet[last|1])
	if b, err := base64.RawURLEncoding.DecodeString(s); err != nil || string(b) != string(rawToken(t, tok)) {
		t.Fatalf("%q does not decode leniently to the same bytes (%v)", s, err)
	}
	return s
}

func TestVerifyExpiry(t *testing.T) {
	ks := mustKeys(t, "k1:"+secretA)
	e := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tok := mustSign(t, ks, optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: e})
	tests := []struct {
		name string
		now  time.Time
		want error
	}{
		{"long before", e.Add(-optout.DefaultTokenTTL), nil},
		{"a second before", e.Add(-time.Second), nil},
		{"a nanosecond before", e.Add(-time.Nanosecond), nil},
		{"at the expiry", e, optout.ErrExpired},
		{"at the expiry, seen from Shanghai", e.In(time.FixedZone("CST", 8*3600)), optout.ErrExpired},
		{"a second after", e.Add(time.Second), optout.ErrExpired},
		{"a year after", e.AddDate(1, 0, 0), optout.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ks.Verify(tok, tt.now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify at %v = %v, want %v", tt.now, err, tt.want)
			}
			if err == nil && c.DebtorID != "D-000123" {
				t.Errorf("DebtorID = %q", c.DebtorID)
			}
		})
	}
	t.Run("signature is checked before expiry", func(t *testing.T) {
		b := rawToken(t, tok)
		b[len(b)-1] ^= 1
		_, err := ks.Verify(base64.RawURLEncoding.EncodeToString(b), e.Add(time.Hour))
		if !errors.Is(err, optout.ErrBadSignature) {
			t.Fatalf("Verify of a tampered, expired token = %v, want ErrBadSignature", err)
		}
	})
}

func TestKeyRotation(t *testing.T) {
	old := mustKeys(t, "old:"+secretA)
	both := mustKeys(t, "new:"+secretB+",old:"+secretA)
	onlyNew := mustKeys(t, "new:"+secretB)
	c := optout.Claims{DebtorID: "D-000123", Channel: "email", Expires: exp}
	oldTok := mustSign(t, old, c)
	newTok := mustSign(t, both, c)

	tests := []struct {
		name  string
		keys  *optout.Keys
		token string
		want  error
	}{
		{"old token, old keys", old, oldTok, nil},
		{"old token after the new key is put first", both, oldTok, nil},
		{"new token, new and old keys", both, newTok, nil},
		{"new token, new key alone", onlyNew, newTok, nil},
		{"new token is signed by the new key, so old keys do not know it", old, newTok, optout.ErrUnknownKey},
		{"old token once the old key is removed", onlyNew, oldTok, optout.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.keys.Verify(tt.token, now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err == nil && got.DebtorID != c.DebtorID {
				t.Errorf("DebtorID = %q, want %q", got.DebtorID, c.DebtorID)
			}
		})
	}
	if newTok == oldTok {
		t.Error("keys new,old sign like keys old: the first key must sign")
	}
}

func TestVerifyOtherKeys(t *testing.T) {
	mine := mustKeys(t, "k1:"+secretA)
	tok := mustSign(t, mine, optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: exp})
	sameIDOtherSecret := mustKeys(t, "k1:"+secretB)
	otherID := mustKeys(t, "k2:"+secretA)
	dev := optout.GenerateDevKeys()
	tests := []struct {
		name string
		keys *optout.Keys
		want error
	}{
		{"same key id, other secret", sameIDOtherSecret, optout.ErrBadSignature},
		{"other key id, same secret", otherID, optout.ErrUnknownKey},
		{"dev keys", dev, optout.ErrUnknownKey},
		{"no keys", nil, optout.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.keys.Verify(tok, now); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestGenerateDevKeys(t *testing.T) {
	a, b := optout.GenerateDevKeys(), optout.GenerateDevKeys()
	c := optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: exp}
	tok := mustSign(t, a, c)
	if _, err := a.Verify(tok, now); err != nil {
		t.Fatalf("dev keys do not verify their own token: %v", err)
	}
	if _, err := b.Verify(tok, now); !errors.Is(err, optout.ErrBadSignature) {
		t.Fatalf("another process's dev keys: Verify = %v, want ErrBadSignature", err)
	}
}

func TestParseKeys(t *testing.T) {
	sixteen := "0123456789abcdef"
	tests := []struct {
		name    string
		in      string
		wantErr string // "" when it parses
		signer  string // the key id expected to sign
	}{
		{"one key", "k1:" + sixteen, "", "k1"},
		{"two keys, first signs", "new:" + sixteen + "X,old:" + sixteen, "", "new"},
		{"spaces around entries", " new:" + sixteen + " , old:" + sixteen + "Y ", "", "new"},
		{"secret holds a colon", "k1:" + sixteen + ":x", "", "k1"},
		{"eight-character key id", "ABCdef12:" + sixteen, "", "ABCdef12"},
		{"empty", "", "none given", ""},
		{"blank", "  ", "none given", ""},
		{"no colon", "k1" + sixteen, "entry 1: want kid:secret", ""},
		{"empty key id", ":" + sixteen, "entry 1: key id", ""},
		{"key id too long", "ABCdef123:" + sixteen, "entry 1: key id", ""},
		{"key id with a dash", "k-1:" + sixteen, "entry 1: key id", ""},
		{"key id not ASCII", "ké:" + sixteen, "entry 1: key id", ""},
		{"secret of 15 bytes", "k1:" + sixteen[:15], "entry 1: key \"k1\": secret shorter than 16 bytes", ""},
		{"empty secret", "k1:", "secret shorter", ""},
		{"second entry bad", "k1:" + sixteen + ",k2:short", "entry 2: key \"k2\": secret shorter", ""},
		{"trailing comma", "k1:" + sixteen + ",", "entry 2: want kid:secret", ""},
		{"key id twice", "k1:" + sixteen + ",k1:" + sixteen + "Z", "entry 2: key id \"k1\" given twice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := optout.ParseKeys(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseKeys(%q) = %v, want an error", tt.in, ks)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q, want it to say %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), sixteen[:10]) {
					t.Errorf("error %q shows a secret", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeys(%q): %v", tt.in, err)
			}
			tok := mustSign(t, ks, optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: exp})
			// The signer alone, with its secret as parsed, must verify it.
			for _, entry := range strings.Split(tt.in, ",") {
				kid, secret, _ := strings.Cut(strings.TrimSpace(entry), ":")
				if kid != tt.signer {
					continue
				}
				alone, err := optout.NewKeys(kid, []byte(secret))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := alone.Verify(tok, now); err != nil {
					t.Errorf("the token is not signed by %q with its secret: %v", kid, err)
				}
			}
		})
	}
}

func TestNewKeys(t *testing.T) {
	tests := []struct {
		name   string
		kid    string
		secret []byte
		ok     bool
	}{
		{"valid", "k1", []byte("0123456789abcdef"), true},
		{"binary secret", "k1", []byte("\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff"), true},
		{"long secret", "k1", []byte(strings.Repeat("s", 200)), true},
		{"short secret", "k1", []byte("0123456789abcde"), false},
		{"nil secret", "k1", nil, false},
		{"empty key id", "", []byte("0123456789abcdef"), false},
		{"key id with a colon", "k:1", []byte("0123456789abcdef"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := optout.NewKeys(tt.kid, tt.secret)
			if (err == nil) != tt.ok {
				t.Fatalf("NewKeys: err = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			tok := mustSign(t, ks, optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: exp})
			if _, err := ks.Verify(tok, now); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
	t.Run("the secret is copied", func(t *testing.T) {
		secret := []byte("0123456789abcdef")
		ks, err := optout.NewKeys("k1", secret)
		if err != nil {
			t.Fatal(err)
		}
		tok := mustSign(t, ks, optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: exp})
		secret[0] = 'X'
		if _, err := ks.Verify(tok, now); err != nil {
			t.Fatalf("changing the caller's slice changed the key: %v", err)
		}
	})
}

func TestSignRejects(t *testing.T) {
	ks := mustKeys(t, "k1:"+secretA)
	tests := []struct {
		name   string
		claims optout.Claims
	}{
		{"unknown channel", optout.Claims{DebtorID: "D-1", Channel: "fax", Expires: exp}},
		{"channel in capitals", optout.Claims{DebtorID: "D-1", Channel: "SMS", Expires: exp}},
		{"no channel", optout.Claims{DebtorID: "D-1", Expires: exp}},
		{"no debtor", optout.Claims{Channel: "sms", Expires: exp}},
		{"debtor id of 129 bytes", optout.Claims{DebtorID: strings.Repeat("x", 129), Channel: "sms", Expires: exp}},
		{"debtor id with a space", optout.Claims{DebtorID: "D 1", Channel: "sms", Expires: exp}},
		{"debtor id with a slash", optout.Claims{DebtorID: "D/1", Channel: "sms", Expires: exp}},
		{"debtor id not ASCII", optout.Claims{DebtorID: "张三", Channel: "sms", Expires: exp}},
		{"no expiry", optout.Claims{DebtorID: "D-1", Channel: "sms"}},
		{"expiry at the epoch", optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: time.Unix(0, 0)}},
		{"expiry before 1970", optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"expiry past 40 bits", optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: time.Unix(1<<40, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ks.Sign(tt.claims)
			if err == nil {
				t.Fatalf("Sign = %q, want an error", tok)
			}
			if tt.claims.DebtorID != "" && strings.Contains(err.Error(), tt.claims.DebtorID) {
				t.Errorf("error %q shows the debtor id", err)
			}
		})
	}
	t.Run("no keys", func(t *testing.T) {
		var none *optout.Keys
		if _, err := none.Sign(optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: exp}); err == nil {
			t.Fatal("nil Keys signed")
		}
	})
	t.Run("last second of 40 bits", func(t *testing.T) {
		e := time.Unix(1<<40-1, 0)
		tok := mustSign(t, ks, optout.Claims{DebtorID: "D-1", Channel: "sms", Expires: e})
		if c, err := ks.Verify(tok, now); err != nil || !c.Expires.Equal(e) {
			t.Fatalf("Verify = %+v, %v", c, err)
		}
	})
}

func TestKeysPrintWithoutSecrets(t *testing.T) {
	ks := mustKeys(t, "new:"+secretB+",old:"+secretA)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, ks)
		if strings.Contains(out, "secret") || strings.Contains(out, "0123") || strings.Contains(out, "fedc") {
			t.Errorf("%s prints a secret: %s", verb, out)
		}
		if !strings.Contains(out, "new") || !strings.Contains(out, "old") {
			t.Errorf("%s does not name the keys: %s", verb, out)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	ks := mustKeys(b, "k1:"+secretA)
	c := optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: exp}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ks := mustKeys(b, "new:"+secretB+",k1:"+secretA)
	tok, err := mustKeys(b, "k1:"+secretA).Sign(optout.Claims{DebtorID: "D-000123", Channel: "sms", Expires: exp})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
