package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
)

// Ops reads what the workers publish about themselves.
type Ops interface {
	ProviderStates(ctx context.Context) (map[string]string, error)
}

// ProviderView is one provider as the workers see it.
type ProviderView struct {
	Provider  string        `json:"provider"`
	State     string        `json:"state"` // the worst of the workers': open > half-open > closed
	OpenUntil *time.Time    `json:"open_until,omitempty"`
	Workers   []WorkerState `json:"workers"`
}

// WorkerState is one worker's breaker for a provider.
type WorkerState struct {
	Worker    string     `json:"worker"`
	State     string     `json:"state"`
	OpenUntil *time.Time `json:"open_until,omitempty"`
	Requests  int        `json:"requests"`
	Failures  int        `json:"failures"`
	P50MS     float64    `json:"latency_p50_ms"`
	P95MS     float64    `json:"latency_p95_ms"`
	Updated   time.Time  `json:"updated"`
}

// Summary is the reply to GET /v1/ops/summary.
type Summary struct {
	At        time.Time      `json:"at"`
	Providers []ProviderView `json:"providers"`
	Sandbox   any            `json:"sandbox,omitempty"`
	// Activity: decisions in the last hour and day, success per channel,
	// recent failures and DLQ reasons, the deferred backlog by due hour.
	Activity *opsdata.View `json:"activity,omitempty"`
	// Notices need a person soon: holiday calendars about to run out.
	Notices []string `json:"notices,omitempty"`
}

// stale: a worker that has not published for this long is gone.
const stale = 30 * time.Second

func (s *Server) getSummary(c echo.Context) error {
	sum, err := s.summary(c.Request().Context(), s.Now().UTC())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sum)
}

func (s *Server) summary(ctx context.Context, now time.Time) (Summary, error) {
	sum := Summary{At: now, Providers: []ProviderView{}, Notices: s.notices(now)}
	if s.Ops != nil {
		states, err := s.Ops.ProviderStates(ctx)
		if err != nil {
			return Summary{}, err
		}
		byName := map[string]*ProviderView{}
		for field, v := range states {
			var w struct {
				WorkerState
				Provider string `json:"provider"`
			}
			if json.Unmarshal([]byte(v), &w) != nil || now.Sub(w.Updated) > stale {
				continue
			}
			if w.Worker == "" {
				w.Worker, _, _ = strings.Cut(field, "|")
			}
			if w.OpenUntil != nil && w.OpenUntil.IsZero() {
				w.OpenUntil = nil
			}
			p, ok := byName[w.Provider]
			if !ok {
				p = &ProviderView{Provider: w.Provider, State: "closed"}
				byName[w.Provider] = p
			}
			p.Workers = append(p.Workers, w.WorkerState)
			if rank(w.State) > rank(p.State) {
				p.State = w.State
			}
			if w.OpenUntil != nil && (p.OpenUntil == nil || w.OpenUntil.After(*p.OpenUntil)) {
				p.OpenUntil = w.OpenUntil
			}
		}
		for _, p := range byName {
			sort.Slice(p.Workers, func(i, j int) bool { return p.Workers[i].Worker < p.Workers[j].Worker })
			sum.Providers = append(sum.Providers, *p)
		}
		sort.Slice(sum.Providers, func(i, j int) bool { return sum.Providers[i].Provider < sum.Providers[j].Provider })
	}
	if s.Sandbox != nil {
		sum.Sandbox = s.Sandbox.Stats()
	}
	if s.OpsData != nil {
		v, err := s.OpsData.View(ctx, now)
		if err != nil {
			return Summary{}, err
		}
		sum.Activity = &v
	}
	return sum, nil
}

func rank(state string) int {
	switch state {
	case "open":
		return 2
	case "half-open":
		return 1
	}
	return 0
}
