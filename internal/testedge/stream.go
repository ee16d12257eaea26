package testedge

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/wsframe"
)

// StreamResult is what a stream client saw of one of demoapp's streams
// (/events, /ws): messages "slot P seq i" for i = 1, 2, ..., then an end
// marker with their count.
type StreamResult struct {
	Messages   int           // messages before the end marker
	InSequence bool          // their seq were 1, 2, ..., Messages: no gap, repeat or reordering
	Slots      []string      // the slots of the X-Slot header and of the messages, in order of first appearance
	Ended      bool          // the end marker arrived
	EndCount   int           // the count the end marker gave
	FirstAfter time.Duration // from the dial to the first message (a buffering proxy delays it)
	Duration   time.Duration // from the dial to the end of the stream
	Err        error         // what broke the stream; nil when it ended cleanly
}

// Intact says whether the stream arrived whole: no error, the end marker
// counting every message, all in sequence and from one slot.
func (r StreamResult) Intact() bool {
	return r.Err == nil && r.Ended && r.EndCount == r.Messages && r.InSequence && len(r.Slots) == 1
}

// String is a one-line summary for test logs.
func (r StreamResult) String() string {
	s := fmt.Sprintf("%d messages from slot %s in %s (first after %s)", r.Messages, strings.Join(r.Slots, ","),
		r.Duration.Round(time.Millisecond), r.FirstAfter.Round(time.Millisecond))
	if !r.InSequence {
		s += ", out of sequence"
	}
	if r.Ended {
		s += fmt.Sprintf(", end %d", r.EndCount)
	} else {
		s += ", no end"
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// Dialer makes a connection, as net.Dialer.DialContext and Machine.Dial do.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// streamReader counts the messages of a stream.
type streamReader struct {
	r     StreamResult
	start time.Time
}

func newStreamReader() *streamReader {
	return &streamReader{r: StreamResult{InSequence: true}, start: time.Now()}
}

func (s *streamReader) slot(slot string) {
	if slot != "" && !slices.Contains(s.r.Slots, slot) {
		s.r.Slots = append(s.r.Slots, slot)
	}
}

// message takes "slot P seq i".
func (s *streamReader) message(msg string) error {
	if s.r.Ended {
		return fmt.Errorf("message %q after the end", msg)
	}
	var slot string
	var seq int
	if _, err := fmt.Sscanf(msg, "slot %s seq %d", &slot, &seq); err != nil {
		return fmt.Errorf("message %q is not \"slot P seq i\"", msg)
	}
	s.r.Messages++
	if s.r.Messages == 1 {
		s.r.FirstAfter = time.Since(s.start)
	}
	if seq != s.r.Messages {
		s.r.InSequence = false
	}
	s.slot(slot)
	return nil
}

// end takes the end marker's count.
func (s *streamReader) end(count string) error {
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || s.r.Ended {
		return fmt.Errorf("bad end marker %q", count)
	}
	s.r.Ended, s.r.EndCount = true, n
	return nil
}

func (s *streamReader) result(ctx context.Context, err error) StreamResult {
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	s.r.Err = err
	s.r.Duration = time.Since(s.start)
	return s.r
}

// SSE reads demoapp's Server-Sent Events at url (e.g. Edge.URL("/events?seconds=1"))
// to their end, over connections from dial (nil: the host's network).
func SSE(ctx context.Context, dial Dialer, url string) StreamResult {
	s := newStreamReader()
	return s.result(ctx, s.sse(ctx, dial, url))
}

func (s *streamReader) sse(ctx context.Context, dial Dialer, url string) error {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	s.slot(resp.Header.Get("X-Slot"))
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("answer %s of type %q, want 200 text/event-stream", resp.Status, ct)
	}
	// An event is its lines up to a blank line; only event and data matter here.
	event, data := "", ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		field, value, _ := strings.Cut(sc.Text(), ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case field == "event":
			event = value
		case field == "data":
			data = value
		case sc.Text() == "" && (event != "" || data != ""):
			var err error
			if event == "end" {
				err = s.end(data)
			} else {
				err = s.message(data)
			}
			if err != nil {
				return err
			}
			event, data = "", ""
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if event != "" || data != "" {
		return errors.New("stream cut in an event")
	}
	return nil
}

// WebSocket reads demoapp's WebSocket stream at url (ws:// or http://,
// e.g. Edge.URL("/ws?seconds=1")) to its close frame, over a connection
// from dial (nil: the host's network). It sends nothing but the handshake
// and, when the server closes, its own close frame.
func WebSocket(ctx context.Context, dial Dialer, url string) StreamResult {
	s := newStreamReader()
	return s.result(ctx, s.websocket(ctx, dial, url))
}

func (s *streamReader) websocket(ctx context.Context, dial Dialer, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	default:
		return fmt.Errorf("websocket URL %s: want ws:// or http://", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()

	k := make([]byte, 16)
	rand.Read(k)
	key := base64.StdEncoding.EncodeToString(k)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	if err := req.Write(conn); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return err
	}
	s.slot(resp.Header.Get("X-Slot"))
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return fmt.Errorf("handshake answered %s, want 101", resp.Status)
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		return fmt.Errorf("handshake answered Upgrade %q, want websocket", resp.Header.Get("Upgrade"))
	case resp.Header.Get("Sec-WebSocket-Accept") != wsframe.Accept(key):
		return fmt.Errorf("handshake answered Sec-WebSocket-Accept %q, not the one for its key", resp.Header.Get("Sec-WebSocket-Accept"))
	}

	for {
		op, payload, err := wsframe.Read(br, false)
		if err != nil {
			return fmt.Errorf("websocket stream without a close frame: %w", err)
		}
		switch op {
		case wsframe.Text:
			msg := string(payload)
			if count, ok := strings.CutPrefix(msg, "end "); ok {
				err = s.end(count)
			} else {
				err = s.message(msg)
			}
			if err != nil {
				return err
			}
		case wsframe.Close:
			var mask [4]byte
			rand.Read(mask[:])
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(wsframe.Append(nil, wsframe.Close, payload, &mask)); err != nil {
				return fmt.Errorf("answering the close frame: %w", err)
			}
			if len(payload) >= 2 {
				if code := binary.BigEndian.Uint16(payload); code != 1000 {
					return fmt.Errorf("closed with status %d %q", code, payload[2:])
				}
			}
			return nil
		default:
			return fmt.Errorf("unexpected frame of opcode %#x", op)
		}
	}
}
