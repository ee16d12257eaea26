package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edgeswitch/edgeswitch/swap"
)

// printer writes progress for people on stderr, one line per step with its
// duration, and results on stdout; with --json, JSON lines on stdout.
type printer struct {
	stdout, stderr io.Writer
	json           bool
	live           bool // stderr is a terminal: show a live poll counter
	polling        bool // a poll line is on screen, to be overwritten
}

func newPrinter(stdout, stderr io.Writer, asJSON bool) *printer {
	f, ok := stderr.(*os.File)
	live := false
	if ok {
		if fi, err := f.Stat(); err == nil {
			live = fi.Mode()&os.ModeCharDevice != 0
		}
	}
	return &printer{stdout: stdout, stderr: stderr, json: asJSON, live: live}
}

func (p *printer) event(ev swap.Event) {
	if p.json {
		if ev.Poll == 0 {
			p.line(map[string]any{"event": ev})
		}
		return
	}
	switch {
	case ev.Poll > 0:
		if p.live {
			fmt.Fprintf(p.stderr, "\r\033[K%-9s  poll %d: %s", ev.Step, ev.Poll, oneLine(ev.Detail))
			p.polling = true
		}
		return
	case ev.Diff != "":
		fmt.Fprint(p.stdout, ev.Diff)
		return
	}
	if p.polling {
		fmt.Fprint(p.stderr, "\r\033[K")
		p.polling = false
	}
	mark := ""
	switch {
	case ev.Failed:
		mark = "FAILED "
	case ev.Warn:
		mark = "warning: "
	}
	took := ""
	if ev.Took > 0 || (!ev.Warn && ev.Step != "rollback") {
		took = fmt.Sprintf("%6.3fs", ev.Took.Seconds())
	}
	fmt.Fprintf(p.stderr, "%-9s %7s  %s%s\n", ev.Step, took, mark, ev.Detail)
}

func (p *printer) result(r swap.Result, dryRun bool) {
	if p.json {
		p.line(map[string]any{"result": r})
		return
	}
	switch {
	case r.Unchanged:
		fmt.Fprintf(p.stderr, "slot %d is live; nothing to do\n", r.To)
	case dryRun:
		fmt.Fprintf(p.stderr, "dry run: nothing was started, written or reloaded\n")
	default:
		fmt.Fprintf(p.stderr, "switched to slot %d\n", r.To)
	}
}

func (p *printer) fail(err error) {
	if p.json {
		p.line(map[string]any{"error": err.Error(), "exit": swap.ExitCode(err)})
	}
	fmt.Fprintln(p.stderr, "edgeswitch:", err)
}

func (p *printer) line(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(p.stdout, "%s\n", b)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}
