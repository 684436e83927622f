package store

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
)

//go:embed lua/optout.lua
var optoutLua string

var optoutScript = redis.NewScript(optoutLua)

//go:embed lua/callback.lua
var callbackLua string

var callbackScript = redis.NewScript(callbackLua)

// SetOptOut records an opt-out the gate will read: field is a channel,
// "all", or "dnc:<state>" for a legal do-not-contact state; value is the
// opt-out as JSON.
func (s *Store) SetOptOut(ctx context.Context, debtorID, field string, value []byte) error {
	return optoutScript.Run(ctx, s.rdb, []string{s.keys.OptOuts(debtorID)}, field, "set", value).Err()
}

// RemoveOptOut removes one opt-out field.
func (s *Store) RemoveOptOut(ctx context.Context, debtorID, field string) error {
	return optoutScript.Run(ctx, s.rdb, []string{s.keys.OptOuts(debtorID)}, field, "remove", "").Err()
}

// OptOutsOf returns a debtor's opt-out fields and their values (the
// aggregate "dnc" field left out).
func (s *Store) OptOutsOf(ctx context.Context, debtorID string) (map[string]string, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.OptOuts(debtorID)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: opt-outs: %w", err)
	}
	delete(h, "dnc")
	return h, nil
}

// CallbackResult says what a delivery callback did.
type CallbackResult struct {
	Outcome string // ok, ignored, unknown
	State   status.State
	Seq     int64
}

// Callback moves an intent forward on a provider's delivery callback (see
// lua/callback.lua).
func (s *Store) Callback(ctx context.Context, debtorID, id, providerID string, e status.Entry) (CallbackResult, error) {
	entry, err := encodeEntry(e)
	if err != nil {
		return CallbackResult{}, err
	}
	res, err := callbackScript.Run(ctx, s.rdb, []string{s.keys.Record(debtorID, id)},
		string(e.State), ms(e.At), s.ttlSec, entry, providerID).Result()
	if err != nil {
		return CallbackResult{}, fmt.Errorf("store: callback: %w", err)
	}
	v, err := replyList(res, 3)
	if err != nil {
		return CallbackResult{}, fmt.Errorf("store: callback: %w", err)
	}
	return CallbackResult{Outcome: asString(v[0]), State: status.State(asString(v[1])), Seq: asInt(v[2])}, nil
}
