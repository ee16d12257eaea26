package upstream

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tufanbarisyildirim/gonginx/config"
	"github.com/tufanbarisyildirim/gonginx/dumper"
	"github.com/tufanbarisyildirim/gonginx/parser"
)

// FuzzTo checks the editor's promise on any input gonginx parses: the edit
// either fails, or touches only the server directives of the one upstream
// (with the blanks, comment and line break of a removed line), and the result
// has the same structure apart from those servers, with only the target
// listed. The corpus it grows lives in testdata/fuzz/FuzzTo.
func FuzzTo(f *testing.F) {
	files, _ := filepath.Glob("../testdata/upstream/*/*.conf")
	files2, _ := filepath.Glob("../testdata/upstream/*/*/*")
	for _, p := range append(files, files2...) {
		if src, err := os.ReadFile(p); err == nil && bytes.Contains(src, []byte("upstream app")) {
			f.Add(src, true)
		}
	}
	f.Add([]byte("upstream app { server 127.0.0.1:4000; server 127.0.0.1:4001; }"), false)
	f.Add([]byte("http {\r\n upstream app {\r\n\tserver \"127.0.0.1:4001\" weight=2; # g\r\n }\r\n}"), true)

	f.Fuzz(func(t *testing.T, src []byte, toSecond bool) {
		before, err := structure(src)
		if err != nil {
			return
		}
		b, err := Parse("fuzz.conf", src, "app", slots)
		if err != nil {
			return
		}
		if !slices.ContainsFunc(b.Servers, func(s Server) bool { return !s.Standby }) {
			return // every server backup or down: To refuses it, and says so
		}
		to := slots[0]
		if toSecond {
			to = slots[1]
		}
		e, err := b.To(to, slots)
		if err != nil {
			t.Fatalf("To(%s) on a block Parse accepted: %v", to, err)
		}
		for _, ed := range e.edits {
			if !insideServer(b, ed.Start, ed.End) {
				t.Fatalf("edit [%d,%d) %q reaches outside the server directives of upstream app", ed.Start, ed.End, src[ed.Start:ed.End])
			}
		}
		after, err := Parse("fuzz.conf", e.New, "app", slots)
		if err != nil {
			t.Fatalf("edited config no longer parses: %v\n%s", err, e.New)
		}
		if got := after.Listed(); len(got) != 1 || got[0] != to {
			t.Fatalf("edited config lists %v, want only %s", got, to)
		}
		now, err := structure(e.New)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(before, now); d != "" {
			t.Fatalf("structure apart from the servers changed (-before +after):\n%s", d)
		}
	})
}

// insideServer reports whether [start, end) either lies in one server
// directive or covers whole server directives plus only blanks, line breaks
// and comments around them.
func insideServer(b *Block, start, end int) bool {
	for _, s := range b.Servers {
		if start >= s.start && end <= s.end {
			return true
		}
		if start <= s.start && end >= s.end && start >= b.open && end <= b.close {
			return onlyLayout(b.Src[start:s.start]) && onlyLayout(b.Src[s.end:end])
		}
	}
	return false
}

func onlyLayout(p []byte) bool {
	for len(p) > 0 {
		switch p[0] {
		case ' ', '\t', '\r', '\n':
			p = p[1:]
		case '#':
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return true
			}
			p = p[i:]
		default:
			return false
		}
	}
	return true
}

// structure is gonginx's reading of src without comments and without the
// server directives of upstream app, dumped in one canonical form.
func structure(src []byte) (string, error) {
	masked, err := mask(src)
	if err != nil {
		return "", err
	}
	c, err := parser.NewStringParser(string(masked), parser.WithSkipValidDirectivesErr(), parser.WithSkipComments()).Parse()
	if err != nil {
		return "", err
	}
	var strip func(ds []config.IDirective)
	strip = func(ds []config.IDirective) {
		for _, d := range ds {
			if u, ok := d.(*config.Upstream); ok && u.UpstreamName == "app" {
				u.UpstreamServers = nil
			} else if b := d.GetBlock(); b != nil {
				strip(b.GetDirectives())
			}
		}
	}
	strip(c.Block.Directives)
	return strings.TrimSpace(dumper.DumpConfig(c, dumper.NoIndentStyle)), nil
}
