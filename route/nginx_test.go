package route

import (
	"errors"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDescribeCountsTheWorkers: status shows nginx's unit, its master and
// its workers, those still shutting down after a reload apart.
func TestDescribeCountsTheWorkers(t *testing.T) {
	w := newWorld(t)
	w.proc.start(803, masterID)
	for pid, cmdline := range map[int]string{masterID: "nginx: master process", 801: "nginx: worker process", 802: "nginx: worker process", 803: "nginx: worker process is shutting down"} {
		write(t, filepath.Join(w.proc.root, strconv.Itoa(pid), "cmdline"), []byte(cmdline))
	}
	got, err := w.r.Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Proxy{Unit: unit, Active: "active", MasterPID: masterID, Workers: 2, Draining: 1}, got); d != "" {
		t.Errorf("Describe (-want +got):\n%s", d)
	}

	t.Run("with no master to look at, the unit's state alone", func(t *testing.T) {
		w := newWorld(t)
		w.sd.state, w.sd.mainPID = "inactive", 0
		got, err := w.r.Describe(t.Context())
		if err != nil || got != (Proxy{Unit: unit, Active: "inactive"}) {
			t.Errorf("Describe = %+v, %v; want the inactive unit alone", got, err)
		}
	})
	t.Run("a unit whose state cannot be read fails", func(t *testing.T) {
		w := newWorld(t)
		w.sd.err = errors.New("connection closed")
		if _, err := w.r.Describe(t.Context()); err == nil {
			t.Error("Describe without the unit's state: no error")
		}
	})
}
