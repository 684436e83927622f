package store

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"sync"

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
// aggregate "dnc" field, and holds, left out).
func (s *Store) OptOutsOf(ctx context.Context, debtorID string) (map[string]string, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.OptOuts(debtorID)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: opt-outs: %w", err)
	}
	delete(h, "dnc")
	delete(h, "holds")
	for f := range h {
		if strings.HasPrefix(f, holdField) {
			delete(h, f)
		}
	}
	return h, nil
}

// holdField starts a hold's field in the opt-out hash ("hold:<id>").
const holdField = "hold:"

// HoldsOf returns a debtor's holds: hold id → the record as JSON.
func (s *Store) HoldsOf(ctx context.Context, debtorID string) (map[string]string, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.OptOuts(debtorID)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: holds: %w", err)
	}
	out := map[string]string{}
	for f, v := range h {
		if id, ok := strings.CutPrefix(f, holdField); ok {
			out[id] = v
		}
	}
	return out, nil
}

// Pending is an intent of a debtor not yet sent nor ended.
type Pending struct {
	ID, DebtID string
	State      status.State
}

// PendingOf lists a debtor's intents that are accepted or deferred (the
// debt is known once an intent passed the gate). Its records share the
// debtor's hash slot, so on a cluster one node answers.
func (s *Store) PendingOf(ctx context.Context, debtorID string) ([]Pending, error) {
	match := s.keys.Record(debtorID, "*")
	var out []Pending
	var mu sync.Mutex
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, match, 500).Iterator()
		for iter.Next(ctx) {
			v, err := c.HMGet(ctx, iter.Val(), "id", "state", "debt").Result()
			if err != nil {
				return err
			}
			st, _ := v[1].(string)
			if st != string(status.Accepted) && st != string(status.Deferred) {
				continue
			}
			id, _ := v[0].(string)
			debt, _ := v[2].(string)
			mu.Lock()
			out = append(out, Pending{ID: id, DebtID: debt, State: status.State(st)})
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("store: pending: unsupported client %T", s.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	return out, nil
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
