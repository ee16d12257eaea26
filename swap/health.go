package swap

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthCheck polls one slot until it answers as configured.
type healthCheck struct {
	url      string        // for messages: get, and in socket mode the socket it goes through
	get      string        // the URL requested
	base     string        // get without its path: scheme://host
	via      string        // for messages: in socket mode, the socket requests go through
	timeout  time.Duration // of one request
	host     string        // Host header; "" for the URL's host
	body     string        // text the body must contain; "" for any body
	accept   []statusRange
	interval time.Duration
	socket   bool // the slot listens on a unix socket
	client   *http.Client
	// own proves that an accepted answer is the slot's own (proveOwner);
	// nil takes any answer.
	own func(context.Context) error
}

// healthBodyMax bounds what is read of a health answer's body for
// health-body: the text must be in its first 64 KiB.
const healthBodyMax = 64 << 10

// A starting app is polled every fastPoll (or every interval, if that is
// shorter) for the first fastFor of a wait, then every interval: an app
// that becomes ready in its first second, as most do, is noticed within
// 10 ms rather than within an interval, for about 100 polls.
const (
	fastPoll = 10 * time.Millisecond
	fastFor  = time.Second
)

// newHealthCheck returns the health check of slot. A slot whose address is
// "unix:PATH" (socket mode) is asked scheme://localhost<health-path> over
// the socket at PATH, with Host health-host or "localhost".
func newHealthCheck(o Options, slot Slot, client *http.Client) healthCheck {
	accept, _ := parseStatus(o.HealthStatus) // checked by Options.Check
	addr, via := slot.Addr.Name, ""
	path, socket := slot.Addr.Socket()
	if socket {
		client = unixClient(client, path)
		addr, via = "localhost", " via "+path
	}
	if o.HealthScheme == "https" {
		client = tlsClient(client, o.HealthHost, o.HealthInsecure)
	}
	base := o.HealthScheme + "://" + addr
	return healthCheck{
		url:      base + o.HealthPath + via,
		get:      base + o.HealthPath,
		base:     base,
		via:      via,
		timeout:  max(o.HealthInterval, 2*time.Second),
		host:     o.HealthHost,
		body:     o.healthBody(),
		accept:   accept,
		interval: o.HealthInterval,
		socket:   socket,
		client:   client,
	}
}

// ownTransport returns a copy of client's transport for a client of its
// own, or false when the transport is not an *http.Transport (a test's),
// which is then used as it is.
func ownTransport(client *http.Client) (*http.Transport, bool) {
	switch t := client.Transport.(type) {
	case nil:
		return http.DefaultTransport.(*http.Transport).Clone(), true
	case *http.Transport:
		return t.Clone(), true
	}
	return nil, false
}

// unixClient returns a copy of client whose requests all go to the unix
// socket at path, whatever their URL's host, through a transport of its
// own. That transport keeps no connection open between requests: the
// socket router's drain counts the slot's open connections.
func unixClient(client *http.Client, path string) *http.Client {
	t, ok := ownTransport(client)
	if !ok {
		return client
	}
	var d net.Dialer
	t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	}
	t.DialTLSContext = nil // TLS, if any, over the conn above
	t.Proxy = nil
	t.DisableKeepAlives = true
	c := *client
	c.Transport = t
	return &c
}

// tlsClient returns the client of an https health check: client itself,
// unless the check names a host (TLS then sends and verifies that name, not
// the slot's address) or accepts any certificate (health-insecure). Those
// get a copy of client with a transport of their own, used only for this
// check. A transport that is not an *http.Transport (a test's) is kept as
// it is.
func tlsClient(client *http.Client, host string, insecure bool) *http.Client {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	if name == "" && !insecure {
		return client
	}
	t, ok := ownTransport(client)
	if !ok {
		return client
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	if name != "" {
		t.TLSClientConfig.ServerName = name
	}
	t.TLSClientConfig.InsecureSkipVerify = t.TLSClientConfig.InsecureSkipVerify || insecure
	c := *client
	c.Transport = t
	return &c
}

// probe makes one request and returns whether the answer is accepted and a
// short description of it for people.
func (h healthCheck) probe(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.get, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Host = h.host // "" sends the URL's host
	resp, err := h.client.Do(req)
	if err != nil {
		if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
			return false, err.Error() + "; for a self-signed certificate of the slot set health-insecure = true"
		}
		return false, err.Error()
	}
	defer resp.Body.Close()
	limit := int64(200)
	if h.body != "" {
		limit = healthBodyMax
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	for _, r := range h.accept {
		if resp.StatusCode >= r.lo && resp.StatusCode <= r.hi {
			if !bytes.Contains(body, []byte(h.body)) {
				return false, fmt.Sprintf("%s, body lacks %q: %s", resp.Status, h.body, firstLine(body))
			}
			return true, resp.Status
		}
	}
	return false, strings.TrimSpace(resp.Status + " " + strings.TrimSpace(string(body[:min(len(body), 200)])))
}

// at is the check of another path of the same slot that asks only for a
// status in health-status (not health-body), with up to timeout for an
// answer: a warm-up request.
func (h healthCheck) at(path string, timeout time.Duration) healthCheck {
	h.get, h.url = h.base+path, h.base+path+h.via
	h.body, h.timeout = "", timeout
	return h
}

// firstLine is the first line of a body that is not blank, cut to 200
// bytes, for messages.
func firstLine(body []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	line = strings.TrimSpace(line)
	if len(line) > 200 {
		line = strings.ToValidUTF8(line[:200], "") + "..."
	}
	if line == "" {
		return "(empty body)"
	}
	return line
}

// wait polls until an accepted answer, ctx's end, or alive reporting that
// the unit has gone: every fastPoll for the first fastFor, then every
// interval. A poll starts when the gap since the previous one's start is
// over, or when that one returns if it took longer: polls never overlap.
// Failed polls are checked with alive and told to poll once an interval,
// not at each fast poll: the fast polls add neither D-Bus calls nor
// progress events. An answer own cannot prove the slot's is not
// accepted, and one another process may have given ends the wait.
func (h healthCheck) wait(ctx context.Context, alive func() error, poll func(n int, last string)) (int, error) {
	begin := time.Now()
	var told time.Time // start of the last failed poll told
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	last := "none"
	for n := 1; ; n++ {
		start := time.Now()
		ok, answer := h.probe(ctx)
		if ok {
			// A stray process on the port must not pass for a unit that
			// crash-loops.
			if err := alive(); err != nil {
				held := "port"
				if h.socket {
					held = "socket"
				}
				return n, fmt.Errorf("%w; yet %s answered %s: another process holds the %s", err, h.url, answer, held)
			}
			if h.own == nil {
				return n, nil
			}
			err := h.own(ctx)
			if err == nil {
				return n, nil
			}
			if errors.Is(err, errSquatted) {
				return n, fmt.Errorf("%s answered %s, but %w: that answer may not be the slot's; stop that process and switch again", h.url, answer, err)
			}
			answer += ", but " + err.Error()
		}
		if ctx.Err() != nil { // the probe was cut short: its answer is the deadline, not the app's
			return n, fmt.Errorf("no healthy answer from %s after %d polls (%w); last answer: %s", h.url, n, context.Cause(ctx), last)
		}
		last = answer
		if n == 1 || start.Sub(told) >= h.interval {
			told = start
			if err := alive(); err != nil {
				return n, fmt.Errorf("%w; last answer from %s: %s", err, h.url, last)
			}
			poll(n, last)
		}
		gap := h.interval
		if start.Sub(begin) < fastFor {
			gap = min(fastPoll, h.interval)
		}
		timer.Reset(max(time.Until(start.Add(gap)), 0))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
}
