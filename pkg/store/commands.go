package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Command is the marker of a control command (reminders.control) that was
// applied, by its producer-given command id (as a digest): a redelivery of
// the command finds it and changes nothing again.
func (k Keys) Command(commandID string) string {
	sum := sha256.Sum256([]byte("command|" + commandID))
	return k.Prefix + "command:" + hex.EncodeToString(sum[:16])
}

// CommandApplied returns what MarkCommand recorded for commandID, or "" if
// it was never marked (or the marker expired with the records, after the
// record TTL).
func (s *Store) CommandApplied(ctx context.Context, commandID string) (string, error) {
	v, err := s.rdb.Get(ctx, s.keys.Command(commandID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: command marker: %w", err)
	}
	return v, nil
}

// MarkCommand records that commandID was applied, with a short note of what
// it did, for as long as intent records live. The first note stays: a
// command marked twice (a redelivery racing the first) keeps its first
// outcome.
func (s *Store) MarkCommand(ctx context.Context, commandID, note string) error {
	if err := s.rdb.SetNX(ctx, s.keys.Command(commandID), note, s.ttl).Err(); err != nil {
		return fmt.Errorf("store: command marker: %w", err)
	}
	return nil
}
