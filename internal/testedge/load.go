package testedge

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LoadOptions configure RunLoad.
type LoadOptions struct {
	URL     string // base URL, e.g. Edge.URL(""); only loopback addresses are dialled
	Clients int    // concurrent clients, each with one keep-alive connection; default 1
	Method  string // GET (default) or POST
	Path    string // appended to URL; default "/"
	Body    []byte // request body for POST
	// Steady, when set, drops the pause after an answer with status >= 500
	// (a transport error still pauses): the clients keep their pace
	// whatever the server answers, as a population of users does, so that
	// the failures of two runs compare. Leave it off where a 502 from a
	// slot that is down would come back in microseconds and make the
	// clients spin.
	Steady bool
	// NoResend makes each client speak HTTP/1.1 itself over one keep-alive
	// connection and never send a request twice: one whose connection the
	// server closed under it fails, as wrk, curl scripts and many API
	// clients see it. Without it the clients are net/http's, which resends
	// an idempotent request (a GET) in that case and so hides the loss.
	NoResend bool
	// Dial, when set, makes the clients' connections instead of the host's
	// network, e.g. Machine.Dial for nginx on a machine's own loopback. The
	// URL's host must still be a loopback address (an IP, not a name).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// LoadStats count what the clients saw. A request fails on a transport
// error or a status >= 500.
type LoadStats struct {
	Requests, Failed int64
	BySlot           map[string]int64 // X-Slot of successful answers -> count
	Errors           map[string]int64 // kind of failure ("status 502", "connection reset", ...) -> count
}

// String is a one-line summary for test logs and the demo.
func (s LoadStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d failed", s.Requests, s.Failed)
	for _, k := range slices.Sorted(maps.Keys(s.BySlot)) {
		fmt.Fprintf(&b, "; slot %s: %d", k, s.BySlot[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Errors)) {
		fmt.Fprintf(&b, "; %s: %d", k, s.Errors[k])
	}
	return b.String()
}

// Load is a running load generator.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	stats  LoadStats
	from   []*window // counts begun by From
	stop   sync.Once
}

// window counts the requests sent after from.
type window struct {
	from  time.Time
	stats LoadStats
}

func newStats() LoadStats {
	return LoadStats{BySlot: map[string]int64{}, Errors: map[string]int64{}}
}

// RunLoad starts o.Clients goroutines that send requests back to back
// until ctx ends or Stop is called. Each client has its own transport with
// at most one idle connection, like a browser tab or a keep-alive API
// client, so a reload that closes idle connections shows up; net/http's
// own retry of idempotent requests on a dead keep-alive connection is left
// on, as real clients have it.
func RunLoad(ctx context.Context, o LoadOptions) *Load {
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{cancel: cancel, stats: newStats()}
	method := cmp.Or(o.Method, http.MethodGet)
	target := o.URL + cmp.Or(o.Path, "/")
	for range max(o.Clients, 1) {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.client(ctx, method, target, o.Body, o.Dial, o.Steady, o.NoResend)
		}()
	}
	return l
}

func (l *Load) client(ctx context.Context, method, target string, body []byte, dial func(context.Context, string, string) (net.Conn, error), steady, noResend bool) {
	dialContext := (&net.Dialer{Timeout: 5 * time.Second, Control: loopbackOnly}).DialContext
	if dial != nil {
		dialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := loopbackOnly(network, addr, nil); err != nil {
				return nil, err
			}
			return dial(ctx, network, addr)
		}
	}
	tr := &http.Transport{
		DialContext:         dialContext,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	do := func(req *http.Request) (*http.Response, error) {
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if noResend {
		raw := &rawClient{dial: dialContext}
		defer raw.close()
		do = raw.do
	}
	for ctx.Err() == nil {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		sent := time.Now()
		req, err := http.NewRequestWithContext(ctx, method, target, rd)
		if err != nil {
			l.record(sent, nil, err)
			return
		}
		resp, err := do(req)
		if err != nil && ctx.Err() != nil {
			return // cut short by Stop: not the server's failure
		}
		if l.record(sent, resp, err) && (err != nil || !steady) {
			// Do not spin on a server that is down: a 502 comes back in
			// microseconds, and counting thousands of them would measure
			// the client's loop, not the outage.
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// record counts one answer to a request sent at sent, also in each count
// From began before then, and reports whether it failed.
func (l *Load) record(sent time.Time, resp *http.Response, err error) (failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.from {
		if sent.After(w.from) {
			w.stats.count(resp, err)
		}
	}
	return l.stats.count(resp, err)
}

// count counts one answer and reports whether it failed.
func (s *LoadStats) count(resp *http.Response, err error) (failed bool) {
	s.Requests++
	switch {
	case err != nil:
		s.Errors[errKind(err)]++
	case resp.StatusCode >= 500:
		s.Errors["status "+strconv.Itoa(resp.StatusCode)]++
	default:
		s.BySlot[resp.Header.Get("X-Slot")]++
		return false
	}
	s.Failed++
	return true
}

func (s LoadStats) clone() LoadStats {
	s.BySlot = maps.Clone(s.BySlot)
	s.Errors = maps.Clone(s.Errors)
	return s
}

// Snapshot returns the counts so far.
func (l *Load) Snapshot() LoadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats.clone()
}

// From begins a count of the requests sent from now on, which the function
// it returns gives so far. Unlike the difference of two Snapshots it holds
// no answer to a request sent before, however late a busy machine lets a
// client count that answer.
func (l *Load) From() (counted func() LoadStats) {
	w := &window{from: time.Now(), stats: newStats()}
	l.mu.Lock()
	l.from = append(l.from, w)
	l.mu.Unlock()
	return func() LoadStats {
		l.mu.Lock()
		defer l.mu.Unlock()
		return w.stats.clone()
	}
}

// Stop ends the load, waits for the clients and returns the final counts.
// Requests cut short by Stop are not counted.
func (l *Load) Stop() LoadStats {
	l.stop.Do(func() {
		l.cancel()
		l.wg.Wait()
	})
	return l.Snapshot()
}

var errNotLoopback = errors.New("refused: not a loopback address")

// loopbackOnly keeps the load generator from ever hitting a real host.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", errNotLoopback, host)
	}
	return nil
}

// errKind folds an error into a few kinds, so Errors stays small.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errNotLoopback):
		return errNotLoopback.Error()
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
