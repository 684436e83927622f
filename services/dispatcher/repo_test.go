package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/contactd/dispatcher/pkg/testenv"
)

// wallClockAllowed names every place outside the composition root that may
// read the wall clock (time.Now, called or taken as a function value), as
// "path:function", with the reason. A decision or a stored time takes the
// clock it is handed; what is listed here measures durations, sets socket
// deadlines, is a default clock the composition root replaces, or is a test
// double or test helper stamping what it saw.
var wallClockAllowed = map[string]string{
	"pkg/channel/breaker/breaker.go:New":                      "default clock; the root injects its own",
	"pkg/channel/breaker/breaker.go:Send":                     "measures a call's duration",
	"pkg/channel/email/email.go:New":                          "default clock; the root injects its own",
	"pkg/channel/ratelimit/ratelimit.go:New":                  "default clock; the root injects its own",
	"pkg/channel/sandbox/sandbox.go:New":                      "default clock; the root injects its own",
	"pkg/channel/twilio/twilio.go:newCaller":                  "default clock; the root injects its own",
	"pkg/channel/wechat/wechat.go:New":                        "default clock; the root injects its own",
	"pkg/kafkaio/replay.go:replayPartition":                   "a socket read deadline",
	"services/dispatcher/internal/httpapi/server.go:New":      "default clock; the root injects its own",
	"services/dispatcher/internal/worker/worker.go:New":       "default clock; the root injects its own",
	"services/dispatcher/internal/worker/decide.go:call":      "measures a provider call's duration",
	"services/dispatcher/internal/scheduler/scheduler.go:New": "default clock; the root injects its own",
}

// wallClockFreeDirs are test doubles and test helpers: they stamp what they
// received as a real provider would, or bound a wait.
var wallClockFreeDirs = []string{
	"pkg/testenv/",
	"pkg/channel/twilio/twiliotest/",
	"pkg/channel/email/smtptest/",
	"pkg/channel/wechat/wechattest/",
}

// TestNoWallClockOutsideRoot parses every non-test Go file under pkg/ and
// services/dispatcher/internal/ and fails on a read of time.Now that is not
// allowed above, so a decision that reads the wall clock fails CI the day it
// is written instead of on a later date. It also fails on an allowance that
// no longer matches anything, so the list stays true.
func TestNoWallClockOutsideRoot(t *testing.T) {
	root := deployRoot(t)
	used := map[string]bool{}
	var bad []string
	for _, dir := range []string{"pkg", "services/dispatcher/internal"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			for _, free := range wallClockFreeDirs {
				if strings.HasPrefix(rel, free) {
					return nil
				}
			}
			for _, site := range wallClockReads(t, path) {
				key := rel + ":" + site.fn
				if _, ok := wallClockAllowed[key]; ok {
					used[key] = true
					continue
				}
				bad = append(bad, rel+":"+site.line+" (in "+site.fn+")")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bad {
		t.Errorf("%s reads the wall clock: take the injected clock or the time you are handed (or allow it in wallClockAllowed with the reason)", b)
	}
	var stale []string
	for k := range wallClockAllowed {
		if !used[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	for _, k := range stale {
		t.Errorf("wallClockAllowed[%q] matches no read of the wall clock any more: remove it", k)
	}
}

type clockRead struct{ fn, line string }

// wallClockReads lists the uses of time.Now in one file (through whatever
// name the file imports "time" as), each with its enclosing function.
func wallClockReads(t *testing.T, path string) []clockRead {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	timeName := ""
	for _, imp := range f.Imports {
		if imp.Path.Value == `"time"` {
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
		}
	}
	if timeName == "" || timeName == "_" {
		return nil
	}
	var out []clockRead
	for _, decl := range f.Decls {
		name := "(package level)"
		if fd, ok := decl.(*ast.FuncDecl); ok {
			name = fd.Name.Name
		}
		ast.Inspect(decl, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Now" {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == timeName {
				p := fset.Position(sel.Pos())
				out = append(out, clockRead{fn: name, line: strconv.Itoa(p.Line)})
			}
			return true
		})
	}
	return out
}

// TestNoLargeTrackedFiles fails when the repository tracks a file over 1 MB
// (a build output, a dump): binaries go to the ignored bin/. A fixture that
// must be larger is named here with its reason.
func TestNoLargeTrackedFiles(t *testing.T) {
	allowed := map[string]string{}
	root := deployRoot(t)
	git, err := exec.LookPath("git")
	if err != nil {
		testenv.Missing(t, "git (to list the tracked files)")
	}
	cmd := exec.Command(git, "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(root, ".git")); statErr != nil {
			testenv.Missing(t, "a git work tree (to list the tracked files)")
		}
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	if len(files) < 10 {
		t.Fatalf("git ls-files listed %d files; expected the whole tree", len(files))
	}
	const limit = 1 << 20
	for _, f := range files {
		fi, err := os.Lstat(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the work tree, not yet in the index
		}
		if fi.Size() > limit {
			if _, ok := allowed[f]; !ok {
				t.Errorf("%s is tracked and %d bytes (over 1 MB): build outputs belong in the ignored bin/; a fixture this large needs an entry in the allow-list", f, fi.Size())
			}
		}
	}
}
