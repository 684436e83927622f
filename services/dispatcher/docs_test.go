package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestConfigurationDoc: docs/configuration.md has one row per variable
// `dispatcher help` prints, with the same text, and no other.
func TestConfigurationDoc(t *testing.T) {
	var help bytes.Buffer
	if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, &help, io.Discard); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(DISPATCHER_[^`]+)` \\| (.*) \\|$").FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = strings.ReplaceAll(m[2], `\|`, "|")
	}
	if len(rows) == 0 {
		t.Fatal("docs/configuration.md has no variable rows")
	}
	for _, v := range envVars {
		if !strings.Contains(help.String(), v[0]+" ") {
			t.Errorf("dispatcher help does not print %s", v[0])
		}
		got, ok := rows[v[0]]
		switch {
		case !ok:
			t.Errorf("docs/configuration.md lacks %s (%s)", v[0], v[1])
		case got != v[1]:
			t.Errorf("docs/configuration.md says of %s:\n  %s\ndispatcher help says:\n  %s", v[0], got, v[1])
		}
		delete(rows, v[0])
	}
	for name := range rows {
		t.Errorf("docs/configuration.md lists %s, which dispatcher help does not", name)
	}
}
