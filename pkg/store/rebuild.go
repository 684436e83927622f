package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
)

//go:embed lua/apply.lua
var applyLua string

var applyScript = redis.NewScript(applyLua)

// Marker is the key whose presence says this Redis holds the dispatcher's
// state. When it is missing (a new or wiped Redis), the state is rebuilt
// from Kafka before any intent is decided.
func (k Keys) Marker() string { return k.Prefix + "state" }

// NeedsRebuild reports whether Redis lost (or never had) the state.
func (s *Store) NeedsRebuild(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.keys.Marker()).Result()
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return n == 0, nil
}

// MarkRebuilt records that the state is complete.
func (s *Store) MarkRebuilt(ctx context.Context, at time.Time) error {
	return s.rdb.Set(ctx, s.keys.Marker(), at.UTC().Format(time.RFC3339), 0).Err()
}

// ApplyEvents folds published status transitions into their records (see
// lua/apply.lua), skipping duplicate events and transitions older than the
// record TTL. It returns how many entries were new. One pipeline per call.
func (s *Store) ApplyEvents(ctx context.Context, evs []status.Event, now time.Time) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	if err := applyScript.Load(ctx, s.rdb).Err(); err != nil {
		return 0, fmt.Errorf("store: load apply script: %w", err)
	}
	pipe := s.rdb.Pipeline()
	var cmds []*redis.Cmd
	for _, ev := range evs {
		if ev.Kind != status.KindTransition || ev.Seq <= 0 || ev.ID == "" || ev.DebtorID == "" || now.Sub(ev.At) > s.ttl {
			continue
		}
		entry, err := encodeEntry(ev.Entry())
		if err != nil {
			return 0, err
		}
		cmds = append(cmds, applyScript.EvalSha(ctx, pipe, []string{s.keys.Record(ev.DebtorID, ev.ID)},
			ev.ID, ev.DebtorID, ev.Seq, ms(ev.At), string(ev.State), ev.Reason, ev.Channel, entry, s.ttlSec))
		// The first debtor an id was decided for keeps it (events of an
		// id are in order on their partition).
		pipe.SetArgs(ctx, s.keys.Index(ev.ID), ev.DebtorID, redis.SetArgs{Mode: "NX", TTL: s.ttl})
	}
	if len(cmds) == 0 {
		return 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("store: apply events: %w", err)
	}
	n := 0
	for _, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			n++
		}
	}
	return n, nil
}
