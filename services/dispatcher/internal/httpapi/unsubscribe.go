package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/pkg/optout"
)

// getUnsubscribe shows the debtor's opt-out page for a signed link: which
// channel will stop, and one button. Nothing changes until it is pressed.
func (s *Server) getUnsubscribe(c echo.Context) error {
	return s.unsubscribePage(c, false)
}

// postUnsubscribe confirms: the opt-out is recorded (topic, then Redis) and
// the page says so. An RFC 8058 one-click POST (body
// "List-Unsubscribe=One-Click", sent by a mail client) opts out at once and
// answers without a page. Twice is fine.
func (s *Server) postUnsubscribe(c echo.Context) error {
	return s.unsubscribePage(c, true)
}

func (s *Server) unsubscribePage(c echo.Context, confirm bool) error {
	r := c.Request()
	lang := optout.PickLang(r.Header.Get("Accept-Language"), c.QueryParam("lang"))
	bank := s.bank(lang)
	d := optout.PageData{Lang: lang, BankName: bank["name"], BankPhone: bank["phone"], Action: r.URL.RequestURI()}
	oneClick := false
	if confirm {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1024))
		oneClick = bytes.Contains(body, []byte("List-Unsubscribe=One-Click"))
	}
	claims, err := s.OptOutKeys.Verify(c.Param("token"), s.Now())
	if err != nil {
		code := http.StatusBadRequest
		d.State = "invalid"
		if errors.Is(err, optout.ErrExpired) {
			d.State = "expired"
		}
		if oneClick {
			return c.String(code, "this unsubscribe link is "+d.State+"; nothing was changed\n")
		}
		return s.renderPage(c, code, d)
	}
	d.Channel = claims.Channel
	ctx := r.Context()
	h, err := s.OptOutReader.OptOutsOf(ctx, claims.DebtorID)
	if err != nil {
		return err
	}
	_, already := h[claims.Channel]
	if _, all := h[optout.ChannelAll]; all {
		already = true
	}
	switch {
	case !confirm && already:
		d.State = "already"
	case !confirm:
		d.State = "confirm"
	default:
		if !already {
			o := optout.OptOut{DebtorID: claims.DebtorID, Channel: claims.Channel, Source: optout.SourceLink, At: s.Now().UTC(), Actor: optout.ActorDebtor}
			if oneClick {
				o.Reason = "one-click unsubscribe"
			} else {
				o.Reason = "opt-out page"
			}
			if err := s.OptOuts.Record(ctx, o); err != nil {
				return err
			}
		}
		if oneClick {
			return c.String(http.StatusOK, "unsubscribed\n")
		}
		d.State = "done"
	}
	return s.renderPage(c, http.StatusOK, d)
}

func (s *Server) renderPage(c echo.Context, code int, d optout.PageData) error {
	var b strings.Builder
	if err := optout.RenderPage(&b, d); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	frameDeny(c.Response().Header(), "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	return c.HTML(code, b.String())
}
