package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/bind.lua
var bindLua string

var bindScript = redis.NewScript(bindLua)

// Conflict is the outcome of a gate or claim for an intent id already
// bound to another debtor: nothing was decided or written.
const Conflict Outcome = "conflict"

// ErrIDConflict says an intent id is bound to another debtor.
var ErrIDConflict = errors.New("store: the intent id belongs to another debtor")

// Bind binds intent id to debtorID the first time it is seen (durably: the
// status events the decisions publish rebuild the binding after a Redis
// loss) and returns ErrIDConflict if it is bound to another debtor. Every
// path that records a decision under a debtor binds first, so an id is
// decided, sent and shown for one debtor only.
func (s *Store) Bind(ctx context.Context, id, debtorID string) error {
	owner, err := bindScript.Run(ctx, s.rdb, []string{s.keys.Index(id)}, debtorID, s.ttl.Milliseconds()).Text()
	if err != nil {
		return fmt.Errorf("store: bind: %w", err)
	}
	if owner != debtorID {
		return ErrIDConflict
	}
	return nil
}

// bindBatch binds several ids in one pipeline (on a cluster, one round trip
// per node) and reports, per pair, whether the id is the debtor's.
func (s *Store) bindBatch(ctx context.Context, ids, debtors []string) ([]bool, error) {
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(ids))
		for i := range ids {
			cmds[i] = bindScript.EvalSha(ctx, pipe, []string{s.keys.Index(ids[i])}, debtors[i], s.ttl.Milliseconds())
		}
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 && len(cmds) > 0 && isNoScript(cmds[0].Err()) {
			if err := bindScript.Load(ctx, s.rdb).Err(); err != nil {
				return nil, fmt.Errorf("store: bind: %w", err)
			}
			continue
		}
		out := make([]bool, len(ids))
		for i, c := range cmds {
			owner, err := c.Text()
			if err != nil {
				return nil, fmt.Errorf("store: bind: %w", err)
			}
			out[i] = owner == debtors[i]
		}
		return out, nil
	}
}

// boundElsewhere reports, without writing, whether id is bound to a debtor
// other than debtorID.
func (s *Store) boundElsewhere(ctx context.Context, id, debtorID string) (bool, error) {
	owner, err := s.rdb.Get(ctx, s.keys.Index(id)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: bind: %w", err)
	}
	return owner != debtorID, nil
}
