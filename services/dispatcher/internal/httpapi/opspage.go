package httpapi

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
)

//go:embed web/*.html
var web embed.FS

var pageFuncs = template.FuncMap{
	"add":     func(a, b int) int { return a + b },
	"sub":     func(a, b int) int { return a - b },
	"mul":     func(a, b int) int { return a * b },
	"pct":     func(f float64, w int) int { return int(f * float64(w)) },
	"percent": func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"scale": func(n, max, h int) int {
		if max == 0 {
			return 0
		}
		return n * h / max
	},
}

func fmtFloat(f float64) string {
	return strings.TrimRight(strings.TrimRight(time.Duration(f*1e6).String(), "µs"), "m")
}

var (
	opsPage   = template.Must(template.New("ops.html").Funcs(pageFuncs).ParseFS(web, "web/ops.html"))
	loginPage = template.Must(template.New("login.html").ParseFS(web, "web/login.html"))
)

// OpsData reads what the ops page shows.
type OpsData interface {
	View(ctx context.Context, now time.Time) (opsdata.View, error)
}

// opsCookie holds the ops page's API key: HttpOnly, SameSite=Strict, only
// sent to /ops.
const opsCookie = "dispatcher_ops_key"

// opsAuth lets the ops page through with a read-scope key, from the cookie
// set by /ops/login or a bearer header (a reverse proxy may add one);
// otherwise it shows the sign-in form.
func (s *Server) opsAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := ""
		if ck, err := c.Cookie(opsCookie); err == nil {
			key = ck.Value
		}
		if h, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer "); ok {
			key = h
		}
		if scopeRank[s.scopeOf(key)] >= scopeRank[ScopeRead] {
			return next(c)
		}
		msg := ""
		if key != "" {
			msg = "That key is not valid for the ops page."
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return render(c, http.StatusUnauthorized, loginPage, map[string]string{"Error": msg})
	}
}

// scopeOf returns the scope of a key, or "".
func (s *Server) scopeOf(key string) string {
	k, _ := s.lookup(strings.TrimSpace(key))
	return k.Scope
}

func (s *Server) postOpsLogin(c echo.Context) error {
	key := strings.TrimSpace(c.FormValue("key"))
	if scopeRank[s.scopeOf(key)] < scopeRank[ScopeRead] {
		return render(c, http.StatusUnauthorized, loginPage, map[string]string{"Error": "That key is not valid for the ops page."})
	}
	c.SetCookie(&http.Cookie{
		Name: opsCookie, Value: key, Path: "/ops", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: strings.HasPrefix(s.PublicBaseURL, "https://"), MaxAge: 12 * 3600,
	})
	return c.Redirect(http.StatusSeeOther, "/ops")
}

type funnelRow struct {
	State, Color string
	Count        int64
	Width        int
}

type funnelView struct {
	Span  string
	Rows  []funnelRow
	Total int64
}

var funnelStates = []struct{ state, color string }{
	{"sent", "#16a34a"}, {"delivered", "#15803d"}, {"deferred", "#2563eb"}, {"suppressed", "#64748b"},
	{"failed", "#dc2626"}, {"sent_unconfirmed", "#d97706"}, {"undelivered", "#f97316"}, {"rejected", "#7c3aed"},
}

func toFunnel(f opsdata.Funnel) funnelView {
	v := funnelView{Span: f.Span, Total: f.Total}
	var max int64 = 1
	for _, st := range funnelStates {
		if f.ByState[st.state] > max {
			max = f.ByState[st.state]
		}
	}
	for _, st := range funnelStates {
		n := f.ByState[st.state]
		v.Rows = append(v.Rows, funnelRow{State: st.state, Color: st.color, Count: n, Width: int(n * 100 / max)})
	}
	return v
}

func (s *Server) getOpsPage(c echo.Context) error {
	ctx := c.Request().Context()
	now := s.Now().UTC()
	data := map[string]any{"At": now, "Profile": "", "Refresh": 15, "Query": strings.TrimSpace(c.QueryParam("intent"))}
	if s.Profile != nil {
		data["Profile"] = s.Profile.Name
	}
	if q := data["Query"].(string); q != "" {
		data["Refresh"] = 0 // reading a timeline: do not reload under the reader
		rec, err := s.Store.Get(ctx, q)
		switch {
		case err == nil:
			data["Record"] = &rec
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	var view opsdata.View
	if s.OpsData != nil {
		v, err := s.OpsData.View(ctx, now)
		if err != nil {
			return err
		}
		view = v
	}
	data["Hour"], data["Day"] = toFunnel(view.Hour), toFunnel(view.Day)
	data["Channels"], data["ChannelsHeight"] = view.Channels, 26*len(view.Channels)+4
	data["Failures"], data["DLQ"] = view.Failures, view.DLQ
	data["Backlog"] = view.Backlog
	maxB, total := 0, 0
	for _, b := range view.Backlog {
		total += b.Count
		maxB = max(maxB, b.Count)
	}
	data["BacklogMax"], data["BacklogTotal"] = maxB, total
	data["BarWidth"] = 300 / max(1, len(view.Backlog))
	sum, err := s.summary(ctx, now)
	if err != nil {
		return err
	}
	data["Providers"] = sum.Providers
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'")
	return render(c, http.StatusOK, opsPage, data)
}

func render(c echo.Context, code int, t *template.Template, data any) error {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return err
	}
	return c.HTML(code, b.String())
}
