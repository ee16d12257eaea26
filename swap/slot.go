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

// job runs one systemd job call (start, stop, restart) and waits for its
// result. Anything but "done" is a failure.
func job(ctx context.Context, call func(context.Context, string, string, chan<- string) (int, error), unit, journalctl string) error {
	ch := make(chan string, 1) // buffered: go-systemd sends even if nobody listens any more
	if _, err := call(ctx, unit, "replace", ch); err != nil {
		return err
	}
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("job %s; see %s -u %s", r, journalctl, unit)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unitStatus is what systemd says of a unit.
type unitStatus struct {
	Active string    // ActiveState: "active", "activating", "inactive", "failed", ...
	Sub    string    // SubState: "running", "auto-restart", "dead", ...
	Load   string    // LoadState: "loaded", "not-found", ...
	Since  time.Time // when the unit last changed state
}

func getUnit(ctx context.Context, sd Systemd, unit string) (unitStatus, error) {
	props, err := sd.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return unitStatus{}, fmt.Errorf("state of %s: %w", unit, err)
	}
	u := unitStatus{}
	u.Active, _ = props["ActiveState"].(string)
	u.Sub, _ = props["SubState"].(string)
	u.Load, _ = props["LoadState"].(string)
	if usec, ok := props["StateChangeTimestamp"].(uint64); ok && usec > 0 {
		u.Since = time.UnixMicro(int64(usec))
	}
	return u, nil
}

// unitFile returns the unit file's state: "enabled", "disabled", "static"
// (no [Install] section), ...
func unitFile(ctx context.Context, sd Systemd, unit string) (string, error) {
	state, err := sd.GetUnitFileStateContext(ctx, unit)
	if err != nil {
		return "", fmt.Errorf("unit file state of %s: %w", unit, err)
	}
	return state, nil
}

// enabled reports whether a unit file state starts the unit at boot.
func enabled(fileState string) bool { return fileState == "enabled" || fileState == "enabled-runtime" }

// running reports whether a unit's process is up or coming up.
func running(active string) bool {
	return active == "active" || active == "activating" || active == "reloading"
}

// healthCheck polls one slot until it answers as configured.
type healthCheck struct {
	url      string
	host     string // Host header; "" for the slot's address
	body     string // text the body must contain; "" for any body
	accept   []statusRange
	interval time.Duration
	client   *http.Client
}

// healthBodyMax bounds what is read of a health answer's body for
// health-body: the text must be in its first 64 KiB.
const healthBodyMax = 64 << 10

func newHealthCheck(o Options, slot Slot, client *http.Client) healthCheck {
	accept, _ := parseStatus(o.HealthStatus) // checked by Options.Check
	if o.HealthScheme == "https" {
		client = tlsClient(client, o.HealthHost, o.HealthInsecure)
	}
	return healthCheck{
		url:      o.HealthScheme + "://" + slot.Addr + o.HealthPath,
		host:     o.HealthHost,
		body:     o.HealthBody,
		accept:   accept,
		interval: o.HealthInterval,
		client:   client,
	}
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
	var base *http.Transport
	switch t := client.Transport.(type) {
	case nil:
		base = http.DefaultTransport.(*http.Transport)
	case *http.Transport:
		base = t
	default:
		return client
	}
	t := base.Clone()
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
	ctx, cancel := context.WithTimeout(ctx, max(h.interval, 2*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Host = h.host // "" sends the slot's address
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

// wait polls every interval until an accepted answer, ctx's end, or alive
// reporting that the unit has gone. poll is told each failed attempt.
func (h healthCheck) wait(ctx context.Context, alive func() error, poll func(n int, last string)) (int, error) {
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	last := "none"
	for n := 1; ; n++ {
		ok, answer := h.probe(ctx)
		if ok {
			// A stray process on the port must not pass for a unit that
			// crash-loops.
			if err := alive(); err != nil {
				return n, fmt.Errorf("%w; yet %s answered %s: another process holds the port", err, h.url, answer)
			}
			return n, nil
		}
		if ctx.Err() != nil { // the probe was cut short: its answer is the deadline, not the app's
			return n, fmt.Errorf("no healthy answer from %s after %d polls (%w); last answer: %s", h.url, n, context.Cause(ctx), last)
		}
		last = answer
		if err := alive(); err != nil {
			return n, fmt.Errorf("%w; last answer from %s: %s", err, h.url, last)
		}
		poll(n, last)
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}
