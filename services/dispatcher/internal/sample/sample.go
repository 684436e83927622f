// Package sample makes realistic reminder intents for dev mode, the produce
// command, benchmarks and tests: Chinese names and amounts, valid +86
// mobiles, mixed channels and templates. Deterministic for a given seed.
package sample

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/contactd/dispatcher/pkg/intent"
)

var (
	surnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "林", "罗", "高"}
	given    = []string{"伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀兰", "霞", "平", "刚", "桂英", "建华", "志强"}
	pinyin   = []string{"wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou"}
	// mobile prefixes of the three carriers (numbers valid under libphonenumber)
	prefixes  = []string{"130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "156", "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "185", "186", "187", "188", "189", "199"}
	domains   = []string{"example.cn", "example.com", "mail.example.cn"}
	templates = []string{"overdue_notice", "payment_due_soon", "promise_to_pay_reminder"}
	mixes     = [][]intent.Channel{
		{intent.SMS}, {intent.SMS}, {intent.SMS}, {intent.SMS, intent.WeChat},
		{intent.WeChat, intent.SMS}, {intent.Email}, {intent.Email, intent.SMS},
		{intent.Voice}, {intent.SMS, intent.WeChat, intent.Email, intent.Voice},
	}
)

// Generator makes intents.
type Generator struct {
	r       *rand.Rand
	debtors int
	now     time.Time
	entropy *ulid.MonotonicEntropy
}

// New returns a generator over debtors distinct debtors.
func New(seed uint64, debtors int, now time.Time) *Generator {
	if debtors <= 0 {
		debtors = 1000
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	src := rand.NewChaCha8(key)
	return &Generator{r: rand.New(src), debtors: debtors, now: now, entropy: ulid.Monotonic(src, 0)}
}

// Next returns a new valid intent with a fresh id.
func (g *Generator) Next() intent.Intent {
	d := g.r.IntN(g.debtors)
	name := surnames[d%len(surnames)] + given[(d/len(surnames))%len(given)]
	phone := fmt.Sprintf("+86%s%08d", prefixes[d%len(prefixes)], (d*7919)%100000000)
	tpl := templates[g.r.IntN(len(templates))]
	amount := fmt.Sprintf("%s.%02d", thousands(200+g.r.IntN(50000)), g.r.IntN(100))
	due := g.now.AddDate(0, 0, g.r.IntN(20)-10).Format("2006-01-02")
	params := map[string]string{"name": name, "amount": amount, "due_date": due}
	if tpl == "promise_to_pay_reminder" {
		params = map[string]string{"name": name, "amount": amount, "promise_date": due}
	}
	locale := "zh-CN"
	if g.r.IntN(10) == 0 {
		locale = "en"
	}
	exp := g.now.Add(7 * 24 * time.Hour).UTC().Truncate(time.Second)
	return intent.Intent{
		ID:       ulid.MustNew(ulid.Timestamp(g.now), g.entropy).String(),
		DebtorID: fmt.Sprintf("D-%06d", d),
		DebtID:   fmt.Sprintf("L-2026-%06d", d*3+1),
		Template: tpl,
		Locale:   locale,
		Channels: mixes[g.r.IntN(len(mixes))],
		Fallback: true,
		To: intent.Address{
			Phone:        phone,
			Email:        fmt.Sprintf("%s%d@%s", pinyin[d%len(pinyin)], d, domains[d%len(domains)]),
			WeChatOpenID: fmt.Sprintf("oX1%012d", d),
		},
		Params:    params,
		Timezone:  "Asia/Shanghai",
		ExpiresAt: &exp,
	}
}

func thousands(n int) string {
	if n < 1000 {
		return fmt.Sprint(n)
	}
	return thousands(n/1000) + fmt.Sprintf(",%03d", n%1000)
}
