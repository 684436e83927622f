// Package sandbox is the provider used in dev mode and tests: it records what
// would have been sent instead of sending it. Like a provider with
// idempotency keys, it takes a second send of the same intent id as a repeat
// and returns the first receipt, so a send whose outcome was unknown can be
// resolved by sending again. It can be told to fail or slow down, takes
// the latency it is configured with (fixed or log-normal), and counts the
// most sends in progress at once.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
)

// Entry is one recorded send, as shown on GET /v1/sandbox/outbox.
type Entry struct {
	IntentID   string    `json:"intent_id"`
	DebtorID   string    `json:"debtor_id"`
	Channel    string    `json:"channel"`
	To         string    `json:"to"` // masked
	Template   string    `json:"template"`
	Locale     string    `json:"locale"`
	Subject    string    `json:"subject,omitempty"`
	Body       string    `json:"body"`
	OptOutURL  string    `json:"optout_url,omitempty"`
	ProviderID string    `json:"provider_id"`
	At         time.Time `json:"at"`
}

// Fault makes sends on a channel fail or slow down.
type Fault struct {
	Kind   channel.Kind  // if set, sends fail with this kind
	Code   string        // provider error code carried by the failure
	OptOut bool          // the failure says the recipient opted out
	Delay  time.Duration // each send first waits this long (or until ctx ends: then Unknown)
	Times  int           // how many sends it affects; 0 means until cleared
}

// Config configures a Sandbox.
type Config struct {
	Keep       int  // recent entries kept for listing; default 1000
	Idempotent bool // remember every intent id sent, to answer repeats
	// Journal, if set, is a file where every send is appended as a JSON
	// line. It is read back at start, so an idempotent sandbox remembers
	// the ids sent by an earlier process (as a provider would), and tests
	// count what was sent across processes that were killed.
	Journal string
	// Latency is how long each send takes, like a provider's round trip:
	// fixed, or drawn from a log-normal distribution.
	Latency Latency
}

// JournalLine is one line of the journal.
type JournalLine struct {
	IntentID   string    `json:"intent_id"`
	Channel    string    `json:"channel"`
	ProviderID string    `json:"provider_id"`
	Repeat     bool      `json:"repeat,omitempty"` // answered from memory; not delivered again
	At         time.Time `json:"at"`
}

// Sandbox records sends. It is safe for concurrent use.
type Sandbox struct {
	cfg     Config
	mu      sync.Mutex
	recent  []Entry // ring of the last cfg.Keep entries
	next    int
	seen    map[string]*seenID // only when cfg.Idempotent
	faults  map[intent.Channel]*Fault
	sent    atomic.Int64
	repeats atomic.Int64
	failed  atomic.Int64
	seq     atomic.Int64
	flying  atomic.Int64 // Send calls in progress
	peak    atomic.Int64 // the most Send calls in progress at once
	now     func() time.Time
	journal *os.File
}

// New returns a Sandbox.
func New(cfg Config) (*Sandbox, error) {
	if cfg.Keep <= 0 {
		cfg.Keep = 1000
	}
	s := &Sandbox{
		cfg:    cfg,
		seen:   map[string]*seenID{},
		faults: map[intent.Channel]*Fault{},
		now:    time.Now,
	}
	if cfg.Journal != "" {
		lines, err := ReadJournal(cfg.Journal)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, l := range lines {
			if p, ok := s.seen[l.IntentID]; ok {
				p.n++
			} else if cfg.Idempotent {
				s.seen[l.IntentID] = &seenID{r: channel.Receipt{Provider: "sandbox", ProviderID: l.ProviderID, At: l.At}, n: 1}
			}
		}
		s.seq.Store(int64(len(lines)))
		if s.journal, err = os.OpenFile(cfg.Journal, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, fmt.Errorf("sandbox journal: %w", err)
		}
	}
	return s, nil
}

// Close closes the journal.
func (s *Sandbox) Close() error {
	if s.journal == nil {
		return nil
	}
	return s.journal.Close()
}

// ReadJournal reads a journal file.
func ReadJournal(path string) ([]JournalLine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []JournalLine
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var l JournalLine
		if err := json.Unmarshal(line, &l); err != nil {
			continue // a line cut short by a killed process
		}
		out = append(out, l)
	}
	return out, nil
}

func (s *Sandbox) record(id string, ch intent.Channel, r channel.Receipt, repeat bool) {
	if s.journal == nil {
		return
	}
	b, _ := json.Marshal(JournalLine{IntentID: id, Channel: string(ch), ProviderID: r.ProviderID, Repeat: repeat, At: r.At})
	_, _ = s.journal.Write(append(b, '\n'))
}

// Name is the provider's name.
func (s *Sandbox) Name() string { return "sandbox" }

// Idempotent reports whether a repeated intent id is recognised.
func (s *Sandbox) Idempotent() bool { return s.cfg.Idempotent }

// SetFault makes sends on ch fail or slow down; a zero Fault clears it.
func (s *Sandbox) SetFault(ch intent.Channel, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == (Fault{}) {
		delete(s.faults, ch)
		return
	}
	s.faults[ch] = &f
}

func (s *Sandbox) fault(ch intent.Channel) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults[ch]
	if !ok {
		return Fault{}, false
	}
	out := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, ch)
		}
	}
	return out, true
}

// Send records m, or fails as told.
func (s *Sandbox) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	n := s.flying.Add(1)
	defer s.flying.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if d := s.cfg.Latency.draw(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return channel.Receipt{}, &channel.Error{Kind: channel.Unknown, Code: "timeout", Err: ctx.Err()}
		}
	}
	if f, ok := s.fault(m.Channel); ok {
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				s.failed.Add(1)
				return channel.Receipt{}, &channel.Error{Kind: channel.Unknown, Code: "timeout", Err: ctx.Err()}
			}
		}
		if f.Kind != 0 {
			s.failed.Add(1)
			return channel.Receipt{}, &channel.Error{Kind: f.Kind, Code: f.Code, OptOut: f.OptOut, Err: fmt.Errorf("sandbox: told to fail")}
		}
	}
	if err := ctx.Err(); err != nil {
		return channel.Receipt{}, &channel.Error{Kind: channel.Retryable, Code: "canceled", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Idempotent {
		if p, ok := s.seen[m.IntentID]; ok {
			p.n++
			s.repeats.Add(1)
			s.record(m.IntentID, m.Channel, p.r, true)
			return p.r, nil
		}
	}
	r := channel.Receipt{Provider: "sandbox", ProviderID: fmt.Sprintf("SB%010d", s.seq.Add(1)), At: s.now().UTC()}
	if s.cfg.Idempotent {
		s.seen[m.IntentID] = &seenID{r: r, n: 1}
	}
	s.sent.Add(1)
	s.record(m.IntentID, m.Channel, r, false)
	e := Entry{
		IntentID: m.IntentID, DebtorID: m.DebtorID, Channel: string(m.Channel),
		To: intent.MaskAddress(m.Channel, m.To), Template: m.Template, Locale: m.Locale,
		Subject: m.Subject, Body: m.Text, OptOutURL: m.OptOutURL, ProviderID: r.ProviderID, At: r.At,
	}
	if len(s.recent) < s.cfg.Keep {
		s.recent = append(s.recent, e)
	} else {
		s.recent[s.next] = e
		s.next = (s.next + 1) % s.cfg.Keep
	}
	return r, nil
}

// Recent returns up to n of the newest entries, newest first.
func (s *Sandbox) Recent(n int) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, min(n, len(s.recent)))
	for i := 0; i < len(s.recent) && len(out) < n; i++ {
		j := (s.next - 1 - i + 2*len(s.recent)) % len(s.recent)
		out = append(out, s.recent[j])
	}
	return out
}

// Stats counts what the sandbox saw.
type Stats struct {
	Sent    int64 `json:"sent"`    // distinct messages recorded
	Repeats int64 `json:"repeats"` // sends of an intent id already recorded (answered, not recorded again)
	Failed  int64 `json:"failed"`  // sends failed on purpose
}

// Stats returns the counters.
func (s *Sandbox) Stats() Stats {
	return Stats{Sent: s.sent.Load(), Repeats: s.repeats.Load(), Failed: s.failed.Load()}
}

// InFlightPeak is the most sends in progress at the same time, over every
// channel the sandbox serves: what a benchmark compares with the in-flight
// bound it expects.
func (s *Sandbox) InFlightPeak() int64 { return s.peak.Load() }

type seenID struct {
	r channel.Receipt
	n int
}

// Counts returns, per intent id, how many times it was handed to the
// sandbox successfully (first send and repeats). Only an idempotent sandbox
// remembers ids; otherwise it is empty.
func (s *Sandbox) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.seen))
	for k, v := range s.seen {
		out[k] = v.n
	}
	return out
}
