package swap

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/edgeswitch/edgeswitch/internal/atomicfile"
)

// Record is one switch attempt, one JSON line of the history file.
type Record struct {
	Time     string     `json:"time"` // RFC 3339
	App      string     `json:"app"`
	Upstream string     `json:"upstream"`
	From     *int       `json:"from"` // null for a first deploy: no slot was listed or running
	To       int        `json:"to"`
	Result   string     `json:"result"` // switched, unchanged, refused (exit 2), failed, rolled-back or stuck
	Error    string     `json:"error,omitempty"`
	Steps    []StepTime `json:"steps"`
	Login    string     `json:"user,omitempty"` // who ran it
}

// priority is the journal priority of the record: a switch that failed,
// was rolled back or got stuck is an error an operator must see.
func (r Record) priority() journal.Priority {
	if r.Result == "failed" || r.Result == "stuck" || r.Result == "rolled-back" {
		return journal.PriErr
	}
	return journal.PriInfo
}

// FromText is the slot switched from, or "none".
func (r Record) FromText() string {
	if r.From == nil {
		return "none"
	}
	return strconv.Itoa(*r.From)
}

// StepTime is how long one step took.
type StepTime struct {
	Step    string  `json:"step"`
	Seconds float64 `json:"seconds"`
}

const historyFile = "history.jsonl"

// The history is read by status and rollback, and anyone who can give a
// switch a long setting (a health path through sudo) or make a hook print
// a lot could otherwise write lines no reader takes: each field of a
// record is cut to maxField, and a line to maxLine, which the reader skips
// beyond.
const (
	maxField = 8 << 10
	maxLine  = 64 << 10
)

// cutMark ends a field that was cut.
const cutMark = "…(cut)"

// cut shortens s to at most n bytes, on a rune boundary, marked.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + cutMark
}

// line is r as one history line of at most maxLine bytes, its fields cut.
func (r Record) line() ([]byte, error) {
	r.App, r.Upstream, r.Login = cut(r.App, maxField), cut(r.Upstream, maxField), cut(r.Login, maxField)
	r.Error = cut(r.Error, maxField)
	for {
		line, err := json.Marshal(r)
		// JSON escapes control characters sixfold: cut the error further.
		if err != nil || len(line) <= maxLine || r.Error == "" {
			return line, err
		}
		r.Error = cut(r.Error, len(r.Error)/2)
	}
}

// appendHistory appends r to the history in stateDir and, when journald is
// there, logs it as a structured entry. The file is 0640: a switch's error
// may quote what a hook printed.
func appendHistory(stateDir string, r Record) error {
	line, err := r.line()
	if err != nil {
		return err
	}
	path := filepath.Join(stateDir, historyFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("history: %s %w: remove it", path, atomicfile.ErrSymlink)
	}
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o007 != 0 {
		_ = f.Chmod(fi.Mode().Perm() &^ 0o007) // one an earlier version made 0644
	}
	_, werr := f.Write(append(line, '\n'))
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if journal.Enabled() {
		msg := fmt.Sprintf("edgeswitch: upstream %s %s %s -> %d", r.Upstream, r.Result, r.FromText(), r.To)
		return journal.Send(msg, r.priority(), map[string]string{
			"EDGESWITCH_UPSTREAM": r.Upstream,
			"EDGESWITCH_FROM":     r.FromText(),
			"EDGESWITCH_TO":       strconv.Itoa(r.To),
			"EDGESWITCH_RESULT":   r.Result,
			"EDGESWITCH_RECORD":   string(line),
		})
	}
	return nil
}

// History returns the recorded attempts of app, oldest first. A line that
// is not a record or is longer than maxLine (a crash mid-write, an older
// version's unbounded line) is skipped, and warn (if not nil) is told so
// once: status and rollback must work whatever one line holds. A history
// the caller may not read (status by a user who is not root) is only
// warned of, too.
func History(stateDir, app string, warn func(string)) ([]Record, error) {
	path := filepath.Join(stateDir, historyFile)
	data, err := readOwn(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, os.ErrPermission) && warn != nil {
		warn(fmt.Sprintf("history: %s is root's (0640); run with sudo to see it", path))
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var rs []Record
	skipped, first := 0, 0
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r Record
		if len(line) > maxLine || json.Unmarshal(line, &r) != nil {
			if skipped++; skipped == 1 {
				first = n + 1
			}
			continue
		}
		// Records from before apps had names carry only their upstream,
		// which named the one app.
		if cmp.Or(r.App, r.Upstream) == app {
			rs = append(rs, r)
		}
	}
	if skipped > 0 && warn != nil {
		warn(fmt.Sprintf("history: skipped %d damaged or over-long lines of %s, the first at line %d; the records around them are read", skipped, path, first))
	}
	return rs, nil
}
