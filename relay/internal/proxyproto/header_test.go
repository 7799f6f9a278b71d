package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestReadHeader(t *testing.T) {
	v4 := Header{Source: netip.MustParseAddrPort("203.0.113.7:40000"), Destination: netip.MustParseAddrPort("10.0.0.5:25")}
	v6 := Header{Source: netip.MustParseAddrPort("[2001:db8::7]:40000"), Destination: netip.MustParseAddrPort("[2001:db8::1]:587")}
	with := func(h Header, version int) Header { h.Version = version; return h }
	tests := map[string]struct {
		in   string
		want Header
	}{
		"a v1 TCP4 line gives both addresses":   {"PROXY TCP4 203.0.113.7 10.0.0.5 40000 25\r\n", with(v4, 1)},
		"a v1 TCP6 line gives both addresses":   {"PROXY TCP6 2001:db8::7 2001:db8::1 40000 587\r\n", with(v6, 1)},
		"a v1 UNKNOWN line is local":            {"PROXY UNKNOWN\r\n", Header{Version: 1, Local: true}},
		"a v1 UNKNOWN line may carry anything":  {"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Header{Version: 1, Local: true}},
		"a v2 IPv4 header gives both addresses": {string(v4.AppendV2(nil)), with(v4, 2)},
		"a v2 IPv6 header gives both addresses": {string(v6.AppendV2(nil)), with(v6, 2)},
		"a v2 LOCAL header is local":            {string(Header{Local: true}.AppendV2(nil)), Header{Version: 2, Local: true}},
		"a v2 header may carry TLVs": {
			string(signatureV2) + "\x21\x11\x00\x13" + "\xcb\x00\x71\x07\x0a\x00\x00\x05\x9c\x40\x00\x19" + "\x04\x00\x04abcd",
			with(v4, 2)},
		"a v2 AF_UNIX header is local": {string(signatureV2) + "\x21\x31\x00\x00", Header{Version: 2, Local: true}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.in + "EHLO x\r\n"))
			got, err := ReadHeader(r)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "EHLO x\r\n" {
				t.Errorf("the header reader consumed data after the header: rest %q", rest)
			}
		})
	}
}

func TestReadHeaderRefuses(t *testing.T) {
	tests := map[string]string{
		"a stream without a header":           "EHLO client.example\r\n",
		"a v1 line without CRLF":              "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"a v1 line longer than 107 bytes":     "PROXY TCP6 " + strings.Repeat("1", 100) + "\r\n",
		"a v1 line whose family is unknown":   "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"a v1 TCP6 line with an IPv4 address": "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
		"a v1 TCP4 line with an IPv6 address": "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
		"a v1 line with a port over 65535":    "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"a v1 line with a zero-padded port":   "PROXY TCP4 1.2.3.4 5.6.7.8 025 2\r\n",
		"a v1 line with a missing field":      "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
		"a v1 line with two spaces":           "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"a v2 header of version 3":            string(signatureV2) + "\x31\x11\x00\x0c" + strings.Repeat("\x00", 12),
		"a v2 header with an unknown command": string(signatureV2) + "\x22\x11\x00\x0c" + strings.Repeat("\x00", 12),
		"a v2 header for datagrams":           string(signatureV2) + "\x21\x12\x00\x0c" + strings.Repeat("\x00", 12),
		"a v2 IPv4 header with a short block": string(signatureV2) + "\x21\x11\x00\x08" + strings.Repeat("\x00", 8),
		"a v2 IPv6 header with a short block": string(signatureV2) + "\x21\x21\x00\x0c" + strings.Repeat("\x00", 12),
		"a v2 header longer than we accept":   string(signatureV2) + "\x21\x11\xff\xff",
		"a v2 header cut short":               string(signatureV2) + "\x21\x11\x00\x0c\x01\x02",
		"a stream that ends before 12 bytes":  "PROXY",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if h, err := ReadHeader(bufio.NewReader(strings.NewReader(in))); err == nil {
				t.Fatalf("accepted as %+v", h)
			}
		})
	}
	if _, err := ReadHeader(bufio.NewReader(strings.NewReader("EHLO client.example\r\n"))); !errors.Is(err, ErrNotProxy) {
		t.Errorf("a stream without a header gave %v, want ErrNotProxy", err)
	}
}

func TestAppendV1RoundTrips(t *testing.T) {
	for _, h := range []Header{
		{Source: netip.MustParseAddrPort("192.0.2.1:1"), Destination: netip.MustParseAddrPort("192.0.2.2:65535")},
		{Source: netip.MustParseAddrPort("[::1]:0"), Destination: netip.MustParseAddrPort("[fe80::1]:25")},
		{Source: netip.MustParseAddrPort("192.0.2.1:1"), Destination: netip.MustParseAddrPort("[2001:db8::1]:25")},
	} {
		got, err := ReadHeader(bufio.NewReader(bytes.NewReader(h.AppendV1(nil))))
		h.Version = 1
		if err != nil || got != h {
			t.Errorf("round trip of %+v gave %+v, %v", h, got, err)
		}
	}
}

// FuzzReadHeader checks that no input panics, that a header never reads past itself,
// and that what parses encodes back to the same header.
func FuzzReadHeader(f *testing.F) {
	h := Header{Source: netip.MustParseAddrPort("203.0.113.7:40000"), Destination: netip.MustParseAddrPort("10.0.0.5:25")}
	f.Add(h.AppendV1(nil))
	f.Add(h.AppendV2(nil))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(Header{Local: true}.AppendV2(nil))
	f.Add([]byte("EHLO x\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append(data[:len(data):len(data)], "\r\nTRAILER"...)
		r := bufio.NewReader(bytes.NewReader(in))
		got, err := ReadHeader(r)
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(r)
		consumed := len(in) - len(rest)
		want := bytes.IndexByte(in, '\n') + 1 // a v1 line
		if got.Version == 2 {
			want = 16 + int(binary.BigEndian.Uint16(in[14:16]))
		}
		if consumed != want {
			t.Fatalf("read %d bytes of a %d-byte header", consumed, want)
		}
		if got.Local {
			return
		}
		var again []byte
		if got.Version == 1 {
			again = got.AppendV1(nil)
		} else {
			again = got.AppendV2(nil)
		}
		back, err := ReadHeader(bufio.NewReader(bytes.NewReader(again)))
		if err != nil || back != got {
			t.Fatalf("%+v encoded to %q, which reads back as %+v, %v", got, again, back, err)
		}
	})
}
