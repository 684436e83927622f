package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// Holds reads a debtor's holds and pending intents.
type Holds interface {
	HoldsOf(ctx context.Context, debtorID string) (map[string]string, error)
	PendingOf(ctx context.Context, debtorID string) ([]store.Pending, error)
}

// HoldReasons are the reasons a hold may give.
var HoldReasons = []string{"paid", "settled", "promise_to_pay", "deceased", "bankruptcy", "other"}

// Hold is one hold as the API shows it.
type Hold struct {
	ID       string     `json:"id"`
	DebtorID string     `json:"debtor_id"`
	DebtID   string     `json:"debt_id,omitempty"`
	Reason   string     `json:"reason"`
	Until    *time.Time `json:"until,omitempty"`
	At       time.Time  `json:"at"`
	Actor    string     `json:"actor,omitempty"`
	// Active: a hold without until always; a pause until it ends.
	Active bool `json:"active"`
}

// HoldCreated is the reply to POST /v1/debtors/{id}/holds.
type HoldCreated struct {
	Hold Hold `json:"hold"`
	// Canceled counts the pending intents (accepted or deferred) the hold
	// canceled at once; others of the debtor are canceled, or paused, when
	// they reach the gate.
	Canceled int `json:"canceled"`
}

type holdBody struct {
	DebtID string     `json:"debt_id"`
	Reason string     `json:"reason"`
	Until  *time.Time `json:"until"`
}

func holdView(debtorID, id string, o optout.OptOut, now time.Time) Hold {
	h := Hold{ID: id, DebtorID: debtorID, DebtID: o.DebtID, Reason: o.Reason, At: o.At, Actor: o.Actor, Active: true}
	if o.UntilMS > 0 {
		u := time.UnixMilli(o.UntilMS).UTC()
		h.Until, h.Active = &u, u.After(now)
	}
	return h
}

// postHold places a hold on a debtor, or on one debt: without until it
// cancels every pending intent and every later one until it is lifted; with
// until it pauses them (deferred to until, rule hold). Once the 201 is sent
// no intent of the debtor (or debt) passes the gate against it: the hold is
// in Redis, where the gate reads it in the same call as its decision.
func (s *Server) postHold(c echo.Context) error {
	if s.Holds == nil || s.OptOuts == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "holds are not served by this process")
	}
	id := c.Param("id")
	var b holdBody
	if err := decodeBody(c, &b); err != nil {
		return err
	}
	now := s.Now().UTC()
	var fields []intent.FieldError
	if !debtorIDPattern.MatchString(id) {
		fields = append(fields, intent.FieldError{Field: "id", Code: intent.CodeInvalidFormat, Message: "a debtor id is 1-128 of A-Z a-z 0-9 . _ : -"})
	}
	if b.DebtID != "" && !debtorIDPattern.MatchString(b.DebtID) {
		fields = append(fields, intent.FieldError{Field: "debt_id", Code: intent.CodeInvalidFormat, Message: "a debt id is 1-128 of A-Z a-z 0-9 . _ : -"})
	}
	if !slices.Contains(HoldReasons, b.Reason) {
		fields = append(fields, intent.FieldError{Field: "reason", Code: intent.CodeInvalidFormat, Message: "must be one of " + strings.Join(HoldReasons, ", ")})
	}
	if b.Until != nil && !b.Until.After(now) {
		fields = append(fields, intent.FieldError{Field: "until", Code: intent.CodeInvalidFormat, Message: "must be in the future"})
	}
	if len(fields) > 0 {
		return &intent.Error{Fields: fields}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	hid := "H-" + hex.EncodeToString(rnd[:])
	o := optout.OptOut{DebtorID: id, Channel: optout.HoldPrefix + hid, Source: optout.SourceBankRequest, Reason: b.Reason,
		At: now.Truncate(time.Millisecond), Actor: Actor(c), DebtID: b.DebtID}
	if b.Until != nil {
		o.UntilMS = b.Until.UnixMilli()
	}
	ctx := c.Request().Context()
	// On Kafka and in Redis before the reply, like an opt-out.
	if err := s.OptOuts.Record(ctx, o); err != nil {
		s.Log.Warn("hold not recorded", "debtor_id", id, "err", err)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the hold could not be recorded; repeat the request")
	}
	out := HoldCreated{Hold: holdView(id, hid, o, now)}
	if b.Until == nil && s.Canceler != nil {
		n, err := s.cancelPending(ctx, c, id, b.DebtID, b.Reason, hid)
		if err != nil {
			return err
		}
		out.Canceled = n
	}
	return c.JSON(http.StatusCreated, out)
}

// cancelPending cancels the debtor's accepted and deferred intents (of the
// debt, when given) at once, so their status says so and the scheduler drops
// them; the gate would cancel them anyway when they come due.
func (s *Server) cancelPending(ctx context.Context, c echo.Context, debtorID, debtID, reason, hid string) (int, error) {
	pending, err := s.Holds.PendingOf(ctx, debtorID)
	if err != nil {
		return 0, err
	}
	n := 0
	now := s.Now().UTC()
	var msgs []kafka.Message
	for _, p := range pending {
		if debtID != "" && p.DebtID != debtID {
			continue
		}
		e := status.Entry{At: now, State: status.Canceled, Reason: reason, Rule: "hold", Detail: "hold " + hid + " by " + Actor(c), Worker: "api"}
		res, err := s.claimCanceled(ctx, p.ID, debtorID, "api/hold", e)
		if err != nil {
			return n, err
		}
		if res.Outcome != store.Claimed {
			continue // decided meanwhile
		}
		e.Seq = res.Seq
		msgs = append(msgs, canceledRecords(s.Topics, p.ID, debtorID, e)...)
		n++
		s.countCanceled(reason)
	}
	if len(msgs) > 0 {
		if err := s.Publisher.WriteMessages(ctx, msgs...); err != nil {
			// Canceled in Redis; the events are what a rebuild would miss.
			s.Log.Warn("intents canceled by a hold, events not yet on Kafka", "debtor_id", debtorID, "err", err)
		}
	}
	return n, nil
}

func (s *Server) getHolds(c echo.Context) error {
	if s.Holds == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "holds are not served by this process")
	}
	id := c.Param("id")
	if !debtorIDPattern.MatchString(id) {
		return badField("id", intent.CodeInvalidFormat, "a debtor id is 1-128 of A-Z a-z 0-9 . _ : -")
	}
	h, err := s.Holds.HoldsOf(c.Request().Context(), id)
	if err != nil {
		return err
	}
	now := s.Now().UTC()
	out := []Hold{}
	for hid, raw := range h {
		var o optout.OptOut
		if json.Unmarshal([]byte(raw), &o) == nil {
			out = append(out, holdView(id, hid, o, now))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return c.JSON(http.StatusOK, map[string]any{"debtor_id": id, "holds": out})
}

// deleteHold lifts a hold: intents arriving afterwards pass the gate again
// (those it canceled stay canceled).
func (s *Server) deleteHold(c echo.Context) error {
	if s.Holds == nil || s.OptOuts == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "holds are not served by this process")
	}
	id, hid := c.Param("id"), c.Param("hold_id")
	if !debtorIDPattern.MatchString(id) {
		return badField("id", intent.CodeInvalidFormat, "a debtor id is 1-128 of A-Z a-z 0-9 . _ : -")
	}
	ctx := c.Request().Context()
	h, err := s.Holds.HoldsOf(ctx, id)
	if err != nil {
		return err
	}
	raw, ok := h[hid]
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "no hold "+hid+" on debtor "+id)
	}
	var o optout.OptOut
	_ = json.Unmarshal([]byte(raw), &o)
	lift := optout.OptOut{DebtorID: id, Channel: optout.HoldPrefix + hid, Source: optout.SourceBankRequest, Reason: o.Reason,
		At: s.Now().UTC().Truncate(time.Millisecond), Removed: true, Actor: Actor(c), DebtID: o.DebtID, UntilMS: o.UntilMS}
	if err := s.OptOuts.Record(ctx, lift); err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the hold could not be lifted; repeat the request")
	}
	v := holdView(id, hid, o, s.Now().UTC())
	v.Active = false
	return c.JSON(http.StatusOK, v)
}
