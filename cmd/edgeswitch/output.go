package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
			fmt.Fprintf(p.stderr, "\r\033[K%-9s  poll %d: %s", ev.Step, ev.Poll, oneLine(printable(ev.Detail)))
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
	fmt.Fprintf(p.stderr, "%-9s %7s  %s%s\n", ev.Step, took, mark, printable(ev.Detail))
}

func (p *printer) result(r swap.Result, dryRun bool) {
	if p.json {
		// Slots by port, as the history names them.
		p.line(map[string]any{"result": map[string]any{
			"From": r.From.Port, "To": r.To.Port, "Unchanged": r.Unchanged, "Diff": r.Diff, "Draining": r.Draining,
		}})
		return
	}
	switch {
	case r.Unchanged:
		fmt.Fprintf(p.stderr, "slot %d is live; nothing to do\n", r.To.Port)
	case dryRun:
		fmt.Fprintf(p.stderr, "dry run: nothing was started, written or reloaded\n")
	default:
		fmt.Fprintf(p.stderr, "switched to slot %d\n", r.To.Port)
	}
}

// statuses prints the status of each app: for one app, as status does;
// for several, {"apps": [...]} with --json, else a block per app under its
// name.
func (p *printer) statuses(sts []*swap.Status) {
	if len(sts) == 1 {
		p.status(sts[0])
		return
	}
	if p.json {
		p.line(map[string]any{"apps": sts})
		return
	}
	for i, st := range sts {
		if i > 0 {
			p.blank()
		}
		p.heading("app " + st.App)
		p.status(st)
	}
}

// heading and blank set the apps' blocks of text apart; JSON has none.
func (p *printer) heading(s string) {
	if !p.json {
		fmt.Fprintf(p.stdout, "== %s\n", s)
	}
}

func (p *printer) blank() {
	if !p.json {
		fmt.Fprintln(p.stdout)
	}
}

func (p *printer) status(st *swap.Status) {
	if p.json {
		p.line(st)
		return
	}
	w := p.stdout
	fmt.Fprintf(w, "upstream  %s at %s:%d\n", st.Upstream, st.File, st.Line)
	if l := st.Link; l != nil {
		fmt.Fprintf(w, "link      %s -> %s\n", l.Path, cmp.Or(l.Target, "(none yet)"))
	}
	switch {
	case st.Live != nil:
		fmt.Fprintf(w, "live      slot %d\n", *st.Live)
	default:
		fmt.Fprintf(w, "live      none alone: the upstream lists %v\n", st.Listed)
	}
	for _, s := range st.Slots {
		health := ""
		if s.Active == "active" {
			health = "  unhealthy: " + printable(s.Answer)
			if s.Healthy {
				health = "  healthy: " + printable(s.Answer)
			}
		}
		since := ""
		if s.Since != nil {
			since = " since " + s.Since.UTC().Format(time.DateTime)
		}
		boot := ""
		if s.Enabled {
			boot = ", enabled"
		}
		fmt.Fprintf(w, "slot %-4d %s  %s (%s)%s%s%s\n", s.Port, s.Unit, s.Active, s.Sub, boot, since, health)
	}
	switch pd := st.Pending; {
	case st.Switching != 0 && pd != nil && pd.BakeUntil != "":
		fmt.Fprintf(w, "switching switch %d -> %d (pid %d) bakes slot %d until %s, slot %d kept running: watching its health, its unit and nginx's failed requests to it\n",
			pd.From, pd.To, st.Switching, pd.To, pd.BakeUntil, pd.From)
	case st.Switching != 0 && pd != nil:
		fmt.Fprintf(w, "switching switch %d -> %d in progress (pid %d) since %s\n", pd.From, pd.To, st.Switching, pd.Time)
	case st.Switching != 0:
		fmt.Fprintf(w, "switching a switch is in progress (pid %d)\n", st.Switching)
	}
	n := st.Nginx
	fmt.Fprintf(w, "nginx     %s %s, master %d, %d workers, %d shutting down\n", n.Unit, n.Active, n.MasterPID, n.Workers, n.Draining)
	if len(st.History) == 0 {
		fmt.Fprintln(w, "history   none")
	}
	for i, r := range st.History {
		label := "          "
		if i == 0 {
			label = "history   "
		}
		total := 0.0
		for _, s := range r.Steps {
			total += s.Seconds
		}
		fmt.Fprintf(w, "%s%s  %s -> %d  %s  %.2fs  %s\n", label, r.Time, r.FromText(), r.To, r.Result, total, r.Login)
	}
	for _, pr := range st.Problems {
		fmt.Fprintf(w, "problem   %s\n", printable(pr))
	}
	for _, wr := range st.Warnings {
		fmt.Fprintf(w, "warning   %s\n", printable(wr))
	}
}

func (p *printer) checklist(items []swap.CheckItem) {
	if p.json {
		for _, it := range items {
			p.line(it)
		}
		return
	}
	for _, it := range items {
		mark := "ok  "
		if !it.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(p.stdout, "%s  %-40s %s\n", mark, it.Name, printable(it.Detail))
	}
}

func (p *printer) fail(err error) {
	// status's object already holds its problems: a second JSON value
	// would break a script that reads stdout as one document.
	if p.json && !errors.Is(err, errAtRisk) {
		p.line(map[string]any{"error": err.Error(), "exit": swap.ExitCode(err)})
	}
	fmt.Fprintln(p.stderr, "edgeswitch:", printable(err.Error()))
}

func (p *printer) line(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(p.stdout, "%s\n", b)
}

// printable escapes, as Go does (\x1b, \n, \u009b), what a terminal acts
// on: C0 and C1 control characters, DEL and bytes that are not UTF-8.
// The app's answers reach these lines (a health answer's status line and
// body), and ESC]0; would set the terminal's title, ESC[2K erase a line to
// fake "healthy". Tabs stay; --json needs none of this.
func printable(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r != '\t' && (r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}
