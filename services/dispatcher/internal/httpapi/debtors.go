package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// Contacts reads a debtor's contact history and counters.
type Contacts interface {
	GetFor(ctx context.Context, debtorID, id string) (status.Record, error)
	Counters(ctx context.Context, debtorID string, checks []store.Check) ([]store.CheckState, error)
	Recent(ctx context.Context, debtorID string, st store.Stream, since time.Time, limit int) ([]store.Event, error)
	RecordEvent(ctx context.Context, debtorID string, st store.Stream, member string, at time.Time, retention time.Duration) error
}

var debtorIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ContactView is the reply to GET /v1/debtors/{id}/contacts.
type ContactView struct {
	DebtorID string                  `json:"debtor_id"`
	DebtID   string                  `json:"debt_id,omitempty"`
	Profile  string                  `json:"profile"`
	Zones    []string                `json:"zones"`
	At       time.Time               `json:"at"`
	Recent   []RecentContact         `json:"recent"`
	Channels map[string]*ChannelView `json:"channels"`
}

// RecentContact is one contact counted by the gate.
type RecentContact struct {
	IntentID string       `json:"intent_id"`
	At       time.Time    `json:"at"`
	Channel  string       `json:"channel,omitempty"`
	State    status.State `json:"state,omitempty"`
}

// ChannelView says whether a channel may be used now and, if not, when.
type ChannelView struct {
	AllowedNow  bool        `json:"allowed_now"`
	NextAllowed *time.Time  `json:"next_allowed,omitempty"`
	BlockedBy   string      `json:"blocked_by,omitempty"`
	Rules       []RuleState `json:"rules"`
}

// RuleState is one rule's standing for the debtor.
type RuleState struct {
	Rule   string     `json:"rule"`
	Kind   string     `json:"kind"`
	Source string     `json:"source"`
	Count  *int       `json:"count,omitempty"`
	Limit  *int       `json:"limit,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
	FreeAt *time.Time `json:"frees_at,omitempty"`
}

func (s *Server) getContacts(c echo.Context) error {
	id := c.Param("id")
	if !debtorIDPattern.MatchString(id) {
		return badField("id", "invalid_format", "a debtor id is 1-128 of A-Z a-z 0-9 . _ : -")
	}
	in := intent.Intent{DebtorID: id, DebtID: c.QueryParam("debt_id"), Timezone: c.QueryParam("timezone")}
	if in.DebtID != "" && !debtorIDPattern.MatchString(in.DebtID) {
		return badField("debt_id", "invalid_format", "a debt id is 1-128 of A-Z a-z 0-9 . _ : -")
	}
	if in.Timezone != "" {
		if _, err := time.LoadLocation(in.Timezone); err != nil || in.Timezone == "Local" {
			return badField("timezone", "unknown", "not an IANA time zone")
		}
	}
	ctx := c.Request().Context()
	now := s.Now().UTC()
	p := s.Profile
	zones := p.Zones(in)
	v := ContactView{DebtorID: id, DebtID: in.DebtID, Profile: p.Name, At: now, Channels: map[string]*ChannelView{}, Recent: []RecentContact{}}
	for _, z := range zones {
		v.Zones = append(v.Zones, z.String())
	}
	events, err := s.Contacts.Recent(ctx, id, store.Stream{Event: policy.EventAttempt, Channel: policy.ChannelAny, Scope: policy.ScopeDebtor},
		now.Add(-p.MaxLookback()), 50)
	if err != nil {
		return err
	}
	for _, e := range events {
		rc := RecentContact{IntentID: e.IntentID, At: e.At}
		if rec, err := s.Contacts.GetFor(ctx, id, e.IntentID); err == nil {
			rc.Channel, rc.State = rec.Channel, rec.State
		}
		v.Recent = append(v.Recent, rc)
	}
	for _, ch := range intent.Channels {
		cv := &ChannelView{AllowedNow: true, Rules: []RuleState{}}
		var next time.Time
		// The channel frees when its last blocker does.
		block := func(rule string, at time.Time) {
			cv.AllowedNow = false
			if at.After(next) {
				next, cv.BlockedBy = at, rule
			}
		}
		if d := p.Window(ch, zones, now); !d.Allowed && d.Rule != nil {
			block(d.Rule.ID, d.Next)
			cv.Rules = append(cv.Rules, RuleState{Rule: d.Rule.ID, Kind: d.Rule.Kind, Source: d.Rule.Source, FreeAt: timePtr(d.Next)})
		}
		checks := p.Checks(in, ch, zones, now)
		sc := make([]store.Check, len(checks))
		for i, k := range checks {
			sc[i] = store.Check{Stream: storeStream(in, k.Stream), Since: k.Since, Limit: k.Limit, Sliding: k.Sliding, Until: k.Until}
		}
		states, err := s.Contacts.Counters(ctx, id, sc)
		if err != nil {
			return err
		}
		for i, k := range checks {
			count, limit, since := states[i].Count, k.Limit, k.Since
			rs := RuleState{Rule: k.Rule.ID, Kind: k.Rule.Kind, Source: k.Rule.Source, Count: &count, Limit: &limit, Since: &since}
			if f := states[i].FreeAt; !f.IsZero() {
				rs.FreeAt = timePtr(f)
				block(k.Rule.ID, f)
			}
			cv.Rules = append(cv.Rules, rs)
		}
		if !cv.AllowedNow && !next.IsZero() {
			cv.NextAllowed = timePtr(next)
		}
		v.Channels[string(ch)] = cv
	}
	return c.JSON(http.StatusOK, v)
}

// storeStream resolves a policy stream to the debtor's debt (numbers are not
// known to this view).
func storeStream(in intent.Intent, st policy.Stream) store.Stream {
	out := store.Stream{Event: st.Event, Channel: st.Channel, Scope: st.Scope}
	if st.Scope == policy.ScopeDebt {
		out.ScopeID = in.DebtID
	}
	return out
}

// conversation is the body of POST /v1/debtors/{id}/conversations.
type conversation struct {
	DebtID  string    `json:"debt_id"`
	Channel string    `json:"channel"`
	At      time.Time `json:"at"`
}

// postConversation records a conversation with the debtor about a debt (a
// call answered by the debtor), which rules such as Reg F's seven-day pause
// count.
func (s *Server) postConversation(c echo.Context) error {
	id := c.Param("id")
	if !debtorIDPattern.MatchString(id) {
		return badField("id", "invalid_format", "a debtor id is 1-128 of A-Z a-z 0-9 . _ : -")
	}
	var b conversation
	if err := decodeBody(c, &b); err != nil {
		return err
	}
	var fields []intent.FieldError
	switch {
	case b.DebtID == "":
		fields = append(fields, intent.FieldError{Field: "debt_id", Code: "required", Message: "the debt the conversation was about"})
	case !debtorIDPattern.MatchString(b.DebtID):
		fields = append(fields, intent.FieldError{Field: "debt_id", Code: "invalid_format", Message: "a debt id is 1-128 of A-Z a-z 0-9 . _ : -"})
	}
	if b.Channel == "" {
		b.Channel = string(intent.Voice)
	}
	if !intent.Channel(b.Channel).Known() {
		fields = append(fields, intent.FieldError{Field: "channel", Code: "unknown", Message: "sms, voice, email or wechat"})
	}
	now := s.Now().UTC()
	if b.At.IsZero() {
		b.At = now
	}
	if b.At.After(now.Add(time.Minute)) || b.At.Before(now.Add(-s.Profile.MaxLookback())) {
		fields = append(fields, intent.FieldError{Field: "at", Code: "out_of_range", Message: "not in the future, and within the policy's lookback"})
	}
	if len(fields) > 0 {
		return &intent.Error{Fields: fields}
	}
	st := store.ContactStream(policy.EventConversation, b.Channel, b.DebtID)
	member := "conversation:" + b.At.UTC().Format(time.RFC3339Nano)
	// Durable first: on reminders.status (kind contact), from which the
	// rebuild after a Redis loss counts it again.
	if err := s.publishContact(c.Request().Context(), status.Event{Kind: status.KindContact, DebtorID: id, DebtID: b.DebtID,
		Counted: policy.EventConversation, Channel: b.Channel, Member: member, At: b.At.UTC()}); err != nil {
		return err
	}
	if err := s.Contacts.RecordEvent(c.Request().Context(), id, st, member, b.At, s.Profile.MaxLookback()); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"debtor_id": id, "debt_id": b.DebtID, "channel": b.Channel, "at": b.At.UTC()})
}

// decodeBody decodes a small JSON body (at most 4 KiB, no unknown fields,
// valid UTF-8 without lone surrogate escapes) into v; an empty body leaves
// v as it is.
func decodeBody(c echo.Context, v any) error {
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, 4097))
	if err != nil {
		return badField("", "malformed_json", "cannot read the body")
	}
	if len(b) > 4096 {
		return badField("", intent.CodeTooLarge, "the body is over 4 KiB")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if !utf8.Valid(b) || intent.LoneSurrogate(b) >= 0 {
		return badField("", intent.CodeInvalidUTF8, "the body is not valid UTF-8 (or has a lone surrogate escape)")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badField("", intent.CodeMalformedJSON, "the body is not the JSON object this operation takes")
	}
	return nil
}

func badField(field, code, msg string) error {
	return &intent.Error{Fields: []intent.FieldError{{Field: field, Code: code, Message: msg}}}
}

func timePtr(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}
