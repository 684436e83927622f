package optout

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The keys and clock of the token fuzz targets; the seed corpus under
// testdata/fuzz/FuzzVerify was signed with them.
const (
	fuzzSecretK1  = "fuzz-secret-k1-0123456789"
	fuzzSecretOld = "fuzz-secret-old-0123456789"
)

var fuzzNow = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// FuzzVerify feeds Verify any string. It must not panic; it must fail with
// exactly one of the four errors; its decoder must agree with
// encoding/base64's strict one; and a token that verifies must be the only
// spelling of its claims: signing them again gives the same token.
func FuzzVerify(f *testing.F) {
	ks, err := ParseKeys("k1:" + fuzzSecretK1 + ",old:" + fuzzSecretOld)
	if err != nil {
		f.Fatal(err)
	}
	signers := map[string]*Keys{}
	for kid, secret := range map[string]string{"k1": fuzzSecretK1, "old": fuzzSecretOld} {
		if signers[kid], err = NewKeys(kid, []byte(secret)); err != nil {
			f.Fatal(err)
		}
	}
	for _, c := range []Claims{
		{DebtorID: "D-000123", Channel: "sms", Expires: fuzzNow.Add(DefaultTokenTTL)},
		{DebtorID: "D-000123", Channel: ChannelAll, Expires: fuzzNow.Add(time.Hour)},
	} {
		tok, err := ks.Sign(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	sentinels := []error{ErrMalformed, ErrBadSignature, ErrExpired, ErrUnknownKey}
	strict := base64.RawURLEncoding.Strict()

	f.Fuzz(func(t *testing.T, token string) {
		c, err := ks.Verify(token, fuzzNow)

		var buf [maxTokenSize]byte
		n, ok := decode(buf[:], token)
		std, stdErr := strict.DecodeString(token)
		stdOK := stdErr == nil && !strings.ContainsAny(token, "\r\n") && len(std) <= maxTokenSize
		if ok != stdOK || ok && !bytes.Equal(buf[:n], std) {
			t.Fatalf("decode(%q) = %x, %v; encoding/base64 says %x, %v", token, buf[:n], ok, std, stdErr)
		}

		if err != nil {
			matched := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					matched++
				}
			}
			if matched != 1 {
				t.Fatalf("Verify error %v matches %d of the four errors, want exactly 1", err, matched)
			}
			if c != (Claims{}) {
				t.Fatalf("claims %+v returned with error %v", c, err)
			}
			if !ok && !errors.Is(err, ErrMalformed) {
				t.Fatalf("undecodable token: %v, want ErrMalformed", err)
			}
			return
		}
		if !fuzzNow.Before(c.Expires) {
			t.Fatalf("verified a token that expired at %v", c.Expires)
		}
		kid := string(buf[2 : 2+buf[1]])
		again, err := signers[kid].Sign(c)
		if err != nil {
			t.Fatalf("claims %+v verified but do not sign: %v", c, err)
		}
		if again != token {
			t.Fatalf("token %q verified, but its claims sign to %q", token, again)
		}
	})
}

// FuzzSignVerify signs any claims: Sign either refuses them for a reason
// the format states, or Verify gives them back, to the second.
func FuzzSignVerify(f *testing.F) {
	ks, err := ParseKeys("k1:" + fuzzSecretK1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("D-000123", "sms", int64(1795000000))
	f.Add("x", "all", int64(1))
	f.Add(strings.Repeat("a", 128), "wechat", int64(1<<40-1))
	f.Add("D 1", "email", int64(1<<40))
	f.Add("张三", "voice", int64(-1))
	f.Fuzz(func(t *testing.T, debtor, channel string, exp int64) {
		in := Claims{DebtorID: debtor, Channel: channel, Expires: time.Unix(exp, 0)}
		tok, err := ks.Sign(in)
		_, known := channelCode(channel)
		valid := known && len(debtor) >= 1 && len(debtor) <= maxDebtorID && validDebtorID(debtor) && exp >= 1 && exp <= maxExpiry
		if (err == nil) != valid {
			t.Fatalf("Sign(%+v) error %v; the claims are valid: %v", in, err, valid)
		}
		if err != nil {
			return
		}
		if len(tok) > maxTokenLen {
			t.Fatalf("token of %d characters, more than %d", len(tok), maxTokenLen)
		}
		out, err := ks.Verify(tok, time.Unix(0, 0))
		if err != nil {
			t.Fatalf("Verify(Sign(%+v)): %v", in, err)
		}
		if out.DebtorID != debtor || out.Channel != channel || !out.Expires.Equal(in.Expires) {
			t.Fatalf("Verify(Sign(%+v)) = %+v", in, out)
		}
		if _, err := ks.Verify(tok, in.Expires); !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify at the expiry: %v, want ErrExpired", err)
		}
	})
}

// TestFuzzVerifyCorpus keeps the committed seeds useful: those named valid_*
// verify, so the fuzzer starts from tokens that reach the signature check
// and the re-signing; the others fail.
func TestFuzzVerifyCorpus(t *testing.T) {
	ks, err := ParseKeys("k1:" + fuzzSecretK1 + ",old:" + fuzzSecretOld)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzVerify", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
	valid := 0
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			header, lit, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
			lit, okLit := strings.CutPrefix(lit, "string(")
			lit, okEnd := strings.CutSuffix(lit, ")")
			tok, err := strconv.Unquote(lit)
			if header != "go test fuzz v1" || !okLit || !okEnd || err != nil {
				t.Fatalf("not a fuzz seed of one string: %q", b)
			}
			_, err = ks.Verify(tok, fuzzNow)
			if want := strings.HasPrefix(name, "valid_"); (err == nil) != want {
				t.Fatalf("Verify: %v; the seed's name says valid: %v", err, want)
			}
			if err == nil {
				valid++
			}
		})
	}
	if valid == 0 {
		t.Error("no seed verifies")
	}
}
