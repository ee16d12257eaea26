package swap

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

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

// appendHistory appends r to the history in stateDir and, when journald is
// there, logs it as a structured entry.
func appendHistory(stateDir string, r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := filepath.Join(stateDir, historyFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("history: %s %w: remove it", path, atomicfile.ErrSymlink)
	}
	if err != nil {
		return fmt.Errorf("history: %w", err)
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

// History returns the recorded attempts of app, oldest first.
func History(stateDir, app string) ([]Record, error) {
	data, err := readOwn(filepath.Join(stateDir, historyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var rs []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var r Record
		// Records from before apps had names carry only their upstream,
		// which named the one app.
		if json.Unmarshal(sc.Bytes(), &r) == nil && cmp.Or(r.App, r.Upstream) == app {
			rs = append(rs, r)
		}
	}
	return rs, sc.Err()
}
