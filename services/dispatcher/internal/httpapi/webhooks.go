package httpapi

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/segmentio/kafka-go"
	twclient "github.com/twilio/twilio-go/client"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
)

// Webhooks is what the provider webhooks work with.
type Webhooks interface {
	Callback(ctx context.Context, debtorID, id, providerID string, e status.Entry) (store.CallbackResult, error)
	RecordEvent(ctx context.Context, debtorID string, st store.Stream, member string, at time.Time, retention time.Duration) error
	// DebtorsAt lists the debtors messaged at a number (START lifts their
	// keyword opt-outs written before numbers had their own).
	DebtorsAt(ctx context.Context, phone string) ([]string, error)
	// Digest is the keyed digest a number's state is kept under.
	Digest(addr string) string
	// MarkInbound marks an inbound message being applied (first false: it
	// was already); KeepInbound keeps the mark of one applied;
	// UnmarkInbound forgets the mark of one whose applying failed.
	MarkInbound(ctx context.Context, digest, messageID string, ttl time.Duration) (first bool, err error)
	KeepInbound(ctx context.Context, digest, messageID string, ttl time.Duration) error
	UnmarkInbound(ctx context.Context, digest, messageID string) error
}

// OptOutRecorder records opt-outs: the topic first, then Redis.
type OptOutRecorder interface {
	Record(ctx context.Context, o optout.OptOut) error
}

// twilioSigned checks X-Twilio-Signature over the URL Twilio called (the
// public base URL and the request's path and query) and the form
// parameters. Without an auth token, requests pass only when AllowUnsigned
// (dev mode) says so; otherwise they are refused.
func (s *Server) twilioSigned(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if s.TwilioAuthToken == "" {
			if s.AllowUnsigned {
				return next(c)
			}
			return echo.NewHTTPError(http.StatusForbidden, "webhooks need DISPATCHER_TWILIO_AUTH_TOKEN")
		}
		if err := r.ParseForm(); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "unreadable form")
		}
		params := map[string]string{}
		for k, v := range r.PostForm {
			if len(v) > 0 {
				params[k] = v[0]
			}
		}
		url := strings.TrimRight(s.PublicBaseURL, "/") + r.URL.RequestURI()
		v := twclient.NewRequestValidator(s.TwilioAuthToken)
		if !v.Validate(url, params, r.Header.Get("X-Twilio-Signature")) {
			return echo.NewHTTPError(http.StatusForbidden, "bad signature")
		}
		return next(c)
	}
}

// twiml is a TwiML reply.
type twiml struct {
	XMLName xml.Name `xml:"Response"`
	Message string   `xml:"Message,omitempty"`
}

func replyTwiML(c echo.Context, msg string) error {
	b, _ := xml.Marshal(twiml{Message: msg})
	return c.Blob(http.StatusOK, "application/xml", append([]byte(xml.Header), b...))
}

// postInbound handles a reply to our SMS. TD, 退订, STOP … opt the number
// itself out of SMS: one record keyed by the number's digest, which the
// gate reads for every SMS to the number, whichever debtor it belongs to
// now or later. START and UNSTOP lift that record and, for opt-outs written
// before numbers had their own, a debtor-level SMS opt-out of a debtor
// known at the number whose source is a keyword reply; a bank's, a link's
// or a provider's opt-out stays. HELP answers with the bank's contact line.
// Each message (its MessageSid) is applied once: a replay gets the same
// reply and changes nothing.
func (s *Server) postInbound(c echo.Context) error {
	r := c.Request()
	from, body, sid := r.FormValue("From"), r.FormValue("Body"), r.FormValue("MessageSid")
	lang := "en"
	if strings.HasPrefix(from, "+86") {
		lang = "zh-CN"
	}
	bank := s.bank(lang)
	kw := optout.ParseKeyword(body)
	if kw == optout.KeywordNone || (kw != optout.KeywordHelp && from == "") {
		return replyTwiML(c, "")
	}
	if kw == optout.KeywordHelp {
		if lang == "zh-CN" {
			return replyTwiML(c, bank["name"]+"客服电话"+bank["phone"]+"。回复TD退订。")
		}
		return replyTwiML(c, bank["name"]+": call "+bank["phone"]+". Reply STOP to opt out.")
	}
	ctx := r.Context()
	digest := s.Webhooks.Digest(from)
	if sid != "" {
		first, err := s.Webhooks.MarkInbound(ctx, digest, sid, store.InboundApplying)
		if err != nil {
			return err
		}
		if !first {
			s.Log.Info("SMS keyword already applied", "keyword", kw.String(), "message_sid", sid, "from", intent.MaskPhone(from))
			return keywordReply(c, kw, lang, bank)
		}
	}
	lifted, err := s.applyKeyword(ctx, kw, from, digest)
	if err != nil {
		if sid != "" {
			// Not applied: forget the mark, so the provider's retry is.
			if uerr := s.Webhooks.UnmarkInbound(context.WithoutCancel(ctx), digest, sid); uerr != nil {
				s.Log.Warn("SMS keyword failed and its message stays marked", "message_sid", sid, "err", uerr)
			}
		}
		return err
	}
	if sid != "" {
		if err := s.Webhooks.KeepInbound(ctx, digest, sid, store.InboundTTL); err != nil {
			// Applied, but a replay after the short mark lapses is applied again.
			s.Log.Warn("SMS keyword applied; its mark was not kept", "message_sid", sid, "err", err)
		}
	}
	s.Log.Info("SMS keyword", "keyword", kw.String(), "message_sid", sid, "debtors_lifted", lifted, "from", intent.MaskPhone(from))
	return keywordReply(c, kw, lang, bank)
}

// applyKeyword records what a STOP-like or START keyword from number from
// (digest its keyed digest) asks for; it returns how many debtor-level
// keyword opt-outs a START lifted.
func (s *Server) applyKeyword(ctx context.Context, kw optout.Keyword, from, digest string) (int, error) {
	now := s.Now().UTC()
	o := optout.OptOut{Number: digest, Channel: string(intent.SMS), Source: optout.SourceSMSKeyword,
		Reason: "reply " + kw.String(), At: now, Actor: optout.ActorDebtor, Removed: kw == optout.KeywordStart}
	if err := s.OptOuts.Record(ctx, o); err != nil {
		return 0, err
	}
	if kw != optout.KeywordStart {
		return 0, nil
	}
	// Debtor-level keyword opt-outs, written before numbers had their own.
	debtors, err := s.Webhooks.DebtorsAt(ctx, from)
	if err != nil {
		return 0, err
	}
	lifted := 0
	for _, d := range debtors {
		h, err := s.OptOutReader.OptOutsOf(ctx, d)
		if err != nil {
			return lifted, err
		}
		v, ok := h[string(intent.SMS)]
		if !ok {
			continue
		}
		var was optout.OptOut
		if err := json.Unmarshal([]byte(v), &was); err != nil || was.Source != optout.SourceSMSKeyword {
			continue // the bank's, a link's or a provider's: it stays
		}
		lift := optout.OptOut{DebtorID: d, Channel: string(intent.SMS), Source: optout.SourceSMSKeyword,
			Reason: "reply " + kw.String(), At: now, Actor: optout.ActorDebtor, Removed: true}
		if err := s.OptOuts.Record(ctx, lift); err != nil {
			return lifted, err
		}
		lifted++
	}
	return lifted, nil
}

// keywordReply answers a STOP-like keyword or START in lang.
func keywordReply(c echo.Context, kw optout.Keyword, lang string, bank map[string]string) error {
	switch {
	case kw == optout.KeywordStart && lang == "zh-CN":
		return replyTwiML(c, "您已重新订阅"+bank["name"]+"的短信通知。回复TD退订。")
	case kw == optout.KeywordStart:
		return replyTwiML(c, "You will receive "+bank["name"]+" text messages again. Reply STOP to opt out.")
	case lang == "zh-CN":
		return replyTwiML(c, "您已退订"+bank["name"]+"的短信通知，不会再收到此类短信。客服电话"+bank["phone"]+"。")
	default:
		return replyTwiML(c, "You will not receive "+bank["name"]+" text messages any more. Questions: "+bank["phone"]+".")
	}
}

// messageStates maps Twilio's message statuses to ours.
var messageStates = map[string]status.State{
	"queued": status.Sent, "accepted": status.Sent, "scheduled": status.Sent, "sending": status.Sent, "sent": status.Sent,
	"delivered": status.Delivered, "read": status.Delivered,
	"undelivered": status.Undelivered, "failed": status.Failed,
}

// callStates maps Twilio's call statuses to ours; answered calls also count
// as connected for the voice caps.
var callStates = map[string]status.State{
	"queued": status.Sent, "initiated": status.Sent, "ringing": status.Sent, "in-progress": status.Sent, "answered": status.Sent,
	"completed": status.Delivered, "busy": status.Undelivered, "no-answer": status.Undelivered, "canceled": status.Undelivered,
	"failed": status.Failed,
}

// postStatus handles Twilio's delivery and call-progress callbacks. It moves
// an intent forward only; a late or repeated callback changes nothing.
func (s *Server) postStatus(c echo.Context) error {
	r := c.Request()
	id, debtor := r.URL.Query().Get("intent_id"), r.URL.Query().Get("debtor_id")
	if id == "" || debtor == "" {
		return c.NoContent(http.StatusNoContent) // not one of ours
	}
	var st status.State
	var sid, raw string
	var ok bool
	if sid = r.FormValue("CallSid"); sid != "" {
		raw = r.FormValue("CallStatus")
		st, ok = callStates[raw]
	} else {
		sid, raw = r.FormValue("MessageSid"), r.FormValue("MessageStatus")
		st, ok = messageStates[raw]
	}
	if !ok {
		return c.NoContent(http.StatusNoContent)
	}
	ctx := r.Context()
	now := s.Now().UTC()
	e := status.Entry{At: now, State: st, Reason: "callback", Provider: "twilio", ProviderID: sid,
		ErrorCode: r.FormValue("ErrorCode"), Detail: "twilio: " + raw}
	res, err := s.Webhooks.Callback(ctx, debtor, id, sid, e)
	if err != nil {
		return err
	}
	if res.Outcome != "unknown" && r.FormValue("CallSid") != "" && (raw == "in-progress" || raw == "answered" || raw == "completed") && r.FormValue("AnsweredBy") != "machine_start" {
		// A connected call counts against the daily cap of connected calls —
		// only for a call we placed: the intent's record holds this CallSid.
		// Durable first (reminders.status, kind contact: the rebuild after
		// a Redis loss counts it again), then counted; a failure answers
		// 500 and Twilio calls again (both steps are idempotent by CallSid).
		if err := s.publishContact(ctx, status.Event{Kind: status.KindContact, ID: id, DebtorID: debtor,
			Counted: policy.EventConnected, Channel: string(intent.Voice), Member: sid, At: now}); err != nil {
			return err
		}
		st := store.ContactStream(policy.EventConnected, string(intent.Voice), "")
		if err := s.Webhooks.RecordEvent(ctx, debtor, st, sid, now, s.Profile.MaxLookback()); err != nil {
			return err
		}
	}
	if res.Outcome == "ok" {
		s.OpsRec.Decision(string(st), "callback", "")
		if st == status.Failed || st == status.Undelivered {
			s.OpsRec.Failed(opsdata.Failure{At: now, IntentID: id, State: string(st), Reason: "callback", Code: e.ErrorCode})
		}
		e.Seq = res.Seq
		ev, _ := json.Marshal(status.TransitionEvent(id, debtor, e))
		if err := s.Publisher.WriteMessages(ctx, kafka.Message{Topic: s.Topics.Status, Key: []byte(id), Value: ev}); err != nil {
			s.Log.Warn("callback recorded but its event not published", "intent_id", id, "err", err)
		}
	}
	return c.NoContent(http.StatusNoContent)
}

// bank returns the bank's name and phone in lang.
func (s *Server) bank(lang string) map[string]string {
	if b, ok := s.Templates.(interface {
		Bank(string) map[string]string
	}); ok {
		return b.Bank(lang)
	}
	return map[string]string{}
}

// publishContact puts a contact the gate counts (a connected call, a
// conversation) on reminders.status, so that it is counted again when Redis
// is rebuilt from Kafka.
func (s *Server) publishContact(ctx context.Context, ev status.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	key := ev.ID
	if key == "" {
		key = ev.DebtorID
	}
	return s.Publisher.WriteMessages(ctx, kafka.Message{Topic: s.Topics.Status, Key: []byte(key), Value: b})
}
