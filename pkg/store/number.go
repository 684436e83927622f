package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Per-number state lives in the number's own hash slot, "{n:<digest>}",
// whoever the number belongs to: the contact streams of rules scoped to
// the number, the reservations the gate holds on them while it decides, an
// SMS keyword opt-out of the number, and the inbound messages already
// applied. The digest is the number's AddressDigest: keys never carry the
// number.

// NumberSlot is the key prefix, hash tag included, of a number's state.
func (k Keys) NumberSlot(digest string) string { return k.Prefix + "{n:" + digest + "}" }

// NumberOptOuts is the hash of a number's own opt-outs (field: the channel,
// "sms"; value: the opt-out as JSON), set by a keyword reply from it and
// read by the gate for every debtor messaged at it.
func (k Keys) NumberOptOuts(digest string) string { return k.NumberSlot(digest) + ":optouts" }

// NumberPending is the hash of the gate's reservations on a number's
// streams not yet settled: field the intent id, value "<owner>|<hold end,
// unix ms>".
func (k Keys) NumberPending(digest string) string { return k.NumberSlot(digest) + ":pending" }

// Inbound marks one inbound message (Twilio's MessageSid) from a number as
// applied.
func (k Keys) Inbound(digest, messageID string) string {
	return k.NumberSlot(digest) + ":in:" + messageID
}

// Digest is the keyed digest of a contact address (Keys.AddressDigest under
// this store's key).
func (s *Store) Digest(addr string) string { return s.keys.AddressDigest(addr) }

// SetNumberOptOut records a number's opt-out of channel ("sms"): value is
// the opt-out as JSON. It has no TTL: it holds until a START from the
// number removes it.
func (s *Store) SetNumberOptOut(ctx context.Context, digest, channel string, value []byte) error {
	if err := s.rdb.HSet(ctx, s.keys.NumberOptOuts(digest), channel, value).Err(); err != nil {
		return fmt.Errorf("store: number opt-out: %w", err)
	}
	return nil
}

// RemoveNumberOptOut removes a number's opt-out of channel.
func (s *Store) RemoveNumberOptOut(ctx context.Context, digest, channel string) error {
	if err := s.rdb.HDel(ctx, s.keys.NumberOptOuts(digest), channel).Err(); err != nil {
		return fmt.Errorf("store: number opt-out: %w", err)
	}
	return nil
}

// NumberOptOutsOf returns a number's opt-outs: channel → the opt-out as
// JSON.
func (s *Store) NumberOptOutsOf(ctx context.Context, digest string) (map[string]string, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.NumberOptOuts(digest)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: number opt-outs: %w", err)
	}
	return h, nil
}

// InboundTTL is how long an inbound message stays marked as applied: far
// longer than a provider retries a webhook.
const InboundTTL = 30 * 24 * time.Hour

// InboundApplying is how long a message is marked while it is being
// applied: if the process dies before KeepInbound, the mark lapses and the
// provider's retry of the message is applied.
const InboundApplying = time.Minute

// MarkInbound marks an inbound message from a number as applied, for ttl;
// first is false when it was marked already (a replay: apply nothing).
func (s *Store) MarkInbound(ctx context.Context, digest, messageID string, ttl time.Duration) (first bool, err error) {
	if messageID == "" {
		return false, errors.New("store: inbound: a message id is required")
	}
	if ttl <= 0 {
		ttl = InboundTTL
	}
	first, err = s.rdb.SetNX(ctx, s.keys.Inbound(digest, messageID), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("store: inbound: %w", err)
	}
	return first, nil
}

// KeepInbound keeps an applied message's mark for ttl (InboundTTL when 0).
func (s *Store) KeepInbound(ctx context.Context, digest, messageID string, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = InboundTTL
	}
	if err := s.rdb.Expire(ctx, s.keys.Inbound(digest, messageID), ttl).Err(); err != nil {
		return fmt.Errorf("store: inbound: %w", err)
	}
	return nil
}

// UnmarkInbound forgets an inbound message's mark, when applying it
// failed: the provider's retry of it is then applied.
func (s *Store) UnmarkInbound(ctx context.Context, digest, messageID string) error {
	if err := s.rdb.Del(ctx, s.keys.Inbound(digest, messageID)).Err(); err != nil {
		return fmt.Errorf("store: inbound: %w", err)
	}
	return nil
}
