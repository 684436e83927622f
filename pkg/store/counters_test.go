package store_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// A stream's window is measured on the clock the caller hands in, never on
// the wall clock: events recorded at a pinned date stay readable however
// long after that date the test runs, and age out by the caller's clock.
func TestRecordEventUsesTheGivenClock(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	st, err := store.New(rdb, store.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conv := store.Stream{Event: "conversation", Channel: "any", Scope: "debtor"}
	retention := 7 * 24 * time.Hour
	// 400 days before the real date: as a pinned test date looks once a
	// year has passed.
	pinned := time.Now().Add(-400 * 24 * time.Hour).Truncate(time.Millisecond)

	if err := st.RecordEvent(ctx, "D-1", conv, "c-1", pinned, retention); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordEvent(ctx, "D-1", conv, "c-2", pinned.Add(time.Hour), retention); err != nil {
		t.Fatal(err)
	}
	got, err := st.Recent(ctx, "D-1", conv, pinned.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].IntentID != "c-2" || got[1].IntentID != "c-1" || !got[1].At.Equal(pinned) {
		t.Fatalf("recent %+v, want c-2 then c-1 at %v", got, pinned)
	}

	// Eight days later by the caller's clock, the first two have aged out.
	later := pinned.Add(8 * 24 * time.Hour)
	if err := st.RecordEvent(ctx, "D-1", conv, "c-3", later, retention); err != nil {
		t.Fatal(err)
	}
	got, err = st.Recent(ctx, "D-1", conv, pinned.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].IntentID != "c-3" {
		t.Fatalf("recent after the window %+v, want only c-3", got)
	}
	if ttl := rdb.PTTL(ctx, store.Keys{Prefix: prefix}.Stream("D-1", conv)).Val(); ttl <= 0 || ttl > retention {
		t.Fatalf("stream TTL %v, want (0, %v]", ttl, retention)
	}
}

// The Lua scripts run on the Redis server's clock: none may read it or set
// an absolute expiry (the Go side is held to the same by testenv's hook), so
// a script decides on the time it is handed and its TTLs are relative.
func TestScriptsUseTheGivenClock(t *testing.T) {
	files, err := filepath.Glob("lua/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Lua scripts found (%v)", err)
	}
	call := regexp.MustCompile(`(?i)redis\.(p?call)\(\s*['"]([a-z]+)['"]`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(b), -1) {
			if what := testenv.AbsoluteClock([]any{m[2]}); what != "" {
				t.Errorf("%s: redis.%s('%s') %s", f, m[1], m[2], what)
			}
		}
	}
}
