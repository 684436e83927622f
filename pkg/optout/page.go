package optout

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"strings"
	"sync"
)

// The states of the opt-out page.
const (
	PageConfirm = "confirm" // a valid link: ask before opting out
	PageDone    = "done"    // opted out just now
	PageAlready = "already" // was opted out before
	PageInvalid = "invalid" // the token does not verify: nothing changed
	PageExpired = "expired" // the token expired: nothing changed
)

// The languages of the opt-out page.
const (
	LangZH = "zh-CN"
	LangEN = "en"
)

// PageData is what the opt-out page shows.
type PageData struct {
	Lang      string // LangZH or LangEN
	BankName  string
	BankPhone string // the bank's service number, shown and dialled
	Channel   string // sms, voice, email, wechat or ChannelAll; unused when invalid or expired
	State     string // PageConfirm, PageDone, PageAlready, PageInvalid or PageExpired
	Action    string // where the confirm form posts, e.g. /u/{token}
}

//go:embed templates/*.html
var templateFS embed.FS

// pages holds one template set per language: the shared page.html with the
// language's wording.
var pages = sync.OnceValues(func() (map[string]*template.Template, error) {
	m := map[string]*template.Template{}
	for _, lang := range []string{LangZH, LangEN} {
		t, err := template.New("page").Funcs(template.FuncMap{"tel": telURI}).
			ParseFS(templateFS, "templates/page.html", "templates/"+lang+".html")
		if err != nil {
			return nil, fmt.Errorf("optout: page templates: %w", err)
		}
		m[lang] = t
	}
	return m, nil
})

// RenderPage writes the opt-out page for d, or nothing and an error when d
// is incomplete.
func RenderPage(w io.Writer, d PageData) error {
	if err := d.validate(); err != nil {
		return err
	}
	ts, err := pages()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := ts[d.Lang].ExecuteTemplate(&buf, "page", d); err != nil {
		return fmt.Errorf("optout: page: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func (d PageData) validate() error {
	if d.Lang != LangZH && d.Lang != LangEN {
		return errors.New("optout: page: language must be zh-CN or en")
	}
	if d.BankName == "" || d.BankPhone == "" {
		return errors.New("optout: page: bank name and phone are required")
	}
	switch d.State {
	case PageConfirm, PageDone, PageAlready:
		if _, ok := channelCode(d.Channel); !ok {
			return errors.New("optout: page: unknown channel")
		}
		if d.State == PageConfirm && d.Action == "" {
			return errors.New("optout: page: confirm needs the form's action")
		}
	case PageInvalid, PageExpired:
	default:
		return errors.New("optout: page: unknown state")
	}
	return nil
}

// telURI keeps what a tel: link can dial from a number written for people
// ("95500", "+86 10 9555-8").
func telURI(phone string) string {
	return strings.Map(func(r rune) rune {
		if '0' <= r && r <= '9' || r == '+' || r == '*' || r == '#' {
			return r
		}
		return -1
	}, phone)
}

// PickLang chooses the page's language. query is the value of the lang
// query parameter: zh-CN, zh or en (any case, any region) wins. Otherwise
// the Accept-Language header decides, by q-value and then by order; a
// language of q=0 is refused. The default is zh-CN.
func PickLang(acceptLanguage, query string) string {
	if l, ok := langOf(strings.TrimSpace(query)); ok {
		return l
	}
	best, bestQ := "", 0.0
	refused := map[string]bool{}
	for rest := acceptLanguage; rest != ""; {
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		tag, params, _ := strings.Cut(item, ";")
		tag = strings.TrimSpace(tag)
		q, ok := qValue(params)
		if !ok {
			continue
		}
		l, ok := langOf(tag)
		if tag == "*" {
			l, ok = LangZH, true
		}
		if !ok {
			continue
		}
		if q == 0 {
			refused[l] = true
			continue
		}
		if q > bestQ {
			best, bestQ = l, q
		}
	}
	switch {
	case best != "" && !refused[best]:
		return best
	case refused[LangZH] && !refused[LangEN]:
		return LangEN
	}
	return LangZH
}

// langOf maps a language tag to a page language by its primary subtag:
// every Chinese is zh-CN (the page is in simplified Chinese), every
// English is en.
func langOf(tag string) (string, bool) {
	primary, _, _ := strings.Cut(strings.ReplaceAll(tag, "_", "-"), "-")
	switch strings.ToLower(primary) {
	case "zh":
		return LangZH, true
	case "en":
		return LangEN, true
	}
	return "", false
}

// qValue reads the weight in the parameters after a language tag; without
// one the weight is 1. A malformed weight drops the entry.
func qValue(params string) (float64, bool) {
	q := 1.0
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, _ := strings.Cut(strings.TrimSpace(p), "=")
		if !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		v, ok := parseQ(strings.TrimSpace(value))
		if !ok {
			return 0, false
		}
		q = v
	}
	return q, true
}

// parseQ reads a qvalue as RFC 9110 writes it: 0, 1, or either with up to
// three decimals, never above 1.
func parseQ(s string) (float64, bool) {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	whole, frac, dot := strings.Cut(s, ".")
	if len(whole) != 1 || dot && len(frac) > 3 {
		return 0, false
	}
	v := 0
	for i := range 3 {
		d := 0
		if i < len(frac) {
			if frac[i] < '0' || frac[i] > '9' {
				return 0, false
			}
			d = int(frac[i] - '0')
		}
		v = v*10 + d
	}
	if whole == "1" {
		if v != 0 {
			return 0, false
		}
		return 1, true
	}
	return float64(v) / 1000, true
}
