// Package catalog owns the wording of every message the dispatcher sends.
//
// Upstream systems name a template and pass params; they never send text. The
// wording lives in templates/*.yaml (one file per template, plus bank.yaml for
// the bank's own name, service line and website) and belongs to the bank's
// compliance team. Load checks the whole catalog before anything is sent, so a
// misspelt placeholder or a missing translation stops the service at start-up
// instead of reaching a debtor.
package catalog

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"

	"gopkg.in/yaml.v3"

	"github.com/contactd/dispatcher/pkg/intent"
)

// Dir is the directory of fsys that Load reads.
const Dir = "templates"

// bankFile holds the bank's shared variables; it is not a template.
const bankFile = "bank.yaml"

// bankKey is the data key under which templates find the bank's variables.
const bankKey = "bank"

// Errors returned by Render, wrapped with the names involved. A worker treats
// all of them as an invalid intent: retrying cannot help.
var (
	ErrUnknownTemplate    = errors.New("unknown template")
	ErrUnsupportedLocale  = errors.New("unsupported locale")
	ErrUnsupportedChannel = errors.New("unsupported channel")
	ErrMissingParam       = errors.New("missing param")
)

// Message is one template rendered for one channel. Which parts are set
// depends on the channel:
//
//	sms, voice  Text
//	email       Subject, Text, HTML
//	wechat      Title, Fields, and Text: the title and field values, one a line
type Message struct {
	Subject string
	Text    string
	HTML    string
	Title   string
	Fields  []Field
	// OptOutLink asks the channel adapter to add the debtor's opt-out link.
	// It is always true for e-mail.
	OptOutLink bool
}

// Field is one keyword of a WeChat template message (first, keyword1, …, remark).
type Field struct{ Key, Value string }

// Catalog holds the parsed templates. It is read-only after Load and safe for
// concurrent use.
type Catalog struct {
	templates map[string]*entry
	names     []string
	bank      map[string]map[string]string // locale → name, phone, website
}

var _ intent.Templates = (*Catalog)(nil)

// entry is one template file, parsed.
type entry struct {
	spec    intent.TemplateSpec
	optOut  bool
	locales map[string]*localized
}

type localized struct {
	bank     map[string]string
	channels map[intent.Channel]*wording
}

// executor is what text/template and html/template have in common.
type executor interface {
	Execute(w io.Writer, data any) error
}

type wording struct {
	subject executor
	text    executor
	html    executor
	title   executor
	fields  []fieldTemplate
}

type fieldTemplate struct {
	key   string
	value executor
}

// Bank returns the bank's variables (name, phone, website) in locale, or in
// zh-CN when the locale has none. The map is the caller's.
func (c *Catalog) Bank(locale string) map[string]string {
	b, ok := c.bank[locale]
	if !ok {
		b = c.bank["zh-CN"]
	}
	out := make(map[string]string, len(b))
	for k, v := range b {
		out[k] = v
	}
	return out
}

// Spec returns what the named template needs from an intent. The slices are
// the caller's to keep.
func (c *Catalog) Spec(name string) (intent.TemplateSpec, bool) {
	e, ok := c.templates[name]
	if !ok {
		return intent.TemplateSpec{}, false
	}
	return intent.TemplateSpec{
		Locales:  slices.Clone(e.spec.Locales),
		Channels: slices.Clone(e.spec.Channels),
		Params:   slices.Clone(e.spec.Params),
		Types:    maps.Clone(e.spec.Types),
	}, true
}

// Names returns the template names, sorted.
func (c *Catalog) Names() []string { return slices.Clone(c.names) }

// Render renders the named template in locale for channel ch. Every param the
// template declares must be in params; others are ignored. Param values are
// data: they are escaped in HTML, copied verbatim into text and never parsed
// as template actions.
func (c *Catalog) Render(name, locale string, ch intent.Channel, params map[string]string) (Message, error) {
	e, ok := c.templates[name]
	if !ok {
		return Message{}, fmt.Errorf("catalog: %w %q", ErrUnknownTemplate, name)
	}
	loc, ok := e.locales[locale]
	if !ok {
		return Message{}, fmt.Errorf("catalog: template %q: %w %q (written in %s)",
			name, ErrUnsupportedLocale, locale, strings.Join(e.spec.Locales, ", "))
	}
	w, ok := loc.channels[ch]
	if !ok {
		return Message{}, fmt.Errorf("catalog: template %q: %w %q (has %s)",
			name, ErrUnsupportedChannel, ch, joinChannels(e.spec.Channels))
	}
	var missing []string
	for _, p := range e.spec.Params {
		if _, ok := params[p]; !ok {
			missing = append(missing, p)
		}
	}
	if missing != nil {
		return Message{}, fmt.Errorf("catalog: template %q: %w: %s", name, ErrMissingParam, strings.Join(missing, ", "))
	}

	data := dataPool.Get().(map[string]any)
	defer func() { clear(data); dataPool.Put(data) }()
	// Only declared params go in, so a param named "bank" cannot shadow the
	// bank's own variables.
	for _, p := range e.spec.Params {
		data[p] = params[p]
		if e.spec.Types[p] == intent.ParamMoney {
			// Amounts read the way the locale writes them.
			if m, err := intent.ParseMoney(params[p]); err == nil {
				data[p] = m.Format(locale)
			}
		}
	}
	data[bankKey] = loc.bank

	r := renderer{data: data, buf: bufPool.Get().(*bytes.Buffer)}
	defer func() {
		if r.buf.Cap() <= maxPooledBuf {
			bufPool.Put(r.buf)
		}
	}()

	m := Message{OptOutLink: e.optOut || ch == intent.Email}
	m.Subject = r.run(w.subject)
	m.Text = r.run(w.text)
	m.HTML = r.run(w.html)
	m.Title = r.run(w.title)
	if len(w.fields) > 0 {
		m.Fields = make([]Field, len(w.fields))
		for i, f := range w.fields {
			m.Fields[i] = Field{Key: f.key, Value: r.run(f.value)}
		}
		m.Text = wechatText(m.Title, m.Fields)
	}
	if r.err != nil {
		return Message{}, fmt.Errorf("catalog: template %q %s %s: %w", name, locale, ch, r.err)
	}
	return m, nil
}

// maxPooledBuf keeps the buffer of one huge rendering out of the pool.
const maxPooledBuf = 64 << 10

var (
	dataPool = sync.Pool{New: func() any { return make(map[string]any, 8) }}
	bufPool  = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// renderer executes the parts of one message, keeping the first error.
type renderer struct {
	data map[string]any
	buf  *bytes.Buffer
	err  error
}

func (r *renderer) run(t executor) string {
	if t == nil || r.err != nil {
		return ""
	}
	r.buf.Reset()
	if err := t.Execute(r.buf, r.data); err != nil {
		r.err = err
		return ""
	}
	return r.buf.String()
}

// wechatText is the plain-text summary of a WeChat message, for channels and
// records that need one body.
func wechatText(title string, fields []Field) string {
	n := len(title)
	for _, f := range fields {
		n += 1 + len(f.Value)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(title)
	for _, f := range fields {
		b.WriteByte('\n')
		b.WriteString(f.Value)
	}
	return b.String()
}

func joinChannels(cs []intent.Channel) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// The YAML files, as written by compliance.

type bankYAML struct {
	Locales map[string]map[string]string `yaml:"locales"`
}

type templateYAML struct {
	Description string                                    `yaml:"description"`
	Params      *[]string                                 `yaml:"params"`
	ParamTypes  map[string]string                         `yaml:"param_types"`
	OptOutLink  *bool                                     `yaml:"optout_link"`
	Locales     []string                                  `yaml:"locales"`
	Channels    []intent.Channel                          `yaml:"channels"`
	Wording     map[string]map[intent.Channel]wordingYAML `yaml:"wording"`
}

type wordingYAML struct {
	Subject string      `yaml:"subject"`
	Text    string      `yaml:"text"`
	HTML    string      `yaml:"html"`
	Title   string      `yaml:"title"`
	Fields  []fieldYAML `yaml:"fields"`
}

type fieldYAML struct {
	Key   string `yaml:"key"`
	Value string `yaml:"value"`
}

// ident is the form of template names, params and bank variable names: what
// a {{.x}} placeholder can reach.
var ident = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Load reads and checks every template under templates/ in fsys: configs.FS,
// or os.DirFS of a directory with the same layout. It reports every problem it
// finds, each naming the file and the field, and returns no catalog if there
// is any.
func Load(fsys fs.FS) (*Catalog, error) {
	var l loader
	bank := l.bank(fsys)
	files, err := fs.Glob(fsys, Dir+"/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c := &Catalog{templates: make(map[string]*entry), bank: bank}
	for _, file := range files {
		if path.Base(file) == bankFile {
			continue
		}
		name := strings.TrimSuffix(path.Base(file), ".yaml")
		if e := l.template(fsys, file, name, bank); e != nil {
			c.templates[name] = e
			c.names = append(c.names, name)
		}
	}
	if len(c.names) == 0 && len(l.problems) == 0 {
		l.addf(Dir, "", "no templates (*.yaml besides %s)", bankFile)
	}
	if len(l.problems) > 0 {
		return nil, fmt.Errorf("catalog: %d problem(s):\n%w", len(l.problems), errors.Join(l.problems...))
	}
	slices.Sort(c.names)
	return c, nil
}

// loader collects problems so that one run reports all of them.
type loader struct{ problems []error }

func (l *loader) addf(file, field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	l.problems = append(l.problems, fmt.Errorf("%s: %s", file, msg))
}

func decodeStrict(fsys fs.FS, file string, v any) error {
	b, err := fs.ReadFile(fsys, file)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("file is empty")
		}
		return err
	}
	return nil
}

func (l *loader) bank(fsys fs.FS) map[string]map[string]string {
	file := Dir + "/" + bankFile
	var b bankYAML
	if err := decodeStrict(fsys, file, &b); err != nil {
		l.addf(file, "", "%v", err)
		return nil
	}
	if len(b.Locales) == 0 {
		l.addf(file, "locales", "no locales")
	}
	for _, loc := range slices.Sorted(maps.Keys(b.Locales)) {
		vars := b.Locales[loc]
		field := "locales." + loc
		if !slices.Contains(intent.Locales, loc) {
			l.addf(file, field, "unknown locale (known: %s)", strings.Join(intent.Locales, ", "))
		}
		if len(vars) == 0 {
			l.addf(file, field, "no variables")
		}
		for _, k := range slices.Sorted(maps.Keys(vars)) {
			v := vars[k]
			if !ident.MatchString(k) {
				l.addf(file, field+"."+k, "variable names are lower-case letters, digits and _")
			}
			if strings.TrimSpace(v) == "" {
				l.addf(file, field+"."+k, "empty")
			}
		}
	}
	return b.Locales
}

func (l *loader) template(fsys fs.FS, file, name string, bank map[string]map[string]string) *entry {
	before := len(l.problems)
	bad := func() bool { return len(l.problems) > before }
	if !ident.MatchString(name) {
		l.addf(file, "", "file name %q: template ids are lower-case letters, digits and _", name)
	}
	var y templateYAML
	if err := decodeStrict(fsys, file, &y); err != nil {
		l.addf(file, "", "%v", err)
		return nil
	}

	// The header: what the template needs and where it may go.
	var params []string
	if y.Params == nil {
		l.addf(file, "params", "missing: list the params the wording uses (an empty list if none)")
	} else {
		params = *y.Params
	}
	for i, p := range params {
		switch {
		case !ident.MatchString(p):
			l.addf(file, fmt.Sprintf("params[%d]", i), "%q: param names are lower-case letters, digits and _", p)
		case p == bankKey:
			l.addf(file, fmt.Sprintf("params[%d]", i), "%q is reserved for the bank's variables", p)
		case slices.Contains(params[:i], p):
			l.addf(file, fmt.Sprintf("params[%d]", i), "%q listed twice", p)
		}
	}
	types := map[string]string{}
	for _, p := range params {
		switch t := y.ParamTypes[p]; {
		case t == "":
			l.addf(file, "param_types."+p, "missing: say what %s is (%s)", p, strings.Join(intent.ParamTypes, ", "))
		case !slices.Contains(intent.ParamTypes, t):
			l.addf(file, "param_types."+p, "unknown type %q (known: %s)", t, strings.Join(intent.ParamTypes, ", "))
		default:
			types[p] = t
		}
	}
	for _, p := range slices.Sorted(maps.Keys(y.ParamTypes)) {
		if !slices.Contains(params, p) {
			l.addf(file, "param_types."+p, "not listed under params")
		}
	}
	if y.OptOutLink == nil {
		l.addf(file, "optout_link", "missing: say true or false")
	}
	if len(y.Locales) == 0 {
		l.addf(file, "locales", "missing: list the locales the template is written in")
	}
	// Wording is checked for the locales and channels that are sound, so
	// that one run reports as much as it can.
	var locales []string
	for i, loc := range y.Locales {
		field := fmt.Sprintf("locales[%d]", i)
		switch {
		case !slices.Contains(intent.Locales, loc):
			l.addf(file, field, "unknown locale %q (known: %s)", loc, strings.Join(intent.Locales, ", "))
		case slices.Contains(y.Locales[:i], loc):
			l.addf(file, field, "%q listed twice", loc)
		case bank == nil:
			// bank.yaml is broken and has said so.
		case bank[loc] == nil:
			l.addf(file, field, "%q has no bank variables in %s/%s", loc, Dir, bankFile)
		default:
			locales = append(locales, loc)
		}
	}
	if len(y.Channels) == 0 {
		l.addf(file, "channels", "missing: list the channels the template has wording for")
	}
	var channels []intent.Channel
	for i, ch := range y.Channels {
		field := fmt.Sprintf("channels[%d]", i)
		switch {
		case !ch.Known():
			l.addf(file, field, "unknown channel %q (known: %s)", ch, joinChannels(intent.Channels))
		case slices.Contains(y.Channels[:i], ch):
			l.addf(file, field, "%q listed twice", ch)
		default:
			channels = append(channels, ch)
		}
	}
	for _, loc := range slices.Sorted(maps.Keys(y.Wording)) {
		if !slices.Contains(y.Locales, loc) {
			l.addf(file, "wording."+loc, "locale not listed under locales")
			continue
		}
		for _, ch := range slices.Sorted(maps.Keys(y.Wording[loc])) {
			if !slices.Contains(y.Channels, ch) {
				l.addf(file, "wording."+loc+"."+string(ch), "channel not listed under channels")
			}
		}
	}

	// The wording: every listed locale and channel, parsed and tried once.
	e := &entry{
		spec: intent.TemplateSpec{
			Locales:  slices.Clone(y.Locales),
			Channels: slices.Clone(y.Channels),
			Params:   slices.Clone(params),
			Types:    types,
		},
		optOut:  y.OptOutLink != nil && *y.OptOutLink,
		locales: make(map[string]*localized, len(locales)),
	}
	for _, loc := range locales {
		lz := &localized{bank: bank[loc], channels: make(map[intent.Channel]*wording, len(channels))}
		e.locales[loc] = lz
		c := checker{l: l, file: file, params: params, bank: bank[loc], used: map[string]bool{}}
		locBefore := len(l.problems)
		for _, ch := range channels {
			field := "wording." + loc + "." + string(ch)
			wy, ok := y.Wording[loc][ch]
			if !ok {
				l.addf(file, field, "missing: channels lists %s and locales lists %s", ch, loc)
				continue
			}
			lz.channels[ch] = c.wording(field, ch, wy)
		}
		if len(l.problems) > locBefore {
			continue // what is used is not known for sure
		}
		for _, p := range params {
			if !c.used[p] {
				l.addf(file, "wording."+loc, "param %q is declared but no %s wording uses it", p, loc)
			}
		}
	}
	if bad() {
		return nil
	}
	return e
}

// checker parses and checks the wording of one locale of one template.
type checker struct {
	l      *loader
	file   string
	params []string
	bank   map[string]string
	used   map[string]bool
}

// parts a channel's wording has; any other part set is a mistake.
var channelParts = map[intent.Channel][]string{
	intent.SMS:    {"text"},
	intent.Voice:  {"text"},
	intent.Email:  {"subject", "text", "html"},
	intent.WeChat: {"title", "fields"},
}

// htmlForbidden keeps e-mail HTML a self-contained fragment: no scripts, no
// external images, styles or frames (inline style attributes only).
var htmlForbidden = []string{"<script", "<style", "<link", "<img", "<iframe", "<object", "<embed", "<form", "<html", "<head", "<body", "src=", "url(", "@import"}

// smsOptOut catches an opt-out line written into SMS wording: the SMS
// adapter appends its own, and two would confuse the debtor.
var smsOptOut = []string{"退订", "回复td", "reply stop", "opt out", "opt-out"}

func (c *checker) wording(field string, ch intent.Channel, y wordingYAML) *wording {
	set := map[string]bool{
		"subject": y.Subject != "", "text": y.Text != "", "html": y.HTML != "",
		"title": y.Title != "", "fields": len(y.Fields) > 0,
	}
	want := channelParts[ch]
	for _, part := range []string{"subject", "text", "html", "title", "fields"} {
		switch {
		case slices.Contains(want, part) && !set[part]:
			c.l.addf(c.file, field+"."+part, "missing: %s wording needs %s", ch, strings.Join(want, ", "))
		case !slices.Contains(want, part) && set[part]:
			c.l.addf(c.file, field+"."+part, "not used by %s (it has %s)", ch, strings.Join(want, ", "))
		}
	}
	w := &wording{}
	switch ch {
	case intent.SMS, intent.Voice:
		w.text = c.text(field+".text", y.Text)
		if ch == intent.SMS {
			low := strings.ToLower(y.Text)
			for _, s := range smsOptOut {
				if strings.Contains(low, s) {
					c.l.addf(c.file, field+".text", "contains %q: the SMS sender appends the opt-out line itself", s)
				}
			}
		}
	case intent.Email:
		w.subject = c.text(field+".subject", y.Subject)
		w.text = c.text(field+".text", y.Text)
		w.html = c.html(field+".html", y.HTML)
		low := strings.ToLower(y.HTML)
		for _, s := range htmlForbidden {
			if strings.Contains(low, s) {
				c.l.addf(c.file, field+".html", "contains %q: the HTML must be a self-contained fragment with inline styles", s)
			}
		}
	case intent.WeChat:
		w.title = c.text(field+".title", y.Title)
		for i, f := range y.Fields {
			ff := fmt.Sprintf("%s.fields[%d]", field, i)
			if f.Key == "" {
				c.l.addf(c.file, ff+".key", "missing")
			}
			for _, g := range y.Fields[:i] {
				if f.Key != "" && g.Key == f.Key {
					c.l.addf(c.file, ff+".key", "%q listed twice", f.Key)
				}
			}
			if f.Value == "" {
				c.l.addf(c.file, ff+".value", "missing")
			}
			w.fields = append(w.fields, fieldTemplate{key: f.Key, value: c.text(ff+".value", f.Value)})
		}
	}
	return w
}

func (c *checker) text(field, src string) executor {
	if src == "" {
		return nil
	}
	t, err := template.New(field).Option("missingkey=error").Parse(strings.TrimSpace(src))
	if err != nil {
		c.l.addf(c.file, field, "%v", err)
		return nil
	}
	var trees []*parse.Tree
	for _, tt := range t.Templates() {
		trees = append(trees, tt.Tree)
	}
	c.check(field, trees, t)
	return t
}

func (c *checker) html(field, src string) executor {
	if src == "" {
		return nil
	}
	t, err := htmltemplate.New(field).Option("missingkey=error").Parse(strings.TrimSpace(src))
	if err != nil {
		c.l.addf(c.file, field, "%v", err)
		return nil
	}
	var trees []*parse.Tree
	for _, h := range t.Templates() {
		trees = append(trees, h.Tree)
	}
	c.check(field, trees, t)
	return t
}

// check walks the parsed wording for the placeholders it uses, then executes
// it once with a placeholder for every declared param. The walk sees branches
// the execution does not take; the execution catches whatever the walk cannot
// (html/template's escaping errors among them).
func (c *checker) check(field string, trees []*parse.Tree, t executor) {
	before := len(c.l.problems)
	for _, tree := range trees {
		if tree != nil {
			walk(tree.Root, func(ref []string) { c.ref(field, ref) })
		}
	}
	if len(c.l.problems) > before {
		return // already explained; executing would say it again, less clearly
	}
	data := make(map[string]any, len(c.params)+1)
	for _, p := range c.params {
		data[p] = "<" + p + ">"
	}
	data[bankKey] = c.bank
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		c.l.addf(c.file, field, "%v", err)
		return
	}
	if strings.TrimSpace(b.String()) == "" {
		c.l.addf(c.file, field, "renders empty")
	}
	if strings.Contains(b.String(), "ZgotmplZ") {
		// html/template's mark for a value it refused in that place, such as
		// a website that is not an http(s) URL.
		c.l.addf(c.file, field, "a placeholder is in a place HTML cannot hold it safely (renders ZgotmplZ)")
	}
}

// ref checks one placeholder path, {{.a.b}} being [a b].
func (c *checker) ref(field string, ref []string) {
	p := "{{." + strings.Join(ref, ".") + "}}"
	switch {
	case ref[0] == bankKey && len(ref) == 1:
		c.l.addf(c.file, field, "%s: name one bank variable, as {{.bank.name}}", p)
	case ref[0] == bankKey:
		if _, ok := c.bank[ref[1]]; !ok {
			c.l.addf(c.file, field, "%s: no bank variable %q in %s/%s", p, ref[1], Dir, bankFile)
		} else if len(ref) > 2 {
			c.l.addf(c.file, field, "%s: bank variables are text, they have no parts", p)
		}
	case !slices.Contains(c.params, ref[0]):
		c.l.addf(c.file, field, "%s: %q is not a declared param (params: %s)", p, ref[0], strings.Join(c.params, ", "))
	case len(ref) > 1:
		c.l.addf(c.file, field, "%s: params are text, they have no parts", p)
	default:
		c.used[ref[0]] = true
	}
}

// walk calls f with the path of every field placeholder in the tree, {{.a.b}}
// and {{$.a.b}} alike. Inside {{with}} and {{range}} dot is no longer the
// data, but a field there fails anyway: params and bank variables are text.
func walk(n parse.Node, f func([]string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, m := range n.Nodes {
			walk(m, f)
		}
	case *parse.ActionNode:
		walk(n.Pipe, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, cmd := range n.Cmds {
			walk(cmd, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, f)
		}
	case *parse.ChainNode:
		walk(n.Node, f)
	case *parse.FieldNode:
		f(n.Ident)
	case *parse.VariableNode:
		if n.Ident[0] == "$" && len(n.Ident) > 1 {
			f(n.Ident[1:])
		}
	case *parse.IfNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.WithNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.RangeNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.TemplateNode:
		walk(n.Pipe, f)
	}
}
