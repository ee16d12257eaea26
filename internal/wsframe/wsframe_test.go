package wsframe

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func TestAccept(t *testing.T) {
	// RFC 6455 section 1.3's example key and answer.
	if got := Accept("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Accept of the RFC's key: %s", got)
	}
}

func TestAppend(t *testing.T) {
	rfcMask := &[4]byte{0x37, 0xfa, 0x21, 0x3d}
	tests := []struct {
		name    string
		op      byte
		payload []byte
		mask    *[4]byte
		want    string // hex of the whole frame
	}{
		{"RFC example: unmasked text Hello", Text, []byte("Hello"), nil, "810548656c6c6f"},
		{"RFC example: masked text Hello", Text, []byte("Hello"), rfcMask, "818537fa213d7f9f4d5158"},
		{"a close frame", Close, []byte{0x03, 0xe8}, nil, "880203e8"},
		{"an empty masked close", Close, nil, rfcMask, "888037fa213d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hex.EncodeToString(Append(nil, tt.op, tt.payload, tt.mask)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAppendLengths(t *testing.T) {
	mask := &[4]byte{1, 2, 3, 4}
	tests := []struct {
		name    string
		size    int
		mask    *[4]byte
		wantHdr string // hex, without the mask
	}{
		{"125 bytes in the first length", 125, nil, "817d"},
		{"126 bytes take 16 bits", 126, nil, "817e007e"},
		{"64 KiB - 1 take 16 bits", 65535, nil, "817effff"},
		{"64 KiB take 64 bits", 65536, nil, "817f0000000000010000"},
		{"125 masked bytes in the first length", 125, mask, "81fd"},
		{"126 masked bytes take 16 bits", 126, mask, "81fe007e"},
		{"64 KiB - 1 masked take 16 bits", 65535, mask, "81feffff"},
		{"64 KiB masked take 64 bits", 65536, mask, "81ff0000000000010000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte("x"), tt.size)
			got := Append(nil, Text, payload, tt.mask)
			hdr, body := got[:len(got)-tt.size], got[len(got)-tt.size:]
			want := payload
			if tt.mask != nil {
				if !bytes.HasSuffix(hdr, tt.mask[:]) {
					t.Fatalf("header %x does not end in the mask %x", hdr, tt.mask[:])
				}
				hdr = hdr[:len(hdr)-4]
				want = bytes.Clone(payload)
				toggleMask(want, *tt.mask)
			}
			if hex.EncodeToString(hdr) != tt.wantHdr || !bytes.Equal(body, want) {
				t.Errorf("header %x, want %s; payload as sent: %v", hdr, tt.wantHdr, bytes.Equal(body, want))
			}
		})
	}
}

func TestRead(t *testing.T) {
	long := bytes.Repeat([]byte("y"), 300)
	maskedLong := []byte{0x81, 0x80 | 126, 0x01, 0x2c, 1, 2, 3, 4}
	for i, c := range long {
		maskedLong = append(maskedLong, c^byte(i%4+1))
	}
	tests := []struct {
		name    string
		in      string
		masked  bool
		wantOp  byte
		want    string
		wantErr string
	}{
		{"RFC example: masked Hello from a client", "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", true, Text, "Hello", ""},
		{"RFC example: unmasked Hello from a server", "\x81\x05Hello", false, Text, "Hello", ""},
		{"a masked 16-bit length", string(maskedLong), true, Text, string(long), ""},
		{"an unmasked 16-bit length", "\x81\x7e\x01\x00" + strings.Repeat("z", 256), false, Text, strings.Repeat("z", 256), ""},
		{"a close frame", "\x88\x02\x03\xe8", false, Close, "\x03\xe8", ""},
		{"an unmasked frame from a client is refused", "\x81\x05Hello", true, 0, "", "want a final, masked frame"},
		{"a masked frame from a server is refused", "\x81\x81\x01\x02\x03\x04x", false, 0, "", "want a final, unmasked frame"},
		{"a fragment is refused", "\x01\x05Hello", false, 0, "", "want a final"},
		{"an extension bit is refused", "\xc1\x05Hello", false, 0, "", "without extensions"},
		{"a frame over 64 KiB is refused", "\x81\xff\x00\x00\x00\x00\x00\x02\x00\x00", true, 0, "", "more than 64 KiB"},
		{"a cut frame is an error", "\x81\x85\x37\xfa", true, 0, "", "EOF"},
		{"a cut payload is an error", "\x81\x05Hel", false, 0, "", "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, payload, err := Read(bufio.NewReader(strings.NewReader(tt.in)), tt.masked)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || op != tt.wantOp || string(payload) != tt.want {
				t.Errorf("got %#x %q %v, want %#x %q", op, payload, err, tt.wantOp, tt.want)
			}
		})
	}
}

// TestReadWhatAppendWrote: every length encoding up to the 64 KiB limit
// reads back, masked as a client sends it and unmasked as a server does.
func TestReadWhatAppendWrote(t *testing.T) {
	for _, size := range []int{0, 125, 126, 65535, 65536} {
		for _, mask := range []*[4]byte{nil, {9, 8, 7, 6}} {
			payload := bytes.Repeat([]byte("ab"), size/2+1)[:size]
			frame := Append(nil, Text, payload, mask)
			op, got, err := Read(bufio.NewReader(bytes.NewReader(frame)), mask != nil)
			if err != nil || op != Text || !bytes.Equal(got, payload) {
				t.Errorf("%d bytes, masked %v: got %#x, %d bytes, %v", size, mask != nil, op, len(got), err)
			}
		}
	}
}
