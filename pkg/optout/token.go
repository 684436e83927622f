package optout

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

// An opt-out token names one debtor and one channel (or all of them) and is
// signed by the bank, so the link https://<public base>/u/{token} in an SMS or
// an e-mail opts out exactly that debtor, and only until the token expires.
//
// Wire format, version 1. The bytes below, base64url-encoded without padding:
//
//	offset  size  field
//	0       1     version, 1
//	1       1     key id length k, 1–8
//	2       k     key id, [A-Za-z0-9]
//	2+k     5     expiry, unix seconds, big-endian unsigned 40 bits
//	7+k     1     channel: 0 all, 1 sms, 2 voice, 3 email, 4 wechat
//	8+k     1     debtor id length d, 1–128
//	9+k     d     debtor id, [A-Za-z0-9._:-]
//	9+k+d   16    HMAC-SHA256(secret of key id, every byte before it), first 16 bytes
//
// With key id "k1" and debtor "D-000123" that is 35 bytes, 47 characters.
// Every token has exactly one encoding: Verify rejects padding, line breaks,
// non-zero trailing bits, lengths that disagree with the fields, and bytes
// after the tag. The key id travels in clear so that keys can be rotated:
// the first key of a Keys signs, every key verifies.

// DefaultTokenTTL is how long a link usually stays valid: long enough for a
// debtor to act on an old message. The caller picks the expiry.
const DefaultTokenTTL = 180 * 24 * time.Hour

// Errors returned by Verify; test for them with errors.Is.
var (
	ErrMalformed    = errors.New("optout: malformed token")
	ErrBadSignature = errors.New("optout: bad token signature")
	ErrExpired      = errors.New("optout: token expired")
	ErrUnknownKey   = errors.New("optout: token signed by an unknown key")
)

// Claims is what a token says.
type Claims struct {
	DebtorID string
	Channel  string // sms, voice, email, wechat or ChannelAll
	Expires  time.Time
}

const (
	tokenVersion = 1
	maxKeyID     = 8
	maxDebtorID  = 128
	minSecret    = 16
	tagSize      = 16
	expirySize   = 5
	maxExpiry    = 1<<(8*expirySize) - 1
	// headerSize is the fixed part: version, key id length, expiry,
	// channel, debtor id length.
	headerSize   = 1 + 1 + expirySize + 1 + 1
	minTokenSize = headerSize + 1 + 1 + tagSize
	maxTokenSize = headerSize + maxKeyID + maxDebtorID + tagSize
	maxTokenLen  = (maxTokenSize*8 + 5) / 6 // encoded
)

// channelCodes is the channel byte of the wire format; the index is the code.
// Codes are never reused: a new channel gets the next number.
var channelCodes = [...]string{ChannelAll, string(intent.SMS), string(intent.Voice), string(intent.Email), string(intent.WeChat)}

func channelCode(ch string) (byte, bool) {
	for i, c := range channelCodes {
		if c == ch {
			return byte(i), true
		}
	}
	return 0, false
}

// Keys sign and verify opt-out tokens. The first key signs; every key
// verifies, so a new key can be put first while links signed with the old
// one keep working until the old key is dropped. A Keys is immutable and
// safe for concurrent use.
type Keys struct {
	keys []hmacKey
}

// hmacKey holds a secret as HMAC's padded inner and outer keys (RFC 2104),
// so a tag is two SHA-256 sums over stack buffers: nothing is allocated.
type hmacKey struct {
	id         string
	ipad, opad [sha256.BlockSize]byte
}

func newHMACKey(id string, secret []byte) hmacKey {
	k := hmacKey{id: id}
	if len(secret) > sha256.BlockSize {
		sum := sha256.Sum256(secret)
		secret = sum[:]
	}
	copy(k.ipad[:], secret)
	copy(k.opad[:], secret)
	for i := range k.ipad {
		k.ipad[i] ^= 0x36
		k.opad[i] ^= 0x5c
	}
	return k
}

// mac returns HMAC-SHA256(secret, msg). msg is at most maxTokenSize bytes.
func (k *hmacKey) mac(msg []byte) [sha256.Size]byte {
	var in [sha256.BlockSize + maxTokenSize]byte
	copy(in[:], k.ipad[:])
	n := copy(in[sha256.BlockSize:], msg)
	inner := sha256.Sum256(in[:sha256.BlockSize+n])
	var out [sha256.BlockSize + sha256.Size]byte
	copy(out[:], k.opad[:])
	copy(out[sha256.BlockSize:], inner[:])
	return sha256.Sum256(out[:])
}

// NewKeys returns Keys holding one key, which signs and verifies.
func NewKeys(kid string, secret []byte) (*Keys, error) {
	if err := checkKey(kid, secret); err != nil {
		return nil, fmt.Errorf("optout: %w", err)
	}
	return &Keys{keys: []hmacKey{newHMACKey(kid, secret)}}, nil
}

// ParseKeys reads keys written as "kid:secret,kid2:secret2" (the form of
// DISPATCHER_OPTOUT_KEYS). A key id is 1–8 letters or digits; a secret is
// the bytes after the first colon, at least 16 of them, and cannot hold a
// comma. Spaces around an entry are ignored. The first key signs.
// Errors name the entry by position, never its secret.
func ParseKeys(s string) (*Keys, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("optout: keys: none given, want kid:secret[,kid:secret…]")
	}
	var ks Keys
	for i, entry := range strings.Split(s, ",") {
		kid, secret, ok := strings.Cut(strings.TrimSpace(entry), ":")
		if !ok {
			return nil, fmt.Errorf("optout: keys: entry %d: want kid:secret", i+1)
		}
		if err := checkKey(kid, []byte(secret)); err != nil {
			return nil, fmt.Errorf("optout: keys: entry %d: %w", i+1, err)
		}
		for _, k := range ks.keys {
			if k.id == kid {
				return nil, fmt.Errorf("optout: keys: entry %d: key id %q given twice", i+1, kid)
			}
		}
		ks.keys = append(ks.keys, newHMACKey(kid, []byte(secret)))
	}
	return &ks, nil
}

func checkKey(kid string, secret []byte) error {
	if len(kid) < 1 || len(kid) > maxKeyID || !validKeyID(kid) {
		return errors.New("key id must be 1–8 letters or digits")
	}
	if len(secret) < minSecret {
		return fmt.Errorf("key %q: secret shorter than %d bytes", kid, minSecret)
	}
	return nil
}

// GenerateDevKeys returns one random key with id "dev", for dev mode: its
// links stop working when the process ends.
func GenerateDevKeys() *Keys {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // never fails: the runtime aborts instead
	ks, _ := NewKeys("dev", secret)
	return ks
}

// String names the keys, the signing one first, and never shows a secret.
func (k *Keys) String() string {
	if k == nil || len(k.keys) == 0 {
		return "optout.Keys[]"
	}
	ids := make([]string, len(k.keys))
	for i := range k.keys {
		ids[i] = k.keys[i].id
	}
	return "optout.Keys[" + strings.Join(ids, " ") + "]"
}

// GoString is String, so %#v does not print secrets either.
func (k *Keys) GoString() string { return k.String() }

// Sign returns the token for c, signed with the first key. Expires is kept
// to the second, rounded down.
func (k *Keys) Sign(c Claims) (string, error) {
	if k == nil || len(k.keys) == 0 {
		return "", errors.New("optout: sign: no key")
	}
	ch, ok := channelCode(c.Channel)
	if !ok {
		return "", errors.New("optout: sign: unknown channel")
	}
	if len(c.DebtorID) < 1 || len(c.DebtorID) > maxDebtorID || !validDebtorID(c.DebtorID) {
		// The id itself stays out of the error: it identifies a person.
		return "", errors.New("optout: sign: debtor id must be 1–128 bytes of [A-Za-z0-9._:-]")
	}
	if c.Expires.IsZero() {
		return "", errors.New("optout: sign: no expiry")
	}
	exp := c.Expires.Unix()
	if exp < 1 || exp > maxExpiry {
		return "", errors.New("optout: sign: expiry out of range")
	}
	key := &k.keys[0]

	var b [maxTokenSize]byte
	n := 0
	b[n] = tokenVersion
	b[n+1] = byte(len(key.id))
	n += 2
	n += copy(b[n:], key.id)
	for i := expirySize - 1; i >= 0; i-- {
		b[n+i] = byte(exp)
		exp >>= 8
	}
	n += expirySize
	b[n] = ch
	b[n+1] = byte(len(c.DebtorID))
	n += 2
	n += copy(b[n:], c.DebtorID)
	tag := key.mac(b[:n])
	n += copy(b[n:], tag[:tagSize])

	var out [maxTokenLen]byte
	return string(out[:encode(out[:], b[:n])]), nil
}

// Verify checks token against the keys and now, and returns its claims.
// Errors wrap ErrMalformed, ErrUnknownKey, ErrBadSignature or ErrExpired,
// checked in that order; on error the claims are zero. A token expires at
// its expiry second: it is valid while now is before it.
func (k *Keys) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenLen {
		return Claims{}, errTooLong
	}
	var buf [maxTokenSize]byte
	n, ok := decode(buf[:], token)
	if !ok {
		return Claims{}, errEncoding
	}
	b := buf[:n]
	if n < minTokenSize {
		return Claims{}, errTooShort
	}
	if b[0] != tokenVersion {
		return Claims{}, errVersion
	}
	kidLen := int(b[1])
	if kidLen < 1 || kidLen > maxKeyID || n < minTokenSize-1+kidLen {
		return Claims{}, errKeyID
	}
	p := 2
	kid := b[p : p+kidLen]
	if !validKeyID(kid) {
		return Claims{}, errKeyID
	}
	p += kidLen
	var exp int64
	for _, x := range b[p : p+expirySize] {
		exp = exp<<8 | int64(x)
	}
	p += expirySize
	if exp < 1 {
		return Claims{}, errExpiry
	}
	code := b[p]
	if int(code) >= len(channelCodes) {
		return Claims{}, errChannel
	}
	p++
	idLen := int(b[p])
	p++
	if idLen < 1 || idLen > maxDebtorID {
		return Claims{}, errDebtorID
	}
	if n != p+idLen+tagSize {
		return Claims{}, errLength
	}
	id := b[p : p+idLen]
	if !validDebtorID(id) {
		return Claims{}, errDebtorID
	}
	p += idLen

	key := k.find(kid)
	if key == nil {
		return Claims{}, ErrUnknownKey
	}
	tag := key.mac(b[:p])
	if subtle.ConstantTimeCompare(tag[:tagSize], b[p:]) != 1 {
		return Claims{}, ErrBadSignature
	}
	expires := time.Unix(exp, 0)
	if !now.Before(expires) {
		return Claims{}, ErrExpired
	}
	return Claims{DebtorID: string(id), Channel: channelCodes[code], Expires: expires}, nil
}

func (k *Keys) find(kid []byte) *hmacKey {
	if k == nil {
		return nil
	}
	for i := range k.keys {
		if k.keys[i].id == string(kid) {
			return &k.keys[i]
		}
	}
	return nil
}

// Details of ErrMalformed, made once so a bad link costs no allocation.
var (
	errTooLong  = fmt.Errorf("%w: too long", ErrMalformed)
	errTooShort = fmt.Errorf("%w: too short", ErrMalformed)
	errEncoding = fmt.Errorf("%w: not canonical unpadded base64url", ErrMalformed)
	errVersion  = fmt.Errorf("%w: unknown version", ErrMalformed)
	errKeyID    = fmt.Errorf("%w: bad key id", ErrMalformed)
	errExpiry   = fmt.Errorf("%w: bad expiry", ErrMalformed)
	errChannel  = fmt.Errorf("%w: unknown channel", ErrMalformed)
	errDebtorID = fmt.Errorf("%w: bad debtor id", ErrMalformed)
	errLength   = fmt.Errorf("%w: length does not match its fields", ErrMalformed)
)

func validKeyID[T string | []byte](s T) bool {
	for i := range len(s) {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

func validDebtorID[T string | []byte](s T) bool {
	for i := range len(s) {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// The token's own base64url (RFC 4648 §5, no padding). encoding/base64
// would do, but its decoder skips line breaks and wants a []byte, which costs
// an allocation per click; this one takes the string and accepts exactly one
// spelling of each byte string.

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

var b64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := range len(b64) {
		t[b64[i]] = byte(i)
	}
	return t
}()

// encode writes src to dst and returns the length written; dst must hold
// (len(src)*8+5)/6 bytes.
func encode(dst, src []byte) int {
	n := 0
	for len(src) >= 3 {
		v := uint(src[0])<<16 | uint(src[1])<<8 | uint(src[2])
		dst[n], dst[n+1], dst[n+2], dst[n+3] = b64[v>>18&63], b64[v>>12&63], b64[v>>6&63], b64[v&63]
		n += 4
		src = src[3:]
	}
	switch len(src) {
	case 2:
		v := uint(src[0])<<16 | uint(src[1])<<8
		dst[n], dst[n+1], dst[n+2] = b64[v>>18&63], b64[v>>12&63], b64[v>>6&63]
		n += 3
	case 1:
		v := uint(src[0]) << 16
		dst[n], dst[n+1] = b64[v>>18&63], b64[v>>12&63]
		n += 2
	}
	return n
}

// decode writes the bytes of src to dst and returns how many. It fails on
// any character outside the alphabet, on a length no encoding produces, on
// non-zero bits after the last byte, and when dst is too small.
func decode(dst []byte, src string) (int, bool) {
	if len(src)%4 == 1 || len(src)*6/8 > len(dst) {
		return 0, false
	}
	n := 0
	var v uint
	var bits uint
	for i := range len(src) {
		c := b64Value[src[i]]
		if c == 0xff {
			return 0, false
		}
		v = v<<6 | uint(c)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst[n] = byte(v >> bits)
			n++
			v &= 1<<bits - 1
		}
	}
	if v != 0 { // the bits left over must be zero
		return 0, false
	}
	return n, true
}
