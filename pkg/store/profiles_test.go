package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

func TestProfileTexts(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	st, err := store.New(rdb, store.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.Profile(ctx, "v1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown version: %v, want ErrNotFound", err)
	}
	for _, text := range []string{"first", "second"} { // idempotent: the last write stands
		if err := st.PutProfile(ctx, "v1", store.ProfileText{Name: "cn-bank", Sources: map[string]string{"r": text}}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := st.Profile(ctx, "v1")
	if err != nil || p.Name != "cn-bank" || p.Sources["r"] != "second" {
		t.Fatalf("profile %+v, %v", p, err)
	}
	if ttl := rdb.TTL(ctx, st.Keys().Profiles()).Val(); ttl != -1 {
		t.Errorf("profiles hash TTL %v, want none", ttl)
	}
}
