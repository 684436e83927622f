package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultAddressKey keys the address digests of a Store configured without
// an AddressKey (tests). A service always sets one from its secrets.
var defaultAddressKey = []byte("dispatcher address digest (no key configured)")

// AddressDigest is the keyed digest of a contact address (an E.164 number,
// an e-mail address, an openid): HMAC-SHA256 under the store's address key,
// first 12 bytes in hex. Keys, the events on reminders.status and the
// rebuild carry it, never the address: without the key a digest cannot be
// matched against a list of numbers.
func (k Keys) AddressDigest(addr string) string {
	key := k.AddressKey
	if len(key) == 0 {
		key = defaultAddressKey
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(addr))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// Contact is one contact the gate counted, to count again after Redis lost
// its data: its member (the intent id, a CallSid, a conversation's time) in
// each of its streams, at its time.
type Contact struct {
	DebtorID string
	Member   string
	At       time.Time
	Streams  []Stream
}

// ApplyContacts puts contacts back into their streams (ZADD NX: a member
// the gate already counted keeps its time; applying twice changes
// nothing), skipping those older than retention before now. It returns how
// many were applied. One pipeline.
func (s *Store) ApplyContacts(ctx context.Context, cs []Contact, now time.Time, retention time.Duration) (int, error) {
	if retention <= 0 {
		return 0, nil
	}
	pipe := s.rdb.Pipeline()
	n := 0
	for _, c := range cs {
		if c.DebtorID == "" || c.Member == "" || now.Sub(c.At) > retention {
			continue
		}
		n++
		for _, st := range c.Streams {
			key := s.keys.Stream(c.DebtorID, st)
			pipe.ZAddNX(ctx, key, redis.Z{Score: float64(c.At.UnixMilli()), Member: c.Member})
			pipe.ZRemRangeByScore(ctx, key, "-inf", fmt.Sprint(now.Add(-retention).UnixMilli()))
			pipe.PExpire(ctx, key, retention)
		}
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("store: apply contacts: %w", err)
	}
	return n, nil
}

// NumberDebtor says a debtor was contacted at a phone number (its digest).
type NumberDebtor struct {
	Digest, DebtorID string
}

// ApplyNumbers puts debtors back into the number index (Keys.Number): the
// debtors messaged at a number, whom an SMS keyword from it reaches.
func (s *Store) ApplyNumbers(ctx context.Context, ns []NumberDebtor) error {
	if len(ns) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, n := range ns {
		if n.Digest == "" || n.DebtorID == "" {
			continue
		}
		k := s.keys.numberKey(n.Digest)
		pipe.SAdd(ctx, k, n.DebtorID)
		pipe.Expire(ctx, k, numberTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: apply numbers: %w", err)
	}
	return nil
}

// ContactStream is the stream a connected call (event "connected", the
// debtor's scope) or a conversation ("conversation", the debt's scope) is
// counted in: the webhook, the API and the rebuild all use it.
func ContactStream(event, channel, debtID string) Stream {
	if event == "conversation" {
		return Stream{Event: event, Channel: channel, Scope: "debt", ScopeID: debtID}
	}
	return Stream{Event: event, Channel: channel, Scope: "debtor"}
}
