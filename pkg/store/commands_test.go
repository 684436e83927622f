package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A control command's marker: absent until marked, then the first note
// stays, with the records' TTL; the key carries a digest of the id. On
// Redis and on the 3-master Cluster.
func TestCommandMarker(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		st := newStore(t, rdb, prefix, time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC))
		if v, err := st.CommandApplied(ctx, "pay-7781"); err != nil || v != "" {
			t.Fatalf("before marking: %q %v, want none", v, err)
		}
		if err := st.MarkCommand(ctx, "pay-7781", "hold H-1"); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkCommand(ctx, "pay-7781", "hold H-2"); err != nil {
			t.Fatal(err)
		}
		if v, err := st.CommandApplied(ctx, "pay-7781"); err != nil || v != "hold H-1" {
			t.Errorf("after marking twice: %q %v, want the first note", v, err)
		}
		if v, _ := st.CommandApplied(ctx, "pay-7782"); v != "" {
			t.Errorf("another id is marked: %q", v)
		}
		key := st.Keys().Command("pay-7781")
		if ttl := rdb.TTL(ctx, key).Val(); ttl < 80*24*time.Hour {
			t.Errorf("marker TTL %s, want the record TTL", ttl)
		}
		if n := rdb.Exists(ctx, prefix+"command:pay-7781").Val(); n != 0 {
			t.Error("the marker's key carries the raw id")
		}
	})
}
