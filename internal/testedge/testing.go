package testedge

import (
	"context"
	"testing"
	"time"
)

// New starts an edge for a test, in t.TempDir() unless o.Dir is set, and
// closes it when the test ends. When nginx or systemd is missing the test
// fails, or is skipped with -short: a missing prerequisite must not look
// like a pass in a full run.
func New(t testing.TB, o Options) *Edge {
	t.Helper()
	if err := prerequisites(); err != nil {
		if testing.Short() {
			t.Skipf("testedge: %v", err)
		}
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
