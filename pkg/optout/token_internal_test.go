package optout

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"math/rand/v2"
	"testing"
	"time"
)

// TestMACIsHMAC checks the allocation-free HMAC against crypto/hmac, for
// secrets shorter than, equal to and longer than SHA-256's block.
func TestMACIsHMAC(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, secretLen := range []int{16, 32, 63, 64, 65, 200} {
		secret := make([]byte, secretLen)
		for i := range secret {
			secret[i] = byte(r.IntN(256))
		}
		k := newHMACKey("k", secret)
		for _, msgLen := range []int{0, 1, 55, 56, 64, 100, maxTokenSize} {
			msg := make([]byte, msgLen)
			for i := range msg {
				msg[i] = byte(r.IntN(256))
			}
			m := hmac.New(sha256.New, secret)
			m.Write(msg)
			want := m.Sum(nil)
			if got := k.mac(msg); !bytes.Equal(got[:], want) {
				t.Errorf("secret %d bytes, message %d bytes: mac = %x, crypto/hmac = %x", secretLen, msgLen, got, want)
			}
		}
	}
}

// TestBase64 checks the token's codec against encoding/base64.
func TestBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := range maxTokenSize + 1 {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.IntN(256))
		}
		var enc [maxTokenLen]byte
		got := string(enc[:encode(enc[:], src)])
		if want := base64.RawURLEncoding.EncodeToString(src); got != want {
			t.Fatalf("encode(%x) = %q, want %q", src, got, want)
		}
		var dec [maxTokenSize]byte
		m, ok := decode(dec[:], got)
		if !ok || !bytes.Equal(dec[:m], src) {
			t.Fatalf("decode(%q) = %x, %v; want %x", got, dec[:m], ok, src)
		}
	}
	tests := []struct {
		name string
		in   string
	}{
		{"padding", "QQ=="},
		{"one character left", "QUJDR"},
		{"non-zero bits after one byte", "QR"},
		{"non-zero bits after two bytes", "QUF"},
		{"standard alphabet", "ab+/"},
		{"line break", "QUJD\nQUJD"},
		{"space", "QUJD QUJD"},
		{"high byte", "QUJ\xff"},
		{"longer than the buffer", string(make([]byte, 4*((maxTokenSize+3)/3)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dec [maxTokenSize]byte
			if n, ok := decode(dec[:], tt.in); ok {
				t.Fatalf("decode(%q) = %x, want a failure", tt.in, dec[:n])
			}
		})
	}
}

func TestVerifyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	ks, err := ParseKeys("new:fedcba9876543210,k1:0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	tok, err := ks.Sign(Claims{DebtorID: "D-000123", Channel: "sms", Expires: now.Add(DefaultTokenTTL)})
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte(tok)
	bad[len(bad)-2] ^= 1
	tests := []struct {
		name  string
		token string
		max   float64
	}{
		{"valid: the debtor id string only", tok, 1},
		{"bad signature", string(bad), 0},
		{"malformed", "!" + tok, 0},
		{"expired", tok, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := now
			if tt.name == "expired" {
				at = now.Add(2 * DefaultTokenTTL)
			}
			allocs := testing.AllocsPerRun(100, func() { _, _ = ks.Verify(tt.token, at) })
			if allocs > tt.max {
				t.Errorf("Verify allocates %v times, want at most %v", allocs, tt.max)
			}
		})
	}
}
