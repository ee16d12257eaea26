package testedge

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/wsframe"
)

func TestSSEClient(t *testing.T) {
	events := func(seqs ...int) string {
		var b strings.Builder
		for _, i := range seqs {
			fmt.Fprintf(&b, "id: %d\ndata: slot 4001 seq %d\n\n", i, i)
		}
		return b.String()
	}
	tests := []struct {
		name       string
		body       string
		cut        bool // the server hangs up in the body
		wantIntact bool
		wantN      int
		wantSeq    bool
		wantEnd    bool
		wantErr    string
	}{
		{"a whole stream is intact", events(1, 2, 3) + "event: end\ndata: 3\n\n", false, true, 3, true, true, ""},
		{"a comment is no event", ": hello\n\n" + events(1) + "event: end\ndata: 1\n\n", false, true, 1, true, true, ""},
		{"a gap is out of sequence", events(1, 3) + "event: end\ndata: 2\n\n", false, false, 2, false, true, ""},
		{"a repeat is out of sequence", events(1, 1) + "event: end\ndata: 2\n\n", false, false, 2, false, true, ""},
		{"no end marker", events(1, 2), false, false, 2, true, false, ""},
		{"an end that counts otherwise", events(1, 2) + "event: end\ndata: 3\n\n", false, false, 2, true, true, ""},
		{"a message after the end", events(1) + "event: end\ndata: 1\n\n" + events(2), false, false, 1, true, true, "after the end"},
		{"a stranger's message", "data: hello\n\n", false, false, 0, true, false, "not \"slot P seq i\""},
		{"cut in an event", events(1) + "id: 2\ndata: slot 4001 se", false, false, 1, true, false, "cut in an event"},
		{"cut by the server", events(1, 2), true, false, 2, true, false, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("X-Slot", "4001")
				io.WriteString(w, tt.body)
				if tt.cut {
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler) // ends the chunked body without its last chunk
				}
			}))
			defer srv.Close()
			r := SSE(t.Context(), nil, srv.URL+"/events")
			if r.Intact() != tt.wantIntact || r.Messages != tt.wantN || r.InSequence != tt.wantSeq || r.Ended != tt.wantEnd ||
				(tt.wantErr == "") != (r.Err == nil) || (r.Err != nil && !strings.Contains(r.Err.Error(), tt.wantErr)) {
				t.Errorf("got %v (intact %v, in sequence %v); want intact %v, %d messages, in sequence %v, ended %v, error %q",
					r, r.Intact(), r.InSequence, tt.wantIntact, tt.wantN, tt.wantSeq, tt.wantEnd, tt.wantErr)
			}
			if len(r.Slots) != 1 || r.Slots[0] != "4001" {
				t.Errorf("slots %q, want [4001]", r.Slots)
			}
		})
	}
}

func TestSSEClientRefusesOtherAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer srv.Close()
	if r := SSE(t.Context(), nil, srv.URL); r.Err == nil || !strings.Contains(r.Err.Error(), "502") {
		t.Errorf("got %v, want an error naming the 502", r)
	}
}

func TestSSEClientSeesTwoSlots(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Slot", "4001")
		io.WriteString(w, "data: slot 4001 seq 1\n\ndata: slot 4002 seq 2\n\nevent: end\ndata: 2\n\n")
	}))
	defer srv.Close()
	if r := SSE(t.Context(), nil, srv.URL); r.Intact() || strings.Join(r.Slots, ",") != "4001,4002" {
		t.Errorf("got %v, want slots 4001,4002 and not intact", r)
	}
}

// wsServer answers a handshake with accept (the right one when empty),
// sends frames and records the frame the client sends back.
func wsServer(t *testing.T, accept string, frames []byte) (url string, got chan []byte) {
	t.Helper()
	got = make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if accept == "" {
			accept = wsframe.Accept(r.Header.Get("Sec-WebSocket-Key"))
		}
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("Sec-WebSocket-Version") != "13" {
			http.Error(w, "no websocket", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Slot: 4001\r\n\r\n", accept)
		conn.Write(frames)
		conn.(*net.TCPConn).CloseWrite() // no more frames: a client still waiting sees EOF
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(brw)
		got <- b
	}))
	t.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "http://", "ws://", 1) + "/ws", got
}

func text(s string) []byte { return append([]byte{0x81, byte(len(s))}, s...) }

func TestWebSocketClient(t *testing.T) {
	closeOK := []byte{0x88, 0x02, 0x03, 0xe8}
	tests := []struct {
		name       string
		accept     string
		frames     [][]byte
		wantIntact bool
		wantN      int
		wantErr    string
		wantClose  bool // the client answered with a masked close
	}{
		{"a whole stream is intact", "", [][]byte{text("slot 4001 seq 1"), text("slot 4001 seq 2"), text("end 2"), closeOK}, true, 2, "", true},
		{"a gap is not intact", "", [][]byte{text("slot 4001 seq 2"), text("end 1"), closeOK}, false, 1, "", true},
		{"no end marker", "", [][]byte{text("slot 4001 seq 1"), closeOK}, false, 1, "", true},
		{"no close frame", "", [][]byte{text("slot 4001 seq 1"), text("end 1")}, false, 1, "without a close frame", false},
		{"a close other than 1000", "", [][]byte{text("slot 4001 seq 1"), text("end 1"), {0x88, 0x02, 0x03, 0xf3}}, false, 1, "status 1011", true},
		{"a wrong accept key", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", nil, false, 0, "Sec-WebSocket-Accept", false},
		{"a masked frame from the server", "", [][]byte{{0x81, 0x81, 1, 2, 3, 4, 'x'}}, false, 0, "unmasked", false},
		{"a binary frame", "", [][]byte{{0x82, 0x01, 'x'}}, false, 0, "opcode 0x2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, got := wsServer(t, tt.accept, []byte(strings.Join(func() []string {
				var s []string
				for _, f := range tt.frames {
					s = append(s, string(f))
				}
				return s
			}(), "")))
			r := WebSocket(t.Context(), nil, url)
			if r.Intact() != tt.wantIntact || r.Messages != tt.wantN ||
				(tt.wantErr == "") != (r.Err == nil) || (r.Err != nil && !strings.Contains(r.Err.Error(), tt.wantErr)) {
				t.Errorf("got %v (intact %v); want intact %v, %d messages, error %q", r, r.Intact(), tt.wantIntact, tt.wantN, tt.wantErr)
			}
			back := <-got
			// A masked close echoing the server's code: 0x88, 0x82, a 4-byte mask, 2 bytes.
			if gotClose := len(back) == 8 && back[0] == 0x88 && back[1] == 0x82; gotClose != tt.wantClose {
				t.Errorf("client sent %x; want a masked close: %v", back, tt.wantClose)
			}
		})
	}
}

func TestWebSocketClientRefusesAPlainAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "slot 4001\n") }))
	defer srv.Close()
	if r := WebSocket(t.Context(), nil, srv.URL+"/ws"); r.Err == nil || !strings.Contains(r.Err.Error(), "want 101") {
		t.Errorf("got %v, want an error about the 200", r)
	}
}
