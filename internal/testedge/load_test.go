package testedge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadCountsAnswersAndFailures(t *testing.T) {
	var n, posted atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posted.Add(1)
		}
		if n.Add(1)%3 == 0 {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Slot", "4001")
	}))
	defer srv.Close()

	l := RunLoad(t.Context(), LoadOptions{URL: srv.URL, Clients: 4, Method: http.MethodPost, Body: []byte("x")})
	// Enough requests to count a third of, however slowly a busy machine
	// serves them.
	WaitFor(t, "30 requests at the server", func() bool { return n.Load() >= 30 })
	s := l.Stop()
	t.Log(s)
	if s.Requests < 30-4 { // Stop does not count the 4 clients' requests it cuts
		t.Fatalf("%d requests counted, the server saw %d", s.Requests, n.Load())
	}
	if s.Requests != s.Failed+s.BySlot["4001"] {
		t.Errorf("requests %d != failed %d + answered %d", s.Requests, s.Failed, s.BySlot["4001"])
	}
	if s.Failed != s.Errors["status 502"] || s.Failed < s.Requests/3-4 {
		t.Errorf("failed %d, errors %v: want about a third as status 502", s.Failed, s.Errors)
	}
	if posted.Load() != n.Load() {
		t.Errorf("server saw %d POSTs of %d requests", posted.Load(), n.Load())
	}
	if again := l.Stop(); again.Requests != s.Requests {
		t.Errorf("second Stop: %d requests, want %d", again.Requests, s.Requests)
	}
}

// TestLoadSteadyKeepsItsPaceOn5xx: by default a client pauses 10 ms after
// a failure; a steady one does not after a 5xx answer.
func TestLoadSteadyKeepsItsPaceOn5xx(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad build", http.StatusInternalServerError)
	}))
	defer srv.Close()
	// count runs the load for about 100 ms and says how long it ran: a
	// busy machine oversleeps.
	count := func(steady bool) (LoadStats, time.Duration) {
		start := time.Now()
		l := RunLoad(t.Context(), LoadOptions{URL: srv.URL, Clients: 2, Steady: steady})
		time.Sleep(100 * time.Millisecond) // the load under test runs for 100 ms: not a wait for progress
		return l.Stop(), time.Since(start)
	}
	paced, ran := count(false)
	steady, _ := count(true)
	t.Logf("paced (%s): %s; steady: %s", ran.Round(time.Millisecond), paced, steady)
	// Paced: at most one request per client per 10 ms pause, and one more.
	if most := 2 * (int64(ran/(10*time.Millisecond)) + 2); paced.Requests > most || paced.Failed != paced.Errors["status 500"] {
		t.Errorf("paced: %s in %s, want at most %d requests, all status 500", paced, ran.Round(time.Millisecond), most)
	}
	if steady.Requests < 3*paced.Requests || steady.Failed != steady.Errors["status 500"] {
		t.Errorf("steady: %s, want at least 3 times the paced %d requests, all status 500", steady, paced.Requests)
	}
}

// TestLoadFromCountsOnlyRequestsSentAfter: an answer to a request sent
// before From is not in From's count, however late it comes.
func TestLoadFromCountsOnlyRequestsSentAfter(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			close(held)
			<-release
			w.Header().Set("X-Slot", "before")
			return
		}
		w.Header().Set("X-Slot", "after")
	}))
	defer srv.Close()
	l := RunLoad(t.Context(), LoadOptions{URL: srv.URL, Clients: 1})
	<-held
	sentAfter := l.From()
	close(release)
	WaitFor(t, "an answer to a request sent after From", func() bool { return sentAfter().Requests > 0 })
	all, from := l.Stop(), sentAfter()
	if all.BySlot["before"] != 1 || from.BySlot["before"] != 0 || from.Requests != from.BySlot["after"] {
		t.Errorf("all: %s; from: %s; want the answer to the request sent before From counted in all alone", all, from)
	}
}

func TestLoadDialsOnlyLoopback(t *testing.T) {
	l := RunLoad(t.Context(), LoadOptions{URL: "http://192.0.2.1:80", Clients: 2})
	WaitFor(t, "a failed request", func() bool { return l.Snapshot().Failed > 0 })
	s := l.Stop()
	if s.Failed == 0 || s.Failed != s.Errors[errNotLoopback.Error()] {
		t.Errorf("got %v, want only %q failures", s, errNotLoopback)
	}
}

func TestLoadStopsWithContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	l := RunLoad(ctx, LoadOptions{URL: srv.URL, Clients: 2})
	<-ctx.Done()
	done := make(chan LoadStats)
	go func() { done <- l.Stop() }()
	select {
	case s := <-done:
		if s.Failed != 0 || !strings.Contains(s.String(), "0 failed") {
			t.Errorf("got %v, want no failures from the context ending", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("load still running 5s after its context ended")
	}
}
