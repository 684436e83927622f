package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// Canceler moves an intent to an end state decided without contact.
type Canceler interface {
	Claim(ctx context.Context, r store.ClaimRequest) (store.ClaimResult, error)
}

// CancelReasons are the reasons a cancellation may give.
var CancelReasons = []string{"paid", "settled", "promise_to_pay", "deceased", "bankruptcy", "sold", "other"}

// cancelBody is the body of POST /v1/intents/{id}/cancel.
type cancelBody struct {
	Reason string `json:"reason"`
	// DebtorID lets a cancellation arrive before its intent: the id is then
	// recorded canceled for that debtor, and the intent, when it comes, is
	// never sent.
	DebtorID string `json:"debtor_id"`
	Note     string `json:"note"`
}

// postCancel cancels an intent that has not been sent: 200 with the record,
// now canceled; 409 with its state if it was sent, is being sent, or ended
// otherwise; 404 if unknown and no debtor_id says whose it will be. Once the
// 200 is sent, no gate lets the intent through: the record's end state is
// what the gate checks first, atomically with its decision. A send already
// in flight cannot be recalled: that is the 409 with state sending.
func (s *Server) postCancel(c echo.Context) error {
	if s.Canceler == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cancellation is not served by this process")
	}
	ctx := c.Request().Context()
	id := c.Param("id")
	var b cancelBody
	if err := decodeBody(c, &b); err != nil {
		return err
	}
	var fields []intent.FieldError
	if !slices.Contains(CancelReasons, b.Reason) {
		fields = append(fields, intent.FieldError{Field: "reason", Code: intent.CodeInvalidFormat, Message: "must be one of paid, settled, promise_to_pay, deceased, bankruptcy, sold, other"})
	}
	if !debtorIDPattern.MatchString(id) {
		fields = append(fields, intent.FieldError{Field: "id", Code: intent.CodeInvalidFormat, Message: "not an intent id"})
	}
	if b.DebtorID != "" && !debtorIDPattern.MatchString(b.DebtorID) {
		fields = append(fields, intent.FieldError{Field: "debtor_id", Code: intent.CodeInvalidFormat, Message: "not a debtor id"})
	}
	if len(b.Note) > 256 {
		fields = append(fields, intent.FieldError{Field: "note", Code: intent.CodeTooLong, Message: "must be at most 256 characters"})
	}
	if len(fields) > 0 {
		return &intent.Error{Fields: fields}
	}
	debtor := b.DebtorID
	rec, err := s.Store.Get(ctx, id)
	switch {
	case err == nil:
		if debtor != "" && debtor != rec.DebtorID {
			return c.JSON(http.StatusConflict, Problem{Error: "intent " + id + " belongs to another debtor", Fields: []intent.FieldError{{Field: "debtor_id", Code: "conflict", Message: "not the debtor of this intent"}}})
		}
		debtor = rec.DebtorID
	case errors.Is(err, store.ErrNotFound):
		if debtor == "" {
			return echo.NewHTTPError(http.StatusNotFound, "no intent "+id+"; give debtor_id to cancel it before it arrives")
		}
	default:
		return err
	}
	now := s.Now().UTC()
	detail := "canceled by " + Actor(c)
	if b.Note != "" {
		detail += ": " + b.Note
	}
	e := status.Entry{At: now, State: status.Canceled, Reason: b.Reason, Detail: detail, Worker: "api"}
	res, err := s.claimCanceled(ctx, id, debtor, "api/cancel", e)
	if err != nil {
		return err
	}
	switch res.Outcome {
	case store.Claimed:
		e.Seq = res.Seq
	case store.Duplicate:
		if res.State != status.Canceled {
			return s.cancelConflict(c, id, debtor, res.State)
		}
		// Canceled already: answer as the first time, and publish again in
		// case the first reply never reached its caller.
		rec, err := s.Store.Get(ctx, id)
		if err != nil {
			return err
		}
		for _, x := range rec.Timeline {
			if x.State == status.Canceled {
				e = x
			}
		}
	default: // Busy or Stale: a send is in flight and cannot be recalled
		return s.cancelConflict(c, id, debtor, status.Sending)
	}
	if err := s.Publisher.WriteMessages(ctx, canceledRecords(s.Topics, id, debtor, e)...); err != nil {
		s.Log.Warn("intent canceled in Redis, not yet on Kafka", "intent_id", id, "err", err)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the intent is canceled but the cancellation is not yet recorded on Kafka; repeat the request")
	}
	if res.Outcome == store.Claimed {
		s.countCanceled(b.Reason)
	}
	out, err := s.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	s.explain(ctx, &out)
	return c.JSON(http.StatusOK, out)
}

// claimCanceled moves intent id of debtor to canceled, with e's reason, in
// the claim script: atomic with any gate call on the record.
func (s *Server) claimCanceled(ctx context.Context, id, debtor, owner string, e status.Entry) (store.ClaimResult, error) {
	return s.Canceler.Claim(ctx, store.ClaimRequest{ID: id, DebtorID: debtor, Owner: owner, Now: e.At,
		Target: status.Canceled, Reason: e.Reason, Entry: e})
}

// canceledRecords are what a cancellation publishes: the status event that
// makes it durable (a Redis rebuild restores it) and the tombstone that
// takes a deferred intent off the scheduler's list.
func canceledRecords(topics kafkaio.Topics, id, debtor string, e status.Entry) []kafka.Message {
	ev, _ := json.Marshal(status.TransitionEvent(id, debtor, e))
	return []kafka.Message{{Topic: topics.Status, Key: []byte(id), Value: ev}, {Topic: topics.Deferred, Key: []byte(id)}}
}

// countCanceled counts one cancellation for the ops page and the metrics.
func (s *Server) countCanceled(reason string) {
	s.OpsRec.Decision(string(status.Canceled), reason, "")
	if s.Canceled != nil {
		s.Canceled(reason)
	}
}

// cancelConflict is the 409 for an intent that can no longer be canceled.
func (s *Server) cancelConflict(c echo.Context, id, debtor string, st status.State) error {
	msg := "intent " + id + " is " + string(st) + " and can no longer be canceled"
	if st == status.Sending {
		msg = "intent " + id + " is being sent: a send in flight cannot be recalled"
	}
	return c.JSON(http.StatusConflict, Problem{Error: msg, Fields: []intent.FieldError{{Field: "state", Code: string(st), Message: msg}}})
}
