package swap

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// probeWith builds the health check of o against srv, as a switch would,
// and probes it once.
func probeWith(t *testing.T, srv *httptest.Server, client *http.Client, change func(*Options)) (bool, string) {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	o := Defaults()
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

	ok, answer := probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = "tpi" })
	if want := `200 OK, body lacks "tpi": profile: api`; ok || answer != want {
		t.Errorf("body without the text: healthy %v, %q; want %q", ok, answer, want)
	}
	if ok, answer := probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = "profile: api" }); !ok {
		t.Errorf("body with the text: %s", answer)
	}
	ok, answer = probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = "tpi"; o.HealthPath = "/health?empty" })
	if want := `200 OK, body lacks "tpi": (empty body)`; ok || answer != want {
		t.Errorf("empty body: healthy %v, %q; want %q", ok, answer, want)
	}
	// The text must be in the first 64 KiB; the line shown is cut short.
	ok, answer = probeWith(t, srv, srv.Client(), func(o *Options) { o.HealthBody = "tpi"; o.HealthPath = "/health?long" })
	if ok || len(answer) > 300 || !strings.HasSuffix(answer, "xxx...") {
		t.Errorf("text past 64 KiB: healthy %v, %q", ok, answer)
	}

	// A status that is not accepted is that status, as without health-body.
	bad := flaky(1 << 30)
	defer bad.Close()
	if ok, answer := probeWith(t, bad, bad.Client(), func(o *Options) { o.HealthBody = "tpi" }); ok || answer != "503 Service Unavailable warming up" {
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
	o := Defaults()
	o.HealthBody = "tpi"
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
			o := Defaults()
			tt.change(&o)
			err := o.Check()
			if !errors.Is(err, ErrUsage) || ExitCode(err) != 2 || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("Check() = %v (exit %d), want ErrUsage saying %q", err, ExitCode(err), tt.says)
			}
		})
	}
	o := Defaults()
	o.HealthScheme, o.HealthInsecure, o.HealthHost, o.HealthBody = "https", true, "tpi.example.com:8443", "tpi"
	if err := o.Check(); err != nil {
		t.Errorf("https, insecure, a host and a body: %v", err)
	}
}
