package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// TestKcatControl: commands produced on reminders.control by kcat
// (librdkafka, not our code) are honoured by a running service. A cancel
// of an intent deferred before it, and of one produced after it: neither
// is ever sent, both show canceled. A hold cancels the debtor's pending
// intents and the next one. A bad command lands in the DLQ with its reason
// and code while the good one behind it is applied, and the group commits
// every command.
func TestKcatControl(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		testenv.Missing(t, "kcat (Debian package kcat)")
	}
	h := newHarness(t, 12)
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	now := time.Now()
	g := sample.New(14, 1000, now)
	// later is an intent the open profile would send at once but for its
	// not_before, an hour away: it waits deferred.
	later := func(debtor string) intent.Intent {
		in := g.Next()
		in.DebtorID, in.Channels, in.Fallback = debtor, []intent.Channel{intent.SMS}, false
		nb, exp := now.Add(time.Hour), now.Add(48*time.Hour)
		in.NotBefore, in.ExpiresAt = &nb, &exp
		return in
	}
	stateOf := func(id string) status.State {
		var rec status.Record
		if getJSON(t, svc.base+"/v1/intents/"+id, &rec) != 200 {
			return ""
		}
		return rec.State
	}
	waitState := func(id string, want status.State) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, id+" "+string(want), func() bool { return stateOf(id) == want })
	}
	kcatProduce := func(lines ...string) {
		t.Helper()
		cmd := exec.Command(kcat, "-P", "-b", strings.Join(h.brokers, ","), "-t", kafkaio.DefaultTopics.Control,
			"-X", "partitioner=murmur2_random", "-K", "\t")
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat -P: %v\n%s", err, out)
		}
	}

	// Deferred, then canceled over Kafka.
	first := later("D-CTL-1")
	h.produceIntents([]intent.Intent{first})
	waitState(first.ID, status.Deferred)
	kcatProduce(first.DebtorID + "\t" + `{"type":"cancel","command_id":"pay-1","debtor_id":"` + first.DebtorID +
		`","intent_id":"` + first.ID + `","reason":"paid","actor":"loan-core"}`)
	waitState(first.ID, status.Canceled)

	// Canceled before it is produced: it never passes the gate.
	second := g.Next()
	second.DebtorID = "D-CTL-2"
	kcatProduce(second.DebtorID + "\t" + `{"type":"cancel","command_id":"pay-2","debtor_id":"` + second.DebtorID +
		`","intent_id":"` + second.ID + `","reason":"settled"}`)
	waitState(second.ID, status.Canceled)
	h.produceIntents([]intent.Intent{second})

	// A hold on the debtor: its two deferred intents canceled at once, and
	// the next one at the gate.
	held := []intent.Intent{later("D-CTL-3"), later("D-CTL-3")}
	h.produceIntents(held)
	waitState(held[0].ID, status.Deferred)
	waitState(held[1].ID, status.Deferred)
	kcatProduce(`D-CTL-3` + "\t" + `{"type":"hold","command_id":"dth-3","debtor_id":"D-CTL-3","reason":"deceased"}`)
	waitState(held[0].ID, status.Canceled)
	waitState(held[1].ID, status.Canceled)
	next := g.Next()
	next.DebtorID = "D-CTL-3"
	h.produceIntents([]intent.Intent{next})

	// A bad command, then a good one on the same partition (same key).
	fourth := later("D-CTL-4")
	h.produceIntents([]intent.Intent{fourth})
	waitState(fourth.ID, status.Deferred)
	kcatProduce(
		fourth.DebtorID+"\t"+`{"type":"cancel","command_id":"bad-4","debtor_id":"`+fourth.DebtorID+`","intent_id":"`+fourth.ID+`","reason":"because"}`,
		fourth.DebtorID+"\t"+`{"type":"cancel","command_id":"pay-4","debtor_id":"`+fourth.DebtorID+`","intent_id":"`+fourth.ID+`","reason":"paid"}`)
	waitState(fourth.ID, status.Canceled)

	testenv.Eventually(t, 30*time.Second, "the later intents decided", func() bool {
		return stateOf(next.ID) == status.Canceled && stateOf(second.ID) == status.Canceled && h.allCommitted()
	})
	for _, in := range []intent.Intent{first, second, held[0], held[1], next, fourth} {
		if n := svc.Sandbox.Counts()[in.ID]; n != 0 {
			t.Errorf("%s: sent %d times after its cancellation", in.ID, n)
		}
	}
	var rec status.Record
	getJSON(t, svc.base+"/v1/intents/"+first.ID, &rec)
	if last := rec.Timeline[len(rec.Timeline)-1]; last.Reason != "paid" || last.Detail != "canceled by control:loan-core" || last.Worker != "control" {
		t.Errorf("the timeline does not say who canceled it: %+v", last)
	}
	var holds struct {
		Holds []struct {
			ID     string `json:"id"`
			Reason string `json:"reason"`
			Active bool   `json:"active"`
		} `json:"holds"`
	}
	if getJSON(t, svc.base+"/v1/debtors/D-CTL-3/holds", &holds); len(holds.Holds) != 1 || !holds.Holds[0].Active || holds.Holds[0].Reason != "deceased" {
		t.Errorf("holds of D-CTL-3: %+v", holds)
	}

	dlq := h.consumeAll(kafkaio.DefaultTopics.DLQ, 1)
	if len(dlq) != 1 {
		t.Fatalf("%d DLQ records, want the bad command", len(dlq))
	}
	hdr := map[string]string{}
	for _, x := range dlq[0].Headers {
		hdr[x.Key] = string(x.Value)
	}
	if hdr[kafkaio.HeaderCode] != "invalid_format" || !strings.Contains(hdr[kafkaio.HeaderReason], "reason: must be one of") ||
		hdr[kafkaio.HeaderSourceTopic] != kafkaio.DefaultTopics.Control || !strings.Contains(string(dlq[0].Value), "bad-4") {
		t.Errorf("DLQ record: %v %s", hdr, dlq[0].Value)
	}
	testenv.Eventually(t, 10*time.Second, "the control group commits every command", func() bool {
		return groupCommitted(t, h.brokers, "dispatcher-control", kafkaio.DefaultTopics.Control)
	})
	m := scrape(t, svc.base)
	for series, want := range map[string]float64{
		`dispatcher_control_commands_total{outcome="applied",type="cancel"}`:  3,
		`dispatcher_control_commands_total{outcome="applied",type="hold"}`:    1,
		`dispatcher_control_commands_total{outcome="rejected",type="cancel"}`: 1,
		`dispatcher_control_rejected_total{code="invalid_format"}`:            1,
		`dispatcher_decisions_total{reason="deceased",state="canceled"}`:      3,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
}

// groupCommitted reports whether group committed every record of topic.
func groupCommitted(t *testing.T, brokers []string, group, topic string) bool {
	lag, err := kafkaio.NewClient(brokers).Lag(t.Context(), group, topic)
	if err != nil {
		return false
	}
	for _, n := range lag {
		if n > 0 {
			return false
		}
	}
	return len(lag) > 0
}
