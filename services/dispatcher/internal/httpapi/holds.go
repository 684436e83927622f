package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/services/dispatcher/internal/control"
)

// Holds reads a debtor's holds and pending intents.
type Holds = control.Holds

// HoldReasons are the reasons a hold may give.
var HoldReasons = control.HoldReasons

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
	ctx := c.Request().Context()
	// On Kafka and in Redis before the reply, like an opt-out.
	res, err := s.control().Hold(ctx, control.Hold{ID: hid, DebtorID: id, DebtID: b.DebtID, Reason: b.Reason, Until: b.Until,
		Actor: Actor(c), Via: control.ViaAPI})
	if errors.Is(err, control.ErrNotRecorded) {
		s.Log.Warn("hold not recorded", "debtor_id", id, "err", err)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the hold could not be recorded; repeat the request")
	}
	if err != nil {
		return err
	}
	if len(res.Records) > 0 {
		if err := s.Publisher.WriteMessages(ctx, res.Records...); err != nil {
			// Canceled in Redis; the events are what a rebuild would miss.
			s.Log.Warn("intents canceled by a hold, events not yet on Kafka", "debtor_id", id, "err", err)
		}
	}
	return c.JSON(http.StatusCreated, HoldCreated{Hold: holdView(id, hid, res.Record, now), Canceled: res.Canceled})
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
	o, err := s.control().Release(c.Request().Context(), id, hid, Actor(c))
	switch {
	case errors.Is(err, control.ErrNoHold):
		return echo.NewHTTPError(http.StatusNotFound, "no hold "+hid+" on debtor "+id)
	case errors.Is(err, control.ErrNotRecorded):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the hold could not be lifted; repeat the request")
	case err != nil:
		return err
	}
	v := holdView(id, hid, o, s.Now().UTC())
	v.Active = false
	return c.JSON(http.StatusOK, v)
}
