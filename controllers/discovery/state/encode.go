package state

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// State is stored as JSON lines, so that kubectl shows one address per line: a header
// line (version, policy, journals), then one Address per line. EncodeState writes it
// whole, in address order. Shard spreads it over parts by a hash of each address, so
// that a merge which changes a few addresses rewrites only the parts holding them; part
// 0 starts with the header. DecodeState reads either form back.

type header struct {
	Version  string               `json:"version"`
	Policy   string               `json:"policy"`
	Journals map[string]Watermark `json:"journals,omitempty"`
}

// EncodeState returns st as JSON lines; equal states give equal bytes.
func EncodeState(st State) ([]byte, error) {
	parts, err := encodeParts(st, 1)
	if err != nil {
		return nil, err
	}
	return parts[0], nil
}

// Shard encodes st into a power-of-two number of parts, at least minParts (the count
// used last time, so that parts stay put), each at most maxBytes when possible: the
// count doubles until every part fits or a part holds a single address.
func Shard(st State, maxBytes, minParts int) ([][]byte, error) {
	n := 1
	for n < minParts {
		n *= 2
	}
	for {
		parts, err := encodeParts(st, n)
		if err != nil {
			return nil, err
		}
		fits := true
		for _, p := range parts {
			if len(p) > maxBytes && bytes.Count(p, []byte("\n")) > 2 {
				fits = false
			}
		}
		if fits || n >= 1<<16 {
			return parts, nil
		}
		n *= 2
	}
}

// PartOf returns the part, of n, that holds address.
func PartOf(address string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(address))
	return int(h.Sum32() % uint32(n))
}

func encodeParts(st State, n int) ([][]byte, error) {
	bufs := make([]bytes.Buffer, n)
	h, err := json.Marshal(header{Version: StateVersion, Policy: st.Policy, Journals: st.Journals})
	if err != nil {
		return nil, fmt.Errorf("encoding discovery state: %w", err)
	}
	bufs[0].Write(h)
	bufs[0].WriteByte('\n')
	addrs := slices.Clone(st.Addresses)
	slices.SortFunc(addrs, func(x, y Address) int { return strings.Compare(x.Address, y.Address) })
	for _, a := range addrs {
		line, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("encoding discovery state: %w", err)
		}
		b := &bufs[PartOf(a.Address, n)]
		b.Write(line)
		b.WriteByte('\n')
	}
	parts := make([][]byte, n)
	for i := range bufs {
		parts[i] = bufs[i].Bytes()
	}
	return parts, nil
}

// DecodeState reads what EncodeState or Shard wrote; parts may come in any order, as
// long as one of them starts with the header.
func DecodeState(parts ...[]byte) (State, error) {
	var st State
	for _, part := range parts {
		sc := bufio.NewScanner(bytes.NewReader(part))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		line := 0
		for sc.Scan() {
			line++
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			if line == 1 && bytes.Contains(sc.Bytes(), []byte(`"version"`)) {
				var h header
				if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
					return State{}, fmt.Errorf("discovery state header: %w", err)
				}
				if h.Version != StateVersion {
					return State{}, fmt.Errorf("discovery state version %q, want %q", h.Version, StateVersion)
				}
				st.Version, st.Policy, st.Journals = h.Version, h.Policy, h.Journals
				continue
			}
			var a Address
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil || a.Address == "" {
				return State{}, fmt.Errorf("discovery state line %d is not an address: %q", line, sc.Text())
			}
			st.Addresses = append(st.Addresses, a)
		}
		if err := sc.Err(); err != nil {
			return State{}, fmt.Errorf("reading discovery state: %w", err)
		}
	}
	if st.Version == "" {
		return State{}, errors.New("discovery state has no header")
	}
	slices.SortFunc(st.Addresses, func(x, y Address) int { return strings.Compare(x.Address, y.Address) })
	return st, nil
}

// Discovered returns the addresses of domain as the snapshot carries them, sorted.
func (st State) Discovered(domain string) []snapshot.DiscoveredAddress {
	var out []snapshot.DiscoveredAddress
	for _, a := range st.Addresses {
		if domainpart(a.Address) == domain {
			out = append(out, snapshot.DiscoveredAddress{Address: a.Address, State: a.State, Target: a.Target, Role: a.Role})
		}
	}
	return out
}

// Counts counts the addresses by state.
func (st State) Counts() Counts {
	var c Counts
	for _, a := range st.Addresses {
		switch a.State {
		case snapshot.DiscoveredPending:
			c.Pending++
		case snapshot.DiscoveredUser:
			c.Users++
		case snapshot.DiscoveredAlias:
			c.Aliases++
		case snapshot.DiscoveredInvalid:
			c.Invalid++
		}
	}
	return c
}

// Recent returns the n addresses that changed state last, newest first: the ones worth
// showing in the policy's status and in the weekly report.
func (st State) Recent(n int) []Address {
	out := slices.Clone(st.Addresses)
	slices.SortStableFunc(out, func(x, y Address) int {
		if c := y.Since.Compare(x.Since); c != 0 {
			return c
		}
		return strings.Compare(x.Address, y.Address)
	})
	return out[:min(n, len(out))]
}

// CatchAllDomains returns the domains currently found catch-all, sorted.
func (st State) CatchAllDomains() []string {
	return slices.Sorted(maps.Keys(st.CatchAll))
}

// LimitedDomains returns the domains whose discovered users and aliases have reached
// limit (zero: DefaultMaxAddressesPerDomain), sorted: no further address of them is
// promoted.
func (st State) LimitedDomains(limit int) []string {
	limit = cmp.Or(limit, DefaultMaxAddressesPerDomain)
	n := map[string]int{}
	for _, a := range st.Addresses {
		if a.State == snapshot.DiscoveredUser || a.State == snapshot.DiscoveredAlias {
			n[domainpart(a.Address)]++
		}
	}
	var out []string
	for d, c := range n {
		if c >= limit {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}
