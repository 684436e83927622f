package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/store"
)

// A number's opt-outs live in the number's own slot, keyed by its digest
// (never the number), without a TTL; set, read and removed on Redis and on
// the 3-master Cluster.
func TestNumberOptOuts(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		st := newStore(t, rdb, prefix, time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC))
		const phone = "+8613800138000"
		d, other := st.Digest(phone), st.Digest("+8613800138001")
		if d == "" || d == other || d == st.Digest(phone[1:]) {
			t.Fatalf("digests %q %q: not one per number", d, other)
		}
		if h, err := st.NumberOptOutsOf(ctx, d); err != nil || len(h) != 0 {
			t.Fatalf("before: %v %v, want none", h, err)
		}
		v := `{"number":"` + d + `","channel":"sms","source":"sms_keyword"}`
		if err := st.SetNumberOptOut(ctx, d, "sms", []byte(v)); err != nil {
			t.Fatal(err)
		}
		h, err := st.NumberOptOutsOf(ctx, d)
		if err != nil || len(h) != 1 || h["sms"] != v {
			t.Fatalf("after set: %v %v, want sms = %s", h, err, v)
		}
		if h, _ := st.NumberOptOutsOf(ctx, other); len(h) != 0 {
			t.Errorf("another number has opt-outs: %v", h)
		}
		key := store.Keys{Prefix: prefix}.NumberOptOuts(d)
		if ttl, err := rdb.TTL(ctx, key).Result(); err != nil || ttl != -1 {
			t.Errorf("TTL of %s: %v %v, want none (kept until a START)", key, ttl, err)
		}
		if err := st.RemoveNumberOptOut(ctx, d, "sms"); err != nil {
			t.Fatal(err)
		}
		if h, err := st.NumberOptOutsOf(ctx, d); err != nil || len(h) != 0 {
			t.Errorf("after remove: %v %v, want none", h, err)
		}
		if err := st.RemoveNumberOptOut(ctx, d, "sms"); err != nil {
			t.Errorf("removing it again: %v", err)
		}
	})
}

// An inbound message is applied once: the first mark wins, a replay is
// refused, and an unmarked message (its applying failed) is applied on the
// provider's retry. The mark expires (a TTL), and a message id is needed.
func TestMarkInbound(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		st := newStore(t, rdb, prefix, time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC))
		d, other := st.Digest("+8613800138000"), st.Digest("+8613800138001")
		mark := func(digest, sid string) bool {
			t.Helper()
			first, err := st.MarkInbound(ctx, digest, sid, store.InboundTTL)
			if err != nil {
				t.Fatal(err)
			}
			return first
		}
		if !mark(d, "SM1") {
			t.Error("the first mark of SM1 is not first")
		}
		if mark(d, "SM1") {
			t.Error("a replay of SM1 is first again")
		}
		if !mark(d, "SM2") {
			t.Error("another message, SM2, is not first")
		}
		if !mark(other, "SM1") {
			t.Error("SM1 from another number is not first")
		}
		key := store.Keys{Prefix: prefix}.Inbound(d, "SM1")
		if ttl, err := rdb.TTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > store.InboundTTL {
			t.Errorf("TTL of %s: %v %v, want (0, %v]", key, ttl, err, store.InboundTTL)
		}
		if err := st.UnmarkInbound(ctx, d, "SM1"); err != nil {
			t.Fatal(err)
		}
		if !mark(d, "SM1") {
			t.Error("SM1 after unmark (its applying failed) is not first")
		}
		if mark(d, "SM1") {
			t.Error("SM1 marked again after the retry is first")
		}
		// Marked while applying (short), kept once applied (long).
		if first, err := st.MarkInbound(ctx, d, "SM3", store.InboundApplying); err != nil || !first {
			t.Fatalf("mark SM3: %v %v", first, err)
		}
		k3 := store.Keys{Prefix: prefix}.Inbound(d, "SM3")
		if ttl := rdb.TTL(ctx, k3).Val(); ttl <= 0 || ttl > store.InboundApplying {
			t.Errorf("TTL of SM3 while applying: %v, want (0, %v]", ttl, store.InboundApplying)
		}
		if err := st.KeepInbound(ctx, d, "SM3", store.InboundTTL); err != nil {
			t.Fatal(err)
		}
		if ttl := rdb.TTL(ctx, k3).Val(); ttl <= store.InboundApplying {
			t.Errorf("TTL of SM3 once applied: %v, want the long mark", ttl)
		}
		if _, err := st.MarkInbound(ctx, d, "", store.InboundTTL); err == nil {
			t.Error("an empty message id was marked")
		}
	})
}
