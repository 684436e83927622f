package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/status"
)

// Resolver settles sends whose outcome was unknown.
type Resolver interface {
	Resolve(ctx context.Context, debtorID, id string, e status.Entry) (int64, error)
}

// resolution is the body of POST /v1/intents/{id}/resolution.
type resolution struct {
	State string `json:"state"` // sent (the provider has it) or failed (it does not)
	Note  string `json:"note"`  // who looked where; kept on the timeline
}

// postResolution settles a sent_unconfirmed intent after someone checked the
// provider's records: it never resends; a message that did not go out is
// sent again by a new intent with a new id.
func (s *Server) postResolution(c echo.Context) error {
	var b resolution
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return badField("", "malformed_json", `body must be {"state": "sent"|"failed", "note": "…"}`)
	}
	if b.State != string(status.Sent) && b.State != string(status.Failed) {
		return badField("state", "unknown", "sent or failed")
	}
	if len(b.Note) > 500 {
		return badField("note", "too_long", "at most 500 characters")
	}
	ctx := c.Request().Context()
	rec, err := s.Store.Get(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	e := status.Entry{At: s.Now().UTC(), State: status.State(b.State), Reason: "resolved", Detail: b.Note, Channel: rec.Channel}
	seq, err := s.Resolver.Resolve(ctx, rec.DebtorID, rec.ID, e)
	if err != nil {
		return err
	}
	e.Seq = seq
	ev, _ := json.Marshal(status.TransitionEvent(rec.ID, rec.DebtorID, e))
	if err := s.Publisher.WriteMessages(ctx, kafka.Message{Topic: s.Topics.Status, Key: []byte(rec.ID), Value: ev}); err != nil {
		s.Log.Warn("resolution recorded but its event not published", "intent_id", rec.ID, "err", err)
	}
	rec, err = s.Store.Get(ctx, rec.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rec)
}
