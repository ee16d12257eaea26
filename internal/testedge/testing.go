package testedge

import (
	"context"
	"testing"
	"time"
)

// New starts an edge for a test, in t.TempDir() unless o.Dir is set, and
// closes it when the test ends.
//
// With -short it always skips the test, whether or not nginx and systemd
// are installed: an edge drives the shared systemd user manager and real
// nginx processes, which is what -short leaves out. Without -short a
// missing nginx or systemd fails the test: a missing prerequisite must not
// look like a pass in a full run.
func New(t testing.TB, o Options) *Edge {
	t.Helper()
	if testing.Short() {
		t.Skip("testedge: end-to-end test against nginx and the systemd user manager; -short skips it")
	}
	if err := prerequisites(); err != nil {
		t.Fatalf("testedge: %v", err)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("testedge: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("testedge: %v", err)
		}
	})
	return e
}

// WaitFor waits until ok, looking at once and every 10 ms, and fails the
// test if it has not held within 30 s. It is for a state a test must reach
// before it acts (a connection open, a worker gone): waiting for it is
// right on a busy machine, where a sleep would be too short.
func WaitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-deadline:
			t.Fatalf("no %s within 30 s", what)
		case <-tick.C:
		}
	}
}
