package upstream

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tufanbarisyildirim/gonginx/config"
	"github.com/tufanbarisyildirim/gonginx/parser"
)

func TestMask(t *testing.T) {
	const (
		raw    = "raw"    // gonginx reads the input as it is like the masked input
		masked = "masked" // gonginx fails on the input as it is, or splits a word
	)
	for _, c := range []struct {
		name, in, want string
		gonginx        string // "" for fragments gonginx is not asked about
	}{
		{"nothing to mask", "location ~ \\.php$ { return 404; }", "location ~ \\.php$ { return 404; }", raw},
		{"escaped close brace (crossplane)", `location /\} {}`, `location /\_ {}`, masked},
		{"escaped open brace (crossplane)", `if ($request_method = A\{B) {}`, `if ($request_method = A\_B) {}`, masked},
		{"escaped semicolon", `location /a\;b { return 204; }`, `location /a\_b { return 204; }`, masked},
		{"escaped space and tab", "location /a\\ b\\\tc { return 204; }", "location /a\\_b\\_c { return 204; }", masked},
		{"escape at word start", `location \{ {}`, `location \_ {}`, masked},
		{"escaped backslash, then a brace of the word", `location /\\} {}`, `location /\\} {}`, ""},
		{"escaped backslash, then an escaped brace", `location /\\\} {}`, `location /\\\_ {}`, masked},
		{"escaped quote and hash in a word", `location /\"\'\# {}`, `location /\"\'\# {}`, raw},
		{"escape at the end of input", `location /\`, `location /\`, ""},
		{"escaped brace at the end of input", `location /\}`, `location /\_`, ""},
		{"escaped line break kept", "location /a\\\n{}\nlocation /\\}\r\n{}", "location /a\\\n{}\nlocation /\\_\r\n{}", masked},
		{"quoted escapes gonginx copes with", `return 200 "a\"b\}c\;'{;}"; add_header X 'a\'b';`, `return 200 "a\"b\}c\;'{;}"; add_header X 'a\'b';`, raw},
		{"escaped backslash before the closing quote", `return 200 "a\\"; return 200 'b\\\\';`, `return 200 "a\_"; return 200 'b\_\_';`, masked},
		{"escaped backslash then escaped quote", `return 200 "a\\\"b";`, `return 200 "a\_\"b";`, raw},
		{"comments are not touched", "# \\} \\\\\"\nlocation /\\} {} # \\{", "# \\} \\\\\"\nlocation /\\_ {} # \\{", masked},
		{"lua body blanked, escape outside masked",
			"content_by_lua_block { ngx.say(\"\\\\}\")\n}\nlocation /\\} {}",
			"content_by_lua_block {               \n}\nlocation /\\_ {}", masked},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := mask([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("mask(%q)\n = %q\nwant %q", c.in, got, c.want)
			}
			if len(got) != len(c.in) {
				t.Errorf("length %d, want %d", len(got), len(c.in))
			}
			for i := range got {
				if (got[i] == '\n') != (c.in[i] == '\n') {
					t.Errorf("line break moved at offset %d", i)
				}
			}
			if c.gonginx == "" {
				return
			}
			want, err := gonginxReads(got)
			if err != nil {
				t.Fatalf("gonginx does not parse the masked input: %v", err)
			}
			read, err := gonginxReads([]byte(c.in))
			if same := err == nil && read == want; same != (c.gonginx == raw) {
				t.Errorf("gonginx on the input as it is: %v, %q; masked: %q", err, read, want)
			}
		})
	}
}

func TestMaskScanError(t *testing.T) {
	// nginx rejects a word glued to a quoted string; mask says so rather than
	// hand gonginx a half-masked file.
	if _, err := mask([]byte(`return 200 "a\\"b; location /\} {}`)); err == nil {
		t.Error("mask accepted a quoted string followed by a word")
	}
}

func TestMaskKeepsSrc(t *testing.T) {
	src := []byte("location ~ \\.php$ {}")
	got, err := mask(src)
	if err != nil || &got[0] != &src[0] {
		t.Errorf("mask copied or failed on a file with nothing to mask: %v", err)
	}
}

// gonginxReads returns the shape of gonginx's reading of src: each
// directive's name and the lengths of its parameters (which mask keeps),
// with its block in braces.
func gonginxReads(src []byte) (string, error) {
	c, err := parser.NewStringParser(string(src), parser.WithSkipValidDirectivesErr(), parser.WithSkipComments()).Parse()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	var walk func(ds []config.IDirective)
	walk = func(ds []config.IDirective) {
		for _, d := range ds {
			b.WriteString(d.GetName())
			for _, p := range d.GetParameters() {
				fmt.Fprintf(&b, "/%d", len(p.GetValue()))
			}
			if blk := d.GetBlock(); blk != nil {
				b.WriteString("{")
				walk(blk.GetDirectives())
				b.WriteString("}")
			}
			b.WriteString(" ")
		}
	}
	walk(c.Block.Directives)
	return b.String(), nil
}
