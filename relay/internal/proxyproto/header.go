// Package proxyproto reads the PROXY protocol header (versions 1 and 2, as HAProxy
// specifies them) that a load balancer sends ahead of a TCP stream, so the relay sees the
// real client address behind the balancer's SNAT. Without it, an IP allowlist behind a
// LoadBalancer would see every client as the balancer and could become an open relay.
//
// Only peers in a trusted list may send the header; see Listener.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// signatureV2 starts every version 2 header.
var signatureV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	// maxV1 is the longest version 1 line, CRLF included (the specification's figure).
	maxV1 = 107
	// maxV2Body bounds the address block and TLVs we accept. Balancers send at most a
	// few hundred bytes of TLVs; the 16-bit length would otherwise allow 64 KiB.
	maxV2Body = 2048
)

// Header is what the balancer says about the connection.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local is true for a version 2 LOCAL command, a version 1 UNKNOWN line, or an
	// address family we do not map to TCP: the balancer speaks for itself (health
	// checks), and the connection's own addresses apply.
	Local bool
	// Source is the client; Destination is the address the client connected to.
	// IPv4-mapped IPv6 addresses are unmapped, so allowlists of IPv4 networks match.
	Source, Destination netip.AddrPort
}

// ErrNotProxy means the stream does not start with a PROXY header.
var ErrNotProxy = errors.New("proxyproto: no PROXY protocol header")

// ReadHeader reads one header from r and nothing after it.
func ReadHeader(r *bufio.Reader) (Header, error) {
	// 12 bytes tell the versions apart: the shortest version 1 line has 15.
	start, err := r.Peek(len(signatureV2))
	if err != nil {
		return Header{}, fmt.Errorf("proxyproto: reading header: %w", err)
	}
	switch {
	case bytes.Equal(start, signatureV2):
		return readV2(r)
	case bytes.HasPrefix(start, []byte("PROXY ")):
		return readV1(r)
	}
	return Header{}, ErrNotProxy
}

func readV1(r *bufio.Reader) (Header, error) {
	line := make([]byte, 0, maxV1)
	for {
		b, err := r.ReadByte()
		if err != nil {
			return Header{}, fmt.Errorf("proxyproto: reading v1 header: %w", err)
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
		if len(line) == maxV1 {
			return Header{}, errors.New("proxyproto: v1 header longer than 107 bytes")
		}
	}
	text, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return Header{}, errors.New("proxyproto: v1 header does not end in CRLF")
	}
	fields := strings.Split(text, " ")
	if len(fields) >= 2 && fields[1] == "UNKNOWN" {
		return Header{Version: 1, Local: true}, nil
	}
	if len(fields) != 6 || (fields[1] != "TCP4" && fields[1] != "TCP6") {
		return Header{}, fmt.Errorf("proxyproto: malformed v1 header %q", text)
	}
	src, err1 := parseV1Addr(fields[2], fields[4], fields[1] == "TCP4")
	dst, err2 := parseV1Addr(fields[3], fields[5], fields[1] == "TCP4")
	if err := errors.Join(err1, err2); err != nil {
		return Header{}, fmt.Errorf("proxyproto: malformed v1 header %q: %w", text, err)
	}
	return Header{Version: 1, Source: src, Destination: dst}, nil
}

func parseV1Addr(ip, port string, v4 bool) (netip.AddrPort, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Is4() != v4 || addr.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", ip)
	}
	// The specification forbids leading zeros and signs; ParseUint admits neither sign.
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (len(port) > 1 && port[0] == '0') {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(p)), nil
}

func readV2(r *bufio.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Header{}, fmt.Errorf("proxyproto: reading v2 header: %w", err)
	}
	verCmd, fam := fixed[12], fixed[13]
	length := int(binary.BigEndian.Uint16(fixed[14:]))
	if verCmd>>4 != 2 {
		return Header{}, fmt.Errorf("proxyproto: v2 header has version %d", verCmd>>4)
	}
	if length > maxV2Body {
		return Header{}, fmt.Errorf("proxyproto: v2 header of %d bytes is too long", length)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("proxyproto: reading v2 addresses: %w", err)
	}
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case 0: // LOCAL
		h.Local = true
		return h, nil
	case 1: // PROXY
	default:
		return Header{}, fmt.Errorf("proxyproto: v2 command %d is unknown", verCmd&0xf)
	}
	if proto := fam & 0xf; proto == 2 {
		return Header{}, errors.New("proxyproto: v2 header is for a datagram stream")
	}
	switch fam >> 4 {
	case 1: // AF_INET
		if len(body) < 12 {
			return Header{}, errors.New("proxyproto: v2 IPv4 address block is short")
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
	case 2: // AF_INET6
		if len(body) < 36 {
			return Header{}, errors.New("proxyproto: v2 IPv6 address block is short")
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])).Unmap(), binary.BigEndian.Uint16(body[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])).Unmap(), binary.BigEndian.Uint16(body[34:]))
	default: // AF_UNSPEC or AF_UNIX: nothing a TCP peer address can hold
		h.Local = true
	}
	return h, nil
}

// AppendV1 appends h as a version 1 line.
func (h Header) AppendV1(b []byte) []byte {
	if h.Local || !h.Source.IsValid() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	src, dst := h.Source.Addr(), h.Destination.Addr()
	family := "TCP4"
	if !src.Is4() || !dst.Is4() {
		family = "TCP6"
		src, dst = netip.AddrFrom16(src.As16()), netip.AddrFrom16(dst.As16())
	}
	return fmt.Appendf(b, "PROXY %s %s %s %d %d\r\n", family, src, dst, h.Source.Port(), h.Destination.Port())
}

// AppendV2 appends h as a version 2 header with no TLVs.
func (h Header) AppendV2(b []byte) []byte {
	b = append(b, signatureV2...)
	if h.Local || !h.Source.IsValid() {
		return append(b, 0x20, 0x00, 0, 0)
	}
	if h.Source.Addr().Is4() && h.Destination.Addr().Is4() {
		b = append(b, 0x21, 0x11, 0, 12)
		b = append(b, h.Source.Addr().AsSlice()...)
		b = append(b, h.Destination.Addr().AsSlice()...)
	} else {
		b = append(b, 0x21, 0x21, 0, 36)
		s, d := h.Source.Addr().As16(), h.Destination.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port())
}
