// Package wsframe is the little of RFC 6455 (WebSocket) that demoapp's
// stream server and testedge's stream client share: the handshake's accept
// key and single, final frames.
//
// It is not a WebSocket library. Read refuses fragmented frames, extension
// bits and payloads over 64 KiB, and leaves the rules of control frames and
// of the closing handshake to its caller; that is all a stream of short
// text messages needs. As server and client now share this code, they can
// no longer catch each other's mistakes: its tests check RFC 6455's own
// examples byte for byte.
package wsframe

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Opcodes (RFC 6455 section 5.2).
const (
	Text  = 0x1
	Close = 0x8
	Ping  = 0x9
	Pong  = 0xA
)

// guid is the key suffix of the opening handshake (RFC 6455 section 1.3).
const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxPayload bounds what Read accepts, so that a bad length cannot make it
// allocate gigabytes.
const maxPayload = 1 << 16

// Accept is the Sec-WebSocket-Accept answer to a Sec-WebSocket-Key.
func Accept(key string) string {
	sum := sha1.Sum([]byte(key + guid))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Append appends one final frame of any length. A client masks every frame
// it sends with a fresh mask; a server sends them unmasked (mask nil).
func Append(b []byte, op byte, payload []byte, mask *[4]byte) []byte {
	var maskBit byte
	if mask != nil {
		maskBit = 0x80
	}
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, maskBit|byte(n))
	case n <= math.MaxUint16:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask == nil {
		return append(b, payload...)
	}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	toggleMask(b[start:], *mask)
	return b
}

// Read reads one final frame without extensions of at most 64 KiB and
// returns its opcode and unmasked payload. masked says which side it reads:
// a server reads masked frames from a client, a client unmasked ones from a
// server; a frame of the other kind is an error.
func Read(r *bufio.Reader, masked bool) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if final, extensions, isMasked := h[0]&0x80 != 0, h[0]&0x70 != 0, h[1]&0x80 != 0; !final || extensions || isMasked != masked {
		want := "unmasked"
		if masked {
			want = "masked"
		}
		return 0, nil, fmt.Errorf("frame header %#x %#x: want a final, %s frame without extensions", h[0], h[1], want)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, err = io.ReadFull(r, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, err = io.ReadFull(r, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	if err != nil {
		return 0, nil, err
	}
	if n > maxPayload {
		return 0, nil, fmt.Errorf("frame of %d bytes, more than 64 KiB", n)
	}
	var mask [4]byte
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		toggleMask(payload, mask)
	}
	return h[0] & 0x0f, payload, nil
}

// toggleMask masks p in place, or unmasks it: the XOR is its own inverse.
func toggleMask(p []byte, mask [4]byte) {
	for i := range p {
		p[i] ^= mask[i%4]
	}
}
