package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

func TestManPageHasEverySectionCommandAndFlag(t *testing.T) {
	page, app := generate(t, "man")
	for _, h := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "FILES", "EXIT STATUS", "ENVIRONMENT"} {
		if !strings.Contains(page, "\n.SH "+h+"\n") {
			t.Errorf("no .SH %s", h)
		}
	}
	for _, c := range commandTree(app.Node)[1:] {
		if !strings.Contains(page, "\n.SS "+roff(commandPath(c))+"\n") {
			t.Errorf("command %s has no .SS", commandPath(c))
		}
	}
	for _, f := range allFlags(app) {
		if !strings.Contains(page, `\fB`+roff("--"+f.Name)+`\fR`) {
			t.Errorf("flag --%s is missing", f.Name)
		}
	}
	for _, want := range []string{
		`\fB\-c\fR, \fB\-\-config\fR=\fIFILE\fR`,
		`Default: /etc/nginx/nginx.conf.`,
		`/etc/edgeswitch/edgeswitch.toml`,
		`/var/lib/edgeswitch/history.jsonl`,
		`EDGESWITCH_CONFIG`,
		`upstream, nginx\-conf,`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("%q is missing", want)
		}
	}
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, "'") {
			t.Errorf("a line starts with a quote: %q", l)
		}
	}
}

// TestManPageRenders formats the page with whichever formatter is installed
// and wants no warning and the flags spelled as users type them.
func TestManPageRenders(t *testing.T) {
	page, _ := generate(t, "man")
	var cmd *exec.Cmd
	switch {
	case lookPath("groff"):
		cmd = exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=200n")
	case lookPath("mandoc"):
		cmd = exec.Command("mandoc", "-Tutf8", "-Wwarning")
	case lookPath("man"):
		cmd = exec.Command("man", "-l", "-")
		cmd.Env = append(cmd.Environ(), "MANPAGER=cat", "MANWIDTH=200")
	default:
		t.Skip("none of groff, mandoc or man is installed")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(page), &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	// Bold and italics come as overstrikes from grotty: drop them.
	text := stripOverstrike(stdout.String())
	// Debian maps \- to the ASCII hyphen-minus for man pages; others draw a minus sign.
	text = strings.ReplaceAll(text, "\u2212", "-")
	for _, want := range []string{"NAME", "edgeswitch - zero-downtime", "EXIT STATUS", "--dry-run", "-c, --config=FILE", "history.jsonl"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered page has no %q:\n%s", want, text)
		}
	}
}

func lookPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// stripOverstrike removes the "x\bx" and "_\bx" sequences of bold and
// underlined text.
func stripOverstrike(s string) string {
	r := []rune(s)
	var out []rune
	for i := 0; i < len(r); i++ {
		if i+2 < len(r) && r[i+1] == '\b' {
			continue
		}
		if r[i] == '\b' {
			continue
		}
		out = append(out, r[i])
	}
	return string(out)
}

func TestManRoffEscapes(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"dashes", "--dry-run", `\-\-dry\-run`},
		{"a backslash", `a\b`, `a\eb`},
		{"a leading dot", ".conf files", `\&.conf files`},
		{"a leading quote", "'live' slot", `\&'live' slot`},
		{"a dot inside", "a.b", "a.b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := roff(tt.in); got != tt.want {
				t.Errorf("roff(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestManPageOfAGrammarWithNestedCommands(t *testing.T) {
	var b bytes.Buffer
	writeMan(&b, docsModel(t))
	page := b.String()
	for _, want := range []string{
		".SS remote add\n",
		`\fBtool remote add\fR [\fB\-\-mode\fR \fIMODE\fR] [\fB\-\-dir\fR \fIDIR\fR] \fIurl\fR`,
		"Also: new.",
		`\fB\-\-check\fR, \fB\-\-no\-check\fR`,
		"One of: fast, slow. Default: fast.",
		"\n\\&.starts with a dot.\n",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("%q is missing from:\n%s", want, page)
		}
	}
	for _, hidden := range []string{"secret", "debug"} {
		if strings.Contains(strings.ToLower(page), hidden) {
			t.Errorf("hidden %s is on the page", hidden)
		}
	}
}
