package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
)

//go:embed lua/resolve.lua
var resolveLua string

var resolveScript = redis.NewScript(resolveLua)

// ErrConflict is returned when a record is not in the state a change needs.
var ErrConflict = errors.New("the intent is not in a state that allows this")

// Resolve settles a sent_unconfirmed intent as e.State and returns the new
// entry's seq.
func (s *Store) Resolve(ctx context.Context, debtorID, id string, e status.Entry) (int64, error) {
	entry, err := encodeEntry(e)
	if err != nil {
		return 0, err
	}
	res, err := resolveScript.Run(ctx, s.rdb, []string{s.keys.Record(debtorID, id)}, ms(e.At), s.ttlSec, string(e.State), entry).Result()
	if err != nil {
		return 0, fmt.Errorf("store: resolve: %w", err)
	}
	v, err := replyList(res, 3)
	if err != nil {
		return 0, fmt.Errorf("store: resolve: %w", err)
	}
	if asString(v[0]) != "ok" {
		return 0, fmt.Errorf("%w (it is %s)", ErrConflict, asString(v[1]))
	}
	return asInt(v[2]), nil
}
