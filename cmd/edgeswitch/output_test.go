package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/edgeswitch/edgeswitch/swap"
)

func TestPrintableEscapesWhatATerminalActsOn(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"plain text and tabs stay", "200 OK\tfine, ünïcode", "200 OK\tfine, ünïcode"},
		{"a title set", "\x1b]0;pwned\x07", `\x1b]0;pwned\a`},
		{"a line erased to fake healthy", "503\r\x1b[2Khealthy", `503\r\x1b[2Khealthy`},
		{"a new line", "one\ntwo", `one\ntwo`},
		{"DEL and C1 CSI", "\x7f\u009b2J", `\x7f\u009b2J`},
		{"a byte that is not UTF-8", "\x9b2J", `\x9b2J`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := printable(tt.in); got != tt.want {
				t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestAppTextIsEscapedForPeopleNotInJSON: a health answer with escapes is
// shown escaped by status and in an error line, and as it is in JSON.
func TestAppTextIsEscapedForPeopleNotInJSON(t *testing.T) {
	answer := "200 OK, body lacks \"ok\": \x1b]0;pwned\x07"
	st := &swap.Status{Upstream: "app", Slots: []swap.SlotStatus{{Port: 4000, Unit: "app@4000.service", Active: "active", Answer: answer}}}
	var out, errOut bytes.Buffer
	p := newPrinter(&out, &errOut, false)
	p.status(st)
	p.fail(errors.New(answer))
	if text := out.String() + errOut.String(); strings.ContainsAny(text, "\x1b\x07") || strings.Count(text, `\x1b]0;pwned\a`) != 2 {
		t.Errorf("human output holds the raw escapes, or not both escaped:\n%q", text)
	}
	out.Reset()
	newPrinter(&out, &errOut, true).status(st)
	if !strings.Contains(out.String(), `\u001b]0;pwned\u0007`) {
		t.Errorf("--json changed the answer: %s", out.String())
	}
}
