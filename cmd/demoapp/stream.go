package main

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/wsframe"
)

// streamParams reads seconds=N (default 3) and every=D (default 100ms) of
// /events and /ws: a stream of round(N/D) messages, at least one.
func streamParams(r *http.Request) (n int, every time.Duration, err error) {
	q := r.URL.Query()
	seconds, every := 3.0, 100*time.Millisecond
	if s := q.Get("seconds"); s != "" {
		seconds, err = strconv.ParseFloat(s, 64)
		if err != nil || !(seconds > 0 && seconds <= 3600) {
			return 0, 0, errors.New("bad seconds: want a number of seconds up to 3600")
		}
	}
	if s := q.Get("every"); s != "" {
		every, err = time.ParseDuration(s)
		if err != nil || every < time.Millisecond {
			return 0, 0, errors.New("bad every: want a duration of at least 1ms")
		}
	}
	n = int(math.Round(seconds * float64(time.Second) / float64(every)))
	return max(n, 1), every, nil
}

// serveEvents sends n Server-Sent Events "slot P seq i", the first at once
// and one every after, then an "end" event with the count. It stops early
// when the client goes.
func serveEvents(w http.ResponseWriter, r *http.Request, slot string, n int, every time.Duration) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx passes each event on at once
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 1; i <= n+1; i++ {
		if i > 1 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
		if i <= n {
			fmt.Fprintf(w, "id: %d\ndata: slot %s seq %d\n\n", i, slot, i)
		} else {
			fmt.Fprintf(w, "event: end\ndata: %d\n\n", n)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// serveWebSocket upgrades to a WebSocket and sends n text frames
// "slot P seq i" like serveEvents, then "end <n>" and a close frame (1000),
// and waits a moment for the client's close. The connection is counted in
// hijacked until it is closed, as http.Server.Shutdown no longer sees it.
func serveWebSocket(w http.ResponseWriter, r *http.Request, slot string, n int, every time.Duration, hijacked *sync.WaitGroup) {
	key := r.Header.Get("Sec-WebSocket-Key")
	switch k, err := base64.StdEncoding.DecodeString(key); {
	case r.Method != http.MethodGet || !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket"):
		http.Error(w, "not a websocket handshake", http.StatusBadRequest)
		return
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "websocket version 13 only", http.StatusUpgradeRequired)
		return
	case err != nil || len(k) != 16:
		http.Error(w, "bad Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	hijacked.Add(1) // before the hijack, so that Shutdown's return sees it
	defer hijacked.Done()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot upgrade: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Time{}) // a stream may outlast any request timeout

	var mu sync.Mutex // one writer at a time: the stream, and pongs from the reader
	write := func(op byte, payload []byte) error {
		mu.Lock()
		defer mu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := conn.Write(wsframe.Append(nil, op, payload, nil))
		return err
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: %s\r\nX-Slot: %s\r\n\r\n", wsframe.Accept(key), slot); err != nil {
		return
	}

	// The client sends nothing but a close frame (and perhaps pings);
	// closed ends when it has sent its close or gone.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			op, payload, err := wsframe.Read(brw.Reader, true)
			if err != nil || op == wsframe.Close {
				return
			}
			if op == wsframe.Ping {
				write(wsframe.Pong, payload)
			}
		}
	}()

	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 1; i <= n+1; i++ {
		if i > 1 {
			select {
			case <-tick.C:
			case <-closed:
				write(wsframe.Close, closePayload(1000))
				return
			}
		}
		msg := fmt.Sprintf("slot %s seq %d", slot, i)
		if i > n {
			msg = fmt.Sprintf("end %d", n)
		}
		if write(wsframe.Text, []byte(msg)) != nil {
			return
		}
	}
	if write(wsframe.Close, closePayload(1000)) != nil {
		return
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
	}
}

// hasToken says whether a comma-separated header lists token (any case).
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// closePayload is a close frame's body: the status code.
func closePayload(code uint16) []byte { return binary.BigEndian.AppendUint16(nil, code) }
