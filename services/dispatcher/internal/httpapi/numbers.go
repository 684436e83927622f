package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/optout"
)

// NumberReader reads the state a phone number holds itself, whoever it
// belongs to: its opt-outs (an SMS keyword reply from it).
type NumberReader interface {
	Digest(addr string) string
	NumberOptOutsOf(ctx context.Context, digest string) (map[string]string, error)
}

// NumberView is the reply to POST /v1/numbers/lookup.
type NumberView struct {
	Phone   string         `json:"phone"` // masked
	OptOuts []NumberOptOut `json:"optouts"`
	Stopped []string       `json:"stopped"` // channels no debtor is contacted on at this number
}

// NumberOptOut is one opt-out a number holds.
type NumberOptOut struct {
	Channel string    `json:"channel"`
	Source  string    `json:"source"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor,omitempty"`
}

// postNumberLookup answers which opt-outs a phone number holds itself. The
// number comes in the body, never in the URL: proxies and access logs keep
// URLs.
func (s *Server) postNumberLookup(c echo.Context) error {
	var b struct {
		Phone string `json:"phone"`
	}
	if err := decodeBody(c, &b); err != nil {
		return err
	}
	if !intent.ValidPhone(b.Phone) {
		return badField("phone", "invalid_format", "a phone number in E.164, e.g. +8613800138000")
	}
	h, err := s.Numbers.NumberOptOutsOf(c.Request().Context(), s.Numbers.Digest(b.Phone))
	if err != nil {
		return err
	}
	v := NumberView{Phone: intent.MaskPhone(b.Phone), OptOuts: []NumberOptOut{}, Stopped: []string{}}
	for ch, raw := range h {
		var o optout.OptOut
		_ = json.Unmarshal([]byte(raw), &o)
		v.OptOuts = append(v.OptOuts, NumberOptOut{Channel: ch, Source: o.Source, Reason: o.Reason, At: o.At, Actor: o.Actor})
		v.Stopped = append(v.Stopped, ch)
	}
	sort.Strings(v.Stopped)
	sort.Slice(v.OptOuts, func(i, j int) bool { return v.OptOuts[i].Channel < v.OptOuts[j].Channel })
	return c.JSON(http.StatusOK, v)
}
