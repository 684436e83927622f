package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/optout"
)

// OptOutReader reads a debtor's opt-outs.
type OptOutReader interface {
	OptOutsOf(ctx context.Context, debtorID string) (map[string]string, error)
}

// OptOutView is the reply to GET /v1/debtors/{id}/optouts.
type OptOutView struct {
	DebtorID     string          `json:"debtor_id"`
	OptOuts      []optout.OptOut `json:"optouts"`        // channels (or "all") the debtor will not be contacted on
	DoNotContact []optout.OptOut `json:"do_not_contact"` // legal states that stop every channel
	Stopped      []string        `json:"stopped"`        // every channel that is stopped, for a glance
}

// optoutBody is the body of PUT /v1/debtors/{id}/optouts[/{channel}].
type optoutBody struct {
	Reason string `json:"reason"`
	Source string `json:"source"` // link, sms_keyword, provider or bank_request (default)
}

// field turns a path's channel into the opt-out's Channel: a channel,
// "all", or a legal state "dnc:<state>".
func optoutField(p string) (string, bool) {
	switch {
	case p == "" || p == optout.ChannelAll:
		return optout.ChannelAll, true
	case intent.Channel(p).Known():
		return p, true
	case slices.Contains(optout.DoNotContact, p):
		return optout.DNCPrefix + p, true
	}
	return "", false
}

func (s *Server) getOptOuts(c echo.Context) error {
	id := c.Param("id")
	if !debtorIDPattern.MatchString(id) {
		return badField("id", "invalid_format", "a debtor id is 1-128 of A-Z a-z 0-9 . _ : -")
	}
	h, err := s.OptOutReader.OptOutsOf(c.Request().Context(), id)
	if err != nil {
		return err
	}
	v := OptOutView{DebtorID: id, OptOuts: []optout.OptOut{}, DoNotContact: []optout.OptOut{}, Stopped: []string{}}
	stopped := map[string]bool{}
	for field, raw := range h {
		var o optout.OptOut
		if json.Unmarshal([]byte(raw), &o) != nil {
			o = optout.OptOut{DebtorID: id, Channel: field}
		}
		if state, ok := strings.CutPrefix(field, optout.DNCPrefix); ok {
			o.Channel = state
			v.DoNotContact = append(v.DoNotContact, o)
			stopped[optout.ChannelAll] = true
			continue
		}
		v.OptOuts = append(v.OptOuts, o)
		stopped[field] = true
	}
	if stopped[optout.ChannelAll] {
		for _, ch := range intent.Channels {
			stopped[string(ch)] = true
		}
	}
	for ch := range stopped {
		if ch != optout.ChannelAll {
			v.Stopped = append(v.Stopped, ch)
		}
	}
	sort.Strings(v.Stopped)
	sort.Slice(v.OptOuts, func(i, j int) bool { return v.OptOuts[i].Channel < v.OptOuts[j].Channel })
	sort.Slice(v.DoNotContact, func(i, j int) bool { return v.DoNotContact[i].Channel < v.DoNotContact[j].Channel })
	return c.JSON(http.StatusOK, v)
}

// putOptOut records an opt-out (or a legal do-not-contact state) for the
// debtor; it answers after the opt-out is on Kafka and in Redis, so no
// intent that has not passed the gate is sent after this reply.
func (s *Server) putOptOut(c echo.Context) error {
	return s.changeOptOut(c, false)
}

// deleteOptOut lifts it.
func (s *Server) deleteOptOut(c echo.Context) error {
	return s.changeOptOut(c, true)
}

func (s *Server) changeOptOut(c echo.Context, remove bool) error {
	id := c.Param("id")
	if !debtorIDPattern.MatchString(id) {
		return badField("id", "invalid_format", "a debtor id is 1-128 of A-Z a-z 0-9 . _ : -")
	}
	field, ok := optoutField(c.Param("channel"))
	if !ok {
		return badField("channel", "unknown", "sms, voice, email, wechat, all, cease_and_desist, attorney_represented or dispute_open")
	}
	var b optoutBody
	if err := decodeBody(c, &b); err != nil {
		return err
	}
	if b.Source == "" {
		b.Source = optout.SourceBankRequest
	}
	switch b.Source {
	case optout.SourceBankRequest:
	case optout.SourceLink, optout.SourceSMSKeyword, optout.SourceProvider:
		// Where an opt-out came from is evidence: only the service writes
		// these (the link page, SMS replies, provider reports).
		return badField("source", "reserved", b.Source+" is recorded only by the service itself; the API records bank_request")
	default:
		return badField("source", "unknown", "bank_request (link, sms_keyword and provider are recorded by the service)")
	}
	if len(b.Reason) > 500 {
		return badField("reason", "too_long", "at most 500 characters")
	}
	if strings.HasPrefix(field, optout.DNCPrefix) && !hasScope(c, ScopeCompliance) {
		return echo.NewHTTPError(http.StatusForbidden, "legal do-not-contact states are set and lifted with a compliance key")
	}
	ctx := c.Request().Context()
	fields := []string{field}
	if remove {
		h, err := s.OptOutReader.OptOutsOf(ctx, id)
		if err != nil {
			return err
		}
		if c.Param("channel") == "" {
			// DELETE …/optouts lifts every channel opt-out (legal states
			// stay: they are lifted one by one, by name).
			fields = fields[:0]
			for f := range h {
				if !strings.HasPrefix(f, optout.DNCPrefix) {
					fields = append(fields, f)
				}
			}
		}
		// An opt-out the debtor made is lifted only by compliance; nothing
		// is changed if any of them is.
		for _, f := range fields {
			var was optout.OptOut
			if raw, ok := h[f]; ok && json.Unmarshal([]byte(raw), &was) == nil && was.ByDebtor() && !hasScope(c, ScopeCompliance) {
				return echo.NewHTTPError(http.StatusForbidden, "the debtor opted out of "+f+" themself ("+was.Source+"); lifting it needs a compliance key")
			}
		}
	}
	for _, f := range fields {
		o := optout.OptOut{DebtorID: id, Channel: f, Source: b.Source, Reason: b.Reason, At: s.Now().UTC().Truncate(time.Millisecond), Removed: remove,
			Actor: Actor(c)}
		if err := s.OptOuts.Record(ctx, o); err != nil {
			return err
		}
	}
	return s.getOptOuts(c)
}
