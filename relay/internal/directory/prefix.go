package directory

import (
	"net/netip"
	"slices"
)

// prefixTable maps client IPs to the domains whose sending servers contain them. It keeps
// one hash map per prefix length in use, so a lookup costs one map probe per distinct
// length (at most a handful in practice, 33 or 129 at worst) however many domains and
// prefixes there are.
type prefixTable struct {
	v4, v6 []prefixLevel // sorted by descending length
}

type prefixLevel struct {
	bits    int
	domains map[netip.Prefix][]string
}

func (t *prefixTable) add(p netip.Prefix, domain string) {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	levels := &t.v6
	if p.Addr().Is4() {
		levels = &t.v4
	}
	i := slices.IndexFunc(*levels, func(l prefixLevel) bool { return l.bits == p.Bits() })
	if i < 0 {
		*levels = append(*levels, prefixLevel{bits: p.Bits(), domains: map[netip.Prefix][]string{}})
		slices.SortFunc(*levels, func(a, b prefixLevel) int { return b.bits - a.bits })
		i = slices.IndexFunc(*levels, func(l prefixLevel) bool { return l.bits == p.Bits() })
	}
	l := (*levels)[i]
	if !slices.Contains(l.domains[p], domain) {
		l.domains[p] = append(l.domains[p], domain)
	}
}

// lookup returns the domains of every prefix containing ip, sorted and without repeats.
func (t *prefixTable) lookup(ip netip.Addr) []string {
	ip = ip.Unmap()
	levels := t.v6
	if ip.Is4() {
		levels = t.v4
	}
	var out []string
	for _, l := range levels {
		p, err := ip.Prefix(l.bits)
		if err != nil {
			continue
		}
		out = append(out, l.domains[p]...)
	}
	if len(out) > 1 {
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out
}
