package httpapi

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/services/dispatcher/internal/control"
)

// Canceler moves an intent to an end state decided without contact.
type Canceler = control.Canceler

// CancelReasons are the reasons a cancellation may give.
var CancelReasons = control.CancelReasons

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
	res, err := s.control().Cancel(ctx, control.Cancel{IntentID: id, DebtorID: b.DebtorID, Reason: b.Reason, Note: b.Note,
		Actor: Actor(c), Via: control.ViaAPI})
	if err != nil {
		return err
	}
	switch res.Outcome {
	case control.OtherDebtor:
		return c.JSON(http.StatusConflict, Problem{Error: "intent " + id + " belongs to another debtor", Fields: []intent.FieldError{{Field: "debtor_id", Code: "conflict", Message: "not the debtor of this intent"}}})
	case control.UnknownIntent:
		return echo.NewHTTPError(http.StatusNotFound, "no intent "+id+"; give debtor_id to cancel it before it arrives")
	case control.TooLate, control.InFlight:
		return s.cancelConflict(c, id, res.DebtorID, res.State)
	}
	// Canceled now, or before: answer as the first time, and publish again
	// in case the first reply never reached its caller.
	if err := s.Publisher.WriteMessages(ctx, res.Records...); err != nil {
		s.Log.Warn("intent canceled in Redis, not yet on Kafka", "intent_id", id, "err", err)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the intent is canceled but the cancellation is not yet recorded on Kafka; repeat the request")
	}
	out, err := s.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	s.explain(ctx, &out)
	return c.JSON(http.StatusOK, out)
}

// control is the Applier of cancellations and holds over the server's
// dependencies, shared with the reminders.control consumer.
func (s *Server) control() *control.Applier {
	a := &control.Applier{Records: s.Store, Topics: s.Topics, Now: s.Now, Canceled: s.countCanceled}
	if s.Canceler != nil {
		a.Canceler = s.Canceler
	}
	if s.Holds != nil {
		a.Holds = s.Holds
	}
	if s.OptOuts != nil {
		a.OptOuts = s.OptOuts
	}
	return a
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
