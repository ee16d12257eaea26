package swap

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/route"
)

// probeWith builds the health check of o against srv, as a switch would,
// and probes it once.
func probeWith(t *testing.T, srv *httptest.Server, client *http.Client, change func(*Options)) (bool, string) {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	o := defaults()
	o.HealthPath = "/health"
	change(&o)
	if err := o.Check(); err != nil {
		t.Fatal(err)
	}
	return newHealthCheck(o, o.slot(port), client).probe(t.Context())
}

func TestHealthSendsTheHostHeader(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "tpi.example.com" {
			http.Error(w, "no such site: "+r.Host, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	if ok, answer := probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthHost = "tpi.example.com" }); !ok {
		t.Errorf("with health-host: %s", answer)
	}
	if ok, answer := probeWith(t, srv, srv.Client(), func(*Options) {}); ok || !strings.Contains(answer, "404") {
		t.Errorf("without health-host: healthy %v, %s; want the 404 of the address as Host", ok, answer)
	}
}

func TestHealthOverHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the test
	srv.StartTLS()
	defer srv.Close()
	https := func(o *Options) { o.HealthScheme = "https" }
	// The CLI's client: the system's roots, which do not hold the
	// self-signed certificate of the slot.
	cli := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	ok, answer := probeWith(t, srv, cli, https)
	t.Logf("self-signed, not insecure: %s", answer)
	if ok || !strings.Contains(answer, "certificate") || !strings.Contains(answer, "health-insecure = true") {
		t.Errorf("self-signed, not insecure: healthy %v, %s; want a certificate error and the fix", ok, answer)
	}
	if ok, answer := probeWith(t, srv, cli, func(o *Options) { https(o); o.HealthInsecure = true }); !ok {
		t.Errorf("self-signed, insecure: %s", answer)
	}
	if ok, answer := probeWith(t, srv, &http.Client{}, func(o *Options) { https(o); o.HealthInsecure = true }); !ok {
		t.Errorf("self-signed, insecure, default transport: %s", answer)
	}
	if c := cli.Transport.(*http.Transport).TLSClientConfig; c != nil && c.InsecureSkipVerify {
		t.Error("health-insecure changed the shared client's transport; it must get one of its own")
	}
	// Over http the TLS slot answers 400: the scheme is what is asked for.
	if ok, answer := probeWith(t, srv, cli, func(*Options) {}); ok || !strings.Contains(answer, "400") {
		t.Errorf("http to a TLS slot: healthy %v, %s", ok, answer)
	}

	// A certificate that is trusted is verified against health-host (the
	// test certificate names example.com), not the slot's address.
	if ok, answer := probeWith(t, srv, srv.Client(), func(o *Options) { https(o); o.HealthHost = "example.com" }); !ok {
		t.Errorf("trusted certificate of health-host: %s", answer)
	}
	ok, answer = probeWith(t, srv, srv.Client(), func(o *Options) { https(o); o.HealthHost = "tpi.test:443" })
	t.Logf("another name: %s", answer)
	if ok || !strings.Contains(answer, "not tpi.test") || strings.Contains(answer, "health-insecure") {
		t.Errorf("trusted certificate of another name than health-host: healthy %v, %s", ok, answer)
	}
	if ok, answer := probeWith(t, srv, srv.Client(), https); !ok {
		t.Errorf("trusted certificate, no health-host: %s", answer)
	}
}

// A transport that is not an *http.Transport (a test's) is used as it is.
func TestHealthKeepsAnotherTransport(t *testing.T) {
	rt := roundTripper(func(*http.Request) (*http.Response, error) { return nil, errors.New("fake") })
	c := &http.Client{Transport: rt}
	if got := tlsClient(c, "", true); got != c {
		t.Error("tlsClient replaced a transport it cannot configure")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestHealthBodyMustHoldTheText(t *testing.T) {
	body := "\n  profile: api\nversion 2\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("empty") {
			return
		}
		if r.URL.Query().Has("long") {
			w.Write([]byte(strings.Repeat("x", healthBodyMax) + "tpi"))
			return
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()

	ok, answer := probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = new("tpi") })
	if want := `200 OK, body lacks "tpi": profile: api`; ok || answer != want {
		t.Errorf("body without the text: healthy %v, %q; want %q", ok, answer, want)
	}
	if ok, answer := probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = new("profile: api") }); !ok {
		t.Errorf("body with the text: %s", answer)
	}
	ok, answer = probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = new("tpi"); o.HealthPath = "/health?empty" })
	if want := `200 OK, body lacks "tpi": (empty body)`; ok || answer != want {
		t.Errorf("empty body: healthy %v, %q; want %q", ok, answer, want)
	}
	// The text must be in the first 64 KiB; the line shown is cut short.
	ok, answer = probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = new("tpi"); o.HealthPath = "/health?long" })
	if ok || len(answer) > 300 || !strings.HasSuffix(answer, "xxx...") {
		t.Errorf("text past 64 KiB: healthy %v, %q", ok, answer)
	}

	// A status that is not accepted is that status, as without health-body.
	bad := flaky(1 << 30)
	defer bad.Close()
	if ok, answer := probeWith(t, bad, bad.Client(), func(o *Options) { o.HealthBody = new("tpi") }); ok || answer != "503 Service Unavailable warming up" {
		t.Errorf("503 with health-body: healthy %v, %q", ok, answer)
	}
}

func TestHealthWaitShowsTheBodyOfTheLastAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("api up\n"))
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	o := defaults()
	o.HealthBody = new("tpi")
	h := newHealthCheck(o, o.slot(port), srv.Client())
	died := errors.New("tpi@4001.service is failed")
	_, err := h.wait(t.Context(), func() error { return died }, func(int, string) {})
	if err == nil || !strings.Contains(err.Error(), `last answer from http://`) || !strings.Contains(err.Error(), `200 OK, body lacks "tpi": api up`) {
		t.Errorf("wait = %v; want the last answer with the body's first line", err)
	}
}

func TestCheckRefusesBadHealthSettings(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		says   string
	}{
		{"a scheme that is not http or https", func(o *Options) { o.HealthScheme = "ftp" }, `health-scheme "ftp": set it to "http" or "https"`},
		{"an empty scheme", func(o *Options) { o.HealthScheme = "" }, `health-scheme ""`},
		{"insecure without https", func(o *Options) { o.HealthInsecure = true }, `health-insecure is for https slots: set health-scheme = "https" or drop it`},
		{"a host that is a URL", func(o *Options) { o.HealthHost = "https://tpi.example.com/" }, "health-host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaults()
			tt.change(&o)
			err := o.Check()
			if !errors.Is(err, ErrUsage) || ExitCode(err) != 2 || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("Check() = %v (exit %d), want ErrUsage saying %q", err, ExitCode(err), tt.says)
			}
		})
	}
	o := defaults()
	o.HealthScheme, o.HealthInsecure, o.HealthHost, o.HealthBody = "https", true, "tpi.example.com:8443", new("tpi")
	if err := o.Check(); err != nil {
		t.Errorf("https, insecure, a host and a body: %v", err)
	}
}

// starts records when each request of a client starts, on the client's
// side: the times are the poll schedule's own, not the server's.
type starts struct {
	mu    sync.Mutex
	at    []time.Time
	inner http.RoundTripper
}

func (s *starts) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	return s.inner.RoundTrip(r)
}

func (s *starts) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

// The first second is polled every 10 ms, at no more than about 100 polls;
// then every interval. Only the polls an interval apart are told and
// checked with alive. The bounds hold however slow the machine.
func TestHealthWaitPollsFastInTheFirstSecond(t *testing.T) {
	const interval = 100 * time.Millisecond
	var first atomic.Int64 // server's time of the first request, in ns
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().UnixNano()
		first.CompareAndSwap(0, now)
		if time.Duration(now-first.Load()) < 1400*time.Millisecond {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	rec := &starts{inner: srv.Client().Transport}
	h := healthFor(t, srv, interval)
	h.client = &http.Client{Transport: rec}

	var told, alive int
	begin := time.Now()
	n, err := h.wait(t.Context(), func() error { alive++; return nil }, func(int, string) { told++ })
	took := time.Since(begin)
	if err != nil {
		t.Fatal(err)
	}
	at := rec.times()
	if n != len(at) {
		t.Errorf("wait = %d polls; the server was asked %d times", n, len(at))
	}
	var inFirst, after int
	var slow []time.Duration // gaps after the first second
	for i, a := range at {
		since := a.Sub(begin)
		if since < fastFor {
			inFirst++
		} else {
			after++
		}
		// A gap that starts at the first second's end may still be a
		// fast one.
		if i > 0 && at[i-1].Sub(begin) >= fastFor+fastPoll {
			slow = append(slow, a.Sub(at[i-1]))
		}
	}
	t.Logf("%d polls in %s, %d in the first second; %d told, %d alive checks; gaps after the first second %v", n, took, inFirst, told, alive, slow)
	if inFirst > 110 {
		t.Errorf("%d polls in the first second; want at most about 100", inFirst)
	}
	// An interval alone gives at most 11 in the first second.
	if inFirst <= 11 {
		t.Errorf("%d polls in the first second; want more than the interval gives", inFirst)
	}
	if most := int((took-fastFor)/interval) + 2; after > most {
		t.Errorf("%d polls after the first second, in %s; want at most %d, one an interval", after, took-fastFor, most)
	}
	// Measured where the request is made, a gap is a little off the
	// schedule: the median is what is asserted.
	if len(slow) == 0 {
		t.Error("no poll after the first second")
	} else if slices.Sort(slow); slow[len(slow)/2] < interval*9/10 {
		t.Errorf("gaps after the first second %v; want the interval, %s", slow, interval)
	}
	// Told and checked once an interval: at most one more than the
	// intervals the wait lasted, and the last (healthy) poll is checked
	// but not told.
	if most := int(took/interval) + 1; told > most || told < 1 || alive != told+1 {
		t.Errorf("%d polls told, %d alive checks in %s; want 1 to %d told, and one more alive check", told, alive, took, most)
	}
}

// A poll that takes longer than the gap is followed by the next once it
// returns: polls never pile up.
func TestHealthWaitNeverOverlapsPolls(t *testing.T) {
	var inFlight, most atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(30 * time.Millisecond)
		http.Error(w, "warming up", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	h := healthFor(t, srv, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	n, err := h.wait(ctx, func() error { return nil }, func(int, string) {})
	if err == nil {
		t.Fatal("wait of a slot that never answers 200: no error")
	}
	if m := most.Load(); m != 1 || n > 11 {
		t.Errorf("%d polls of 30 ms in 300 ms, at most %d at once; want one at a time", n, m)
	}
}

// unixSlot serves handler on a unix socket in a temp dir, as a slot of
// socket mode, and counts its open connections.
func unixSlot(t *testing.T, handler http.HandlerFunc, tls bool) (Options, Slot, *httptest.Server, *atomic.Int32) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "4001.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener.Close()
	srv.Listener = l
	open := &atomic.Int32{}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	if tls {
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	o := defaults()
	o.HealthPath = "/health"
	return o, Slot{Port: 4001, Unit: o.SlotUnit(4001), Addr: route.Unix(path)}, srv, open
}

func TestHealthOverAUnixSocket(t *testing.T) {
	o, slot, _, open := unixSlot(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("host " + r.Host))
	}, false)
	path := slot.Addr.Name
	// The CLI's client, whose transport dials TCP.
	cli := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	h := newHealthCheck(o, slot, cli)
	if want := "http://localhost/health via " + path; h.url != want {
		t.Errorf("health check named %q, want %q", h.url, want)
	}
	o.HealthBody = new("host localhost")
	if ok, answer := newHealthCheck(o, slot, cli).probe(t.Context()); !ok {
		t.Errorf("over the socket, Host localhost: %s", answer)
	}
	o.HealthHost, o.HealthBody = "tpi.example.com", new("host tpi.example.com")
	if ok, answer := newHealthCheck(o, slot, &http.Client{}).probe(t.Context()); !ok {
		t.Errorf("over the socket with health-host, default transport: %s", answer)
	}
	if cli.Transport.(*http.Transport).DialContext != nil {
		t.Error("the socket changed the shared client's transport; it must get one of its own")
	}
	// No connection is left open to the slot: a drain counts them.
	deadline := time.Now().Add(10 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d connections to the slot left open after the probes", n)
	}

	// Messages name the socket.
	died := errors.New("tpi@4001.service is failed")
	_, err := h.wait(t.Context(), func() error { return died }, func(int, string) {})
	if err == nil || !strings.Contains(err.Error(), "yet http://localhost/health via "+path+" answered 200 OK: another process holds the socket") {
		t.Errorf("wait = %v; want the socket named", err)
	}
	gone := slot
	gone.Addr = route.Unix(filepath.Join(filepath.Dir(path), "4002.sock"))
	if ok, answer := newHealthCheck(o, gone, cli).probe(t.Context()); ok || !strings.Contains(answer, "4002.sock") {
		t.Errorf("no socket: healthy %v, %s; want the socket named", ok, answer)
	}
}

// https over a socket: the certificate is verified against health-host.
func TestHealthOverHTTPSOnAUnixSocket(t *testing.T) {
	o, slot, srv, _ := unixSlot(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }, true)
	o.HealthScheme = "https"
	o.HealthHost = "example.com" // the name in the test certificate
	if ok, answer := newHealthCheck(o, slot, srv.Client()).probe(t.Context()); !ok {
		t.Errorf("trusted certificate of health-host: %s", answer)
	}
	o.HealthHost = "tpi.test"
	if ok, answer := newHealthCheck(o, slot, srv.Client()).probe(t.Context()); ok || !strings.Contains(answer, "not tpi.test") {
		t.Errorf("certificate of another name than health-host: healthy %v, %s", ok, answer)
	}
	o.HealthInsecure = true
	if ok, answer := newHealthCheck(o, slot, &http.Client{}).probe(t.Context()); !ok {
		t.Errorf("self-signed, insecure: %s", answer)
	}
}
