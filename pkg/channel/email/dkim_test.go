//go:debug rsa1024min=0

package email

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/email/smtptest"
)

// dkimRecord is the DNS TXT record publishing key's public half.
func dkimRecord(t *testing.T, key crypto.Signer) string {
	t.Helper()
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	t.Fatalf("key type %T", key.Public())
	return ""
}

// verify checks raw's DKIM signature against the one record published at
// name.
func verify(raw []byte, name, record string) ([]*dkim.Verification, error) {
	return dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != name {
				return nil, fmt.Errorf("no TXT record at %s", domain)
			}
			return []string{record}, nil
		},
	})
}

// testRSAKey is one RSA-2048 key shared by the tests: generating it is
// the slowest step.
var testRSAKey = func() func(*testing.T) *rsa.PrivateKey {
	var (
		once sync.Once
		key  *rsa.PrivateKey
		err  error
	)
	return func(t *testing.T) *rsa.PrivateKey {
		t.Helper()
		once.Do(func() { key, err = rsa.GenerateKey(rand.Reader, 2048) })
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
}()

func testEd25519Key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantSigned are the fields the signature must cover.
var wantSigned = []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
	"List-Unsubscribe", "List-Unsubscribe-Post"}

func TestDKIMSignature(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	tests := []struct {
		name       string
		key        crypto.Signer
		domain     string // Config.DKIMDomain
		wantDomain string // d=
	}{
		{"rsa-2048", testRSAKey(t), "", "bank.example"},
		{"ed25519", testEd25519Key(t), "", "bank.example"},
		{"rsa-2048, own domain", testRSAKey(t), "mail.bank.example", "mail.bank.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			mailer := newMailer(t, srv, func(c *Config) {
				c.DKIMKey, c.DKIMSelector, c.DKIMDomain = tt.key, "s2026", tt.domain
				c.UnsubscribeMailto = "unsubscribe@bank.example"
			})
			if _, err := mailer.Send(context.Background(), testMessage()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			raw := srv.Messages()[0].Data
			vs, err := verify(raw, "s2026._domainkey."+tt.wantDomain, dkimRecord(t, tt.key))
			if err != nil || len(vs) != 1 {
				t.Fatalf("Verify: %d verifications, %v", len(vs), err)
			}
			v := vs[0]
			if v.Err != nil {
				t.Fatalf("signature does not verify: %v", v.Err)
			}
			if v.Domain != tt.wantDomain {
				t.Errorf("d=%s, want %s", v.Domain, tt.wantDomain)
			}
			for _, k := range wantSigned {
				if !containsFold(v.HeaderKeys, k) {
					t.Errorf("h= %v lacks %s", v.HeaderKeys, k)
				}
			}
			if !bytes.Contains(raw, []byte("c=relaxed/relaxed")) {
				t.Errorf("canonicalisation is not relaxed/relaxed")
			}
		})
	}
}

// TestDKIMTamper changes a signed message the way a forwarder or an
// attacker could; every change must break the signature.
func TestDKIMTamper(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	key := testRSAKey(t)
	record := dkimRecord(t, key)
	mailer := newMailer(t, srv, func(c *Config) {
		c.DKIMKey, c.DKIMSelector = key, "s2026"
		c.UnsubscribeMailto = "unsubscribe@bank.example"
	})
	send := func(t *testing.T, optOut string) []byte {
		srv.Reset()
		m := testMessage()
		m.OptOutURL = optOut
		if _, err := mailer.Send(context.Background(), m); err != nil {
			t.Fatalf("Send: %v", err)
		}
		return srv.Messages()[0].Data
	}
	// inHeader edits only the header block: the link is in the body too.
	inHeader := func(f func(string) string) func([]byte) []byte {
		return func(raw []byte) []byte {
			head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
			if !ok {
				panic("no header/body separator")
			}
			return append([]byte(f(string(head))+"\r\n\r\n"), body...)
		}
	}
	tests := []struct {
		name    string
		optOut  string
		tamper  func([]byte) []byte
		wantErr bool
	}{
		{"untouched", testOptOut, func(b []byte) []byte { return b }, false},
		{"untouched, no opt-out link", "", func(b []byte) []byte { return b }, false},
		{"List-Unsubscribe link changed", testOptOut, inHeader(func(h string) string {
			return strings.Replace(h, "<"+testOptOut+">", "<https://evil.example/u/x>", 1)
		}), true},
		{"List-Unsubscribe mailto removed", testOptOut, inHeader(func(h string) string {
			return strings.Replace(h, ", <mailto:unsubscribe@bank.example?subject=unsubscribe>", "", 1)
		}), true},
		{"List-Unsubscribe-Post removed", testOptOut, inHeader(func(h string) string {
			return strings.Replace(h, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", "", 1)
		}), true},
		// Verifiers take the last field of a name first, so one added at
		// the top only breaks a signature that lists the name twice.
		{"second List-Unsubscribe added on top", testOptOut, inHeader(func(h string) string {
			return "List-Unsubscribe: <https://evil.example/u/x>\r\n" + h
		}), true},
		{"second List-Unsubscribe added below", testOptOut, inHeader(func(h string) string {
			return h + "\r\nList-Unsubscribe: <https://evil.example/u/x>"
		}), true},
		{"List-Unsubscribe added to a message without one", "", inHeader(func(h string) string {
			return h + "\r\nList-Unsubscribe: <https://evil.example/u/x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"
		}), true},
		{"second From added on top", testOptOut, inHeader(func(h string) string {
			return "From: evil@evil.example\r\n" + h
		}), true},
		{"body changed", testOptOut, func(b []byte) []byte {
			return append(bytes.TrimSuffix(b, []byte("\r\n")), []byte("extra\r\n")...)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := send(t, tt.optOut)
			changed := tt.tamper(bytes.Clone(raw))
			if tt.wantErr && bytes.Equal(changed, raw) {
				t.Fatal("the tamper changed nothing")
			}
			vs, err := verify(changed, "s2026._domainkey.bank.example", record)
			if err != nil || len(vs) != 1 {
				t.Fatalf("Verify: %d verifications, %v", len(vs), err)
			}
			if gotErr := vs[0].Err != nil; gotErr != tt.wantErr {
				t.Errorf("verification error %v, want error: %v", vs[0].Err, tt.wantErr)
			}
		})
	}
}

func TestDKIMKeyFile(t *testing.T) {
	dir := t.TempDir()
	rsaK := testRSAKey(t)
	edK := testEd25519Key(t)
	pkcs8 := func(k crypto.Signer) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
	}
	small, err := rsa.GenerateKey(rand.Reader, 768) //nolint:gosec // a key too small on purpose
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pem     []byte
		key     crypto.Signer // nil: New must fail
		wantErr string
	}{
		{"rsa pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaK)}), rsaK, ""},
		{"rsa pkcs8", pkcs8(rsaK), rsaK, ""},
		{"ed25519 pkcs8", pkcs8(edK), edK, ""},
		{"not pem", []byte("not a key"), nil, "PEM"},
		{"rsa too small", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}), nil, "768 bits"},
		{"missing file", nil, nil, "no such file"},
	}
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			path := filepath.Join(dir, fmt.Sprintf("key%d.pem", i))
			if tt.pem != nil {
				if err := os.WriteFile(path, tt.pem, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{Addr: srv.Addr(), Username: "dispatcher", Password: "secret", From: testFrom,
				TLSConfig: srv.TLSConfig(), DKIMKeyFile: path, DKIMSelector: "s2026"}
			mailer, err := New(cfg)
			if tt.key == nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: %v, want an error about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if _, err := mailer.Send(context.Background(), testMessage()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			vs, err := verify(srv.Messages()[0].Data, "s2026._domainkey.bank.example", dkimRecord(t, tt.key))
			if err != nil || len(vs) != 1 || vs[0].Err != nil {
				t.Fatalf("Verify: %v %v", vs, err)
			}
		})
	}
}

func TestNoDKIMWithoutKey(t *testing.T) {
	srv := smtptest.NewServer(t)
	mailer := newMailer(t, srv, func(c *Config) { c.Username, c.Password = "", "" })
	if _, err := mailer.Send(context.Background(), channel.Message{IntentID: "x1", To: testTo, Subject: "s", Text: "t"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if raw := srv.Messages()[0].Data; bytes.Contains(raw, []byte("DKIM-Signature")) {
		t.Error("a message without a configured key is signed")
	}
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
