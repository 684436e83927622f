package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Profiles is the hash of every policy profile version a process has
// decided with (field: version; value: JSON {"name", "sources"}), so that a
// decision read back names the legal text of the version that made it, not
// of the profile loaded now. It has no TTL: a version is a few kilobytes and
// versions change when compliance edits a profile. The status events on
// reminders.status carry the same texts durably.
func (k Keys) Profiles() string { return k.Prefix + "profiles" }

// ProfileText is what Profiles keeps of one version.
type ProfileText struct {
	Name    string            `json:"name"`
	Sources map[string]string `json:"sources"` // rule id → legal source
}

// PutProfile records the sources of a profile version (idempotent).
func (s *Store) PutProfile(ctx context.Context, version string, p ProfileText) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("store: put profile: %w", err)
	}
	if err := s.rdb.HSet(ctx, s.keys.Profiles(), version, b).Err(); err != nil {
		return fmt.Errorf("store: put profile: %w", err)
	}
	return nil
}

// Profile returns the sources of a profile version; ErrNotFound if no
// process recorded it (or Redis lost it: the status topic still has them).
func (s *Store) Profile(ctx context.Context, version string) (ProfileText, error) {
	v, err := s.rdb.HGet(ctx, s.keys.Profiles(), version).Result()
	if errors.Is(err, redis.Nil) {
		return ProfileText{}, ErrNotFound
	}
	if err != nil {
		return ProfileText{}, fmt.Errorf("store: profile: %w", err)
	}
	var p ProfileText
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return ProfileText{}, fmt.Errorf("store: profile %s: %w", version, err)
	}
	return p, nil
}
