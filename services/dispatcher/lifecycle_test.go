package main

import (
	"io"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// A hold and a cancellation survive the whole service being killed: dev's
// in-process Redis starts empty, holds are rebuilt from reminders.optouts and
// records from reminders.status, and the debtor's next intent, and the
// canceled one arriving late, are not sent.
func TestDevHoldsAndCancelsSurviveRestart(t *testing.T) {
	dataDir, journal, port := t.TempDir(), t.TempDir()+"/journal", freePort(t)
	g := sample.New(11, 20, time.Now())
	held, late := g.Next(), g.Next()
	held.DebtorID = "D-HELD-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)

	d := startDev(t, dataDir, port, journal)
	res := api(t, http.MethodPost, d.api+"/v1/debtors/"+held.DebtorID+"/holds", `{"reason":"deceased"}`)
	if b, _ := io.ReadAll(res.Body); res.StatusCode != http.StatusCreated {
		t.Fatalf("hold: HTTP %d %s", res.StatusCode, b)
	}
	res.Body.Close()
	res = api(t, http.MethodPost, d.api+"/v1/intents/"+late.ID+"/cancel", `{"reason":"paid","debtor_id":"`+late.DebtorID+`"}`)
	if b, _ := io.ReadAll(res.Body); res.StatusCode != http.StatusOK {
		t.Fatalf("cancel: HTTP %d %s", res.StatusCode, b)
	}
	res.Body.Close()
	d.stop(t, syscall.SIGKILL)

	d = startDev(t, dataDir, port, journal)
	defer d.stop(t, syscall.SIGTERM)
	for _, in := range []any{held, late} {
		res := api(t, http.MethodPost, d.api+"/v1/intents", string(mustJSON(t, in)))
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted && res.StatusCode != http.StatusOK {
			t.Fatalf("POST intent after the restart: HTTP %d", res.StatusCode)
		}
	}
	for _, id := range []string{held.ID, late.ID} {
		var rec status.Record
		testenv.Eventually(t, 60*time.Second, id+" canceled", func() bool {
			return getJSON(t, d.api+"/v1/intents/"+id, &rec) == http.StatusOK && rec.State == status.Canceled
		})
	}
	var holds struct {
		Holds []struct {
			Reason string `json:"reason"`
			Active bool   `json:"active"`
		} `json:"holds"`
	}
	if code := getJSON(t, d.api+"/v1/debtors/"+held.DebtorID+"/holds", &holds); code != http.StatusOK || len(holds.Holds) != 1 || !holds.Holds[0].Active {
		t.Errorf("holds after the restart: HTTP %d %+v", code, holds)
	}
	sends, _ := journalCounts(t, journal)
	if sends[held.ID] != 0 || sends[late.ID] != 0 {
		t.Errorf("sent after the restart: held %d, canceled %d; want 0 and 0", sends[held.ID], sends[late.ID])
	}
}
