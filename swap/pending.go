package swap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/edgeswitch/edgeswitch/internal/atomicfile"
)

// Pending is the record of a switch that has started to write the upstream
// file and not finished. It lives in the state dir from just before the
// write until the switch is done or undone, so that a run after a crash
// (SIGKILL, power loss) knows which way the half-done switch was going.
type Pending struct {
	From int    `json:"from"`
	To   int    `json:"to"`
	File string `json:"file"`
	Time string `json:"time"`
	// BakeUntil is when a bake of the new slot ends, while one runs.
	BakeUntil string `json:"bake_until,omitempty"`
}

// file is the file the switch was changing, "" for no pending switch.
func (p *Pending) file() string {
	if p == nil {
		return ""
	}
	return p.File
}

func pendingFile(app string) string { return app + ".pending" }

func pendingPath(stateDir, app string) string {
	return filepath.Join(stateDir, pendingFile(app))
}

// readPending returns the pending record of app, or nil.
func readPending(stateDir, app string) (*Pending, error) {
	data, err := readOwn(pendingPath(stateDir, app))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p Pending
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%s: %w; remove it if no switch is running", pendingPath(stateDir, app), err)
	}
	return &p, nil
}

// writePending stores p durably before the upstream file is touched.
func writePending(stateDir, app string, p Pending) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return atomicfile.WriteOwn(pendingPath(stateDir, app), data, 0o644)
}

func clearPending(stateDir, app string) error {
	err := os.Remove(pendingPath(stateDir, app))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// readOwn reads one of edgeswitch's own files in the state dir, never
// through a symlink and never from anything but a regular file (a FIFO
// there would hang the read).
func readOwn(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s %w: remove it", path, atomicfile.ErrSymlink)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: remove it", path)
	}
	return io.ReadAll(f)
}
