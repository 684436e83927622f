package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
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

// Sessions keep the ops page's sessions (Redis), by the digest of their id.
type Sessions interface {
	PutSession(ctx context.Context, digest string, value []byte, ttl time.Duration) error
	Session(ctx context.Context, digest string) ([]byte, error)
	DeleteSession(ctx context.Context, digest string) error
}

// opsCookie holds the ops page's session id (random; never the key):
// HttpOnly, SameSite=Strict, only sent to /ops.
const opsCookie = "dispatcher_ops_session"

const (
	sessionTTL   = 12 * time.Hour
	loginMaxBody = 4 << 10
)

// opsSession is what Redis keeps of a session: which key signed in (its
// id), with what scope, until when. Never the key.
type opsSession struct {
	KeyID   string    `json:"key_id"`
	Scope   string    `json:"scope"`
	Expires time.Time `json:"expires_at"`
}

// sessionDigest is the Redis key's part for a session id: a dump of Redis
// does not hand out live sessions.
func sessionDigest(id string) string {
	sum := sha256.Sum256([]byte("ops-session:" + id))
	return hex.EncodeToString(sum[:])
}

// opsAuth lets the ops page through with a session of read scope or more
// (the cookie /ops/login sets) or a bearer key (a reverse proxy may add
// one); otherwise it shows the sign-in form.
func (s *Server) opsAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if key, ok := bearer(c.Request()); ok {
			if k, ok := s.lookup(key); ok && scopeRank[k.Scope] >= scopeRank[ScopeRead] {
				return next(c)
			}
		}
		msg := ""
		if ck, err := c.Cookie(opsCookie); err == nil && ck.Value != "" {
			_, err := s.session(c.Request().Context(), ck.Value)
			if err == nil {
				return next(c)
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			msg = "Your session has ended; sign in again."
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		frameDeny(c.Response().Header(), pageCSP)
		return render(c, http.StatusUnauthorized, loginPage, map[string]string{"Error": msg})
	}
}

// session returns the live session with id, or store.ErrNotFound: unknown,
// expired by the server's clock, or its key no longer configured with that
// scope.
func (s *Server) session(ctx context.Context, id string) (opsSession, error) {
	b, err := s.Sessions.Session(ctx, sessionDigest(id))
	if err != nil {
		return opsSession{}, err
	}
	var sess opsSession
	if json.Unmarshal(b, &sess) != nil || !s.Now().Before(sess.Expires) || scopeRank[sess.Scope] < scopeRank[ScopeRead] {
		return opsSession{}, store.ErrNotFound
	}
	for _, k := range s.APIKeys {
		if k.ID == sess.KeyID && k.Scope == sess.Scope {
			return sess, nil
		}
	}
	return opsSession{}, store.ErrNotFound
}

// scopeOf returns the scope of a key, or "".
func (s *Server) scopeOf(key string) string {
	k, _ := s.lookup(strings.TrimSpace(key))
	return k.Scope
}

// sameOrigin refuses a form post from another site (CSRF, login CSRF): its
// Origin must be the public base URL's or the request's own host.
func (s *Server) sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		o := strings.TrimRight(r.Header.Get("Origin"), "/")
		ok := false
		if u, err := url.Parse(s.PublicBaseURL); err == nil && u.Host != "" && strings.EqualFold(o, u.Scheme+"://"+u.Host) {
			ok = true
		}
		if strings.EqualFold(o, "http://"+r.Host) || strings.EqualFold(o, "https://"+r.Host) {
			ok = true
		}
		if !ok {
			return echo.NewHTTPError(http.StatusForbidden, "this form is accepted only from the ops page itself (Origin)")
		}
		return next(c)
	}
}

// postOpsLogin takes a key from a small url-encoded form body (never the
// query string, never multipart), and keeps a new random session id in
// the cookie; the key never leaves the request.
func (s *Server) postOpsLogin(c echo.Context) error {
	r := c.Request()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "sign in with the form: application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, loginMaxBody)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "the sign-in form is too large")
		}
		return echo.NewHTTPError(http.StatusBadRequest, "unreadable form")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	k, ok := s.lookup(strings.TrimSpace(r.PostForm.Get("key")))
	if !ok || scopeRank[k.Scope] < scopeRank[ScopeRead] {
		frameDeny(c.Response().Header(), pageCSP)
		return render(c, http.StatusUnauthorized, loginPage, map[string]string{"Error": "That key is not valid for the ops page."})
	}
	var rnd [32]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	id := base64.RawURLEncoding.EncodeToString(rnd[:])
	b, err := json.Marshal(opsSession{KeyID: k.ID, Scope: k.Scope, Expires: s.Now().UTC().Add(sessionTTL)})
	if err != nil {
		return err
	}
	if err := s.Sessions.PutSession(r.Context(), sessionDigest(id), b, sessionTTL); err != nil {
		return err
	}
	c.SetCookie(s.sessionCookie(id, int(sessionTTL/time.Second)))
	return c.Redirect(http.StatusSeeOther, "/ops")
}

// postOpsLogout ends the session and clears the cookie.
func (s *Server) postOpsLogout(c echo.Context) error {
	if ck, err := c.Cookie(opsCookie); err == nil && ck.Value != "" {
		if err := s.Sessions.DeleteSession(c.Request().Context(), sessionDigest(ck.Value)); err != nil {
			return err
		}
	}
	c.SetCookie(s.sessionCookie("", -1))
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Redirect(http.StatusSeeOther, "/ops")
}

func (s *Server) sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: opsCookie, Value: value, Path: "/ops", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: strings.HasPrefix(s.PublicBaseURL, "https://"), MaxAge: maxAge,
	}
}

// pageCSP is the ops pages' Content-Security-Policy (frameDeny adds
// frame-ancestors).
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'"

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
	{"canceled", "#0891b2"},
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
	data["Notices"] = s.notices(now)
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
	frameDeny(c.Response().Header(), pageCSP)
	return render(c, http.StatusOK, opsPage, data)
}

func render(c echo.Context, code int, t *template.Template, data any) error {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return err
	}
	return c.HTML(code, b.String())
}
