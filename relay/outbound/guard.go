package outbound

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrNotPublic is the cause of an Error for an address the guard refused.
var ErrNotPublic = errors.New("not a public address")

// AllowFlag is the relay flag that lists the networks an admin allows although they are
// not public; refusals name it, so whoever reads one knows the way out.
const AllowFlag = "--outbound-allowed-networks"

// RefusedStatus is the enhanced status of a refused address. X.4.4 is "unable to route":
// the next hop is an address the relay will not use, as if it had none. It is temporary
// (4.4.4, a deferral) because the fix lies with the admin (an allowed network) or the
// domain's DNS, and either may come within the queue lifetime; a bounce at once would
// lose mail over a setting.
const RefusedStatus = "4.4.4"

type namedPrefix struct {
	prefix netip.Prefix
	name   string
}

func ranges(pairs ...string) []namedPrefix {
	out := make([]namedPrefix, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, namedPrefix{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// The special-purpose ranges of the IANA registries (RFC 6890 and its updates) that no
// mail server on the internet has, most specific first.
var (
	specialV4 = ranges(
		"0.0.0.0/8", "this network (unspecified)",
		"10.0.0.0/8", "private (RFC 1918)",
		"100.64.0.0/10", "shared address space (CGNAT, RFC 6598)",
		"127.0.0.0/8", "loopback",
		"169.254.0.0/16", "link-local",
		"172.16.0.0/12", "private (RFC 1918)",
		"192.0.0.0/24", "IETF protocol assignments",
		"192.0.2.0/24", "documentation (TEST-NET-1)",
		"192.88.99.0/24", "6to4 relay anycast",
		"192.168.0.0/16", "private (RFC 1918)",
		"198.18.0.0/15", "benchmarking (RFC 2544)",
		"198.51.100.0/24", "documentation (TEST-NET-2)",
		"203.0.113.0/24", "documentation (TEST-NET-3)",
		"224.0.0.0/4", "multicast",
		"255.255.255.255/32", "limited broadcast",
		"240.0.0.0/4", "reserved",
	)
	specialV6 = ranges(
		"::/128", "unspecified",
		"::1/128", "loopback",
		"::/96", "IPv4-compatible (deprecated)",
		"64:ff9b:1::/48", "local-use NAT64",
		"100::/64", "discard-only",
		"2001:db8::/32", "documentation",
		"2001::/23", "IETF protocol assignments",
		"3fff::/20", "documentation",
		"5f00::/16", "segment routing (SRv6)",
		"fc00::/7", "unique local (ULA)",
		"fe80::/10", "link-local",
		"fec0::/10", "site-local (deprecated)",
		"ff00::/8", "multicast",
	)
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	global6   = netip.MustParsePrefix("2000::/3")
)

// NonPublic says why a is not a public unicast address (the name of its special-purpose
// range), or returns "" when it is one. An IPv4-mapped IPv6 address is judged as the
// IPv4 address it is; NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses by the IPv4
// address they embed, since that is where the packets end up.
func NonPublic(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid address"
	}
	a = a.Unmap()
	if a.Is4() {
		return lookup(specialV4, a)
	}
	if nat64.Contains(a) {
		b := a.As16()
		if why := NonPublic(netip.AddrFrom4([4]byte(b[12:]))); why != "" {
			return "NAT64 of " + why
		}
		return ""
	}
	if sixToFour.Contains(a) {
		b := a.As16()
		if why := NonPublic(netip.AddrFrom4([4]byte(b[2:6]))); why != "" {
			return "6to4 of " + why
		}
		return ""
	}
	if why := lookup(specialV6, a); why != "" {
		return why
	}
	if !global6.Contains(a) {
		return "not global unicast"
	}
	return ""
}

func lookup(table []namedPrefix, a netip.Addr) string {
	a = a.WithZone("")
	for _, r := range table {
		if r.prefix.Contains(a) {
			return r.name
		}
	}
	return ""
}

// guard decides which addresses may be dialed. Allowed networks win over everything:
// they are the admin's word. Denied networks are refused like the special ranges.
type guard struct {
	allowed, denied []netip.Prefix
}

func newGuard(allowed, denied []netip.Prefix) guard {
	return guard{allowed: normalize(allowed), denied: normalize(denied)}
}

// normalize masks prefixes and writes IPv4-mapped IPv6 prefixes as IPv4, since
// addresses are unmapped before they are checked.
func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// refuse returns why a may not be dialed, or "".
func (g guard) refuse(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	for _, p := range g.allowed {
		if p.Contains(a) {
			return ""
		}
	}
	for _, p := range g.denied {
		if p.Contains(a) {
			return "a denied network, such as the cluster's"
		}
	}
	return NonPublic(a)
}

// refusal is the error for an address of host that the guard refused.
func refusal(host string, a netip.Addr, why string) *Error {
	return &Error{
		Status: RefusedStatus,
		Reason: fmt.Sprintf("%s [%s] is not a public address (%s): the relay does not connect to it "+
			"unless an admin allows its network with %s", host, a, why, AllowFlag),
		Err: ErrNotPublic,
	}
}
