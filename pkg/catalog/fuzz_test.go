package catalog_test

import (
	"strings"
	"testing"

	"github.com/contactd/dispatcher/pkg/intent"
)

// FuzzRender renders every shipped template, locale and channel with hostile
// param values. Rendering must not panic or fail, text must carry the values
// verbatim, and HTML must hold no tag the template did not write itself.
func FuzzRender(f *testing.F) {
	c := shipped(f)
	type key struct {
		name, locale string
		ch           intent.Channel
	}
	base := map[key]int{} // '<' in each HTML rendered with sample params
	for _, name := range c.Names() {
		for _, loc := range intent.Locales {
			m, err := c.Render(name, loc, intent.Email, sample)
			if err != nil {
				f.Fatal(err)
			}
			base[key{name, loc, intent.Email}] = strings.Count(m.HTML, "<")
		}
	}
	f.Fuzz(func(t *testing.T, name, amount, date string) {
		params := map[string]string{"name": name, "amount": amount, "due_date": date, "promise_date": date}
		for _, tmpl := range c.Names() {
			for _, loc := range intent.Locales {
				for _, ch := range intent.Channels {
					m, err := c.Render(tmpl, loc, ch, params)
					if err != nil {
						t.Fatalf("%s/%s/%s: %v", tmpl, loc, ch, err)
					}
					if !strings.Contains(m.Text, name) || !strings.Contains(m.Text, amount) {
						t.Errorf("%s/%s/%s: text does not carry the params verbatim", tmpl, loc, ch)
					}
					if m.HTML == "" {
						continue
					}
					if strings.Contains(strings.ToLower(m.HTML), "<script") {
						t.Errorf("%s/%s/%s: unescaped <script in HTML:\n%s", tmpl, loc, ch, m.HTML)
					}
					if got, want := strings.Count(m.HTML, "<"), base[key{tmpl, loc, ch}]; got != want {
						t.Errorf("%s/%s/%s: HTML has %d '<', the template alone %d:\n%s", tmpl, loc, ch, got, want, m.HTML)
					}
				}
			}
		}
	})
}
