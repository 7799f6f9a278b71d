package discoverystate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// State is stored as JSON lines, so that kubectl shows one address per line: the first
// line is the header (version, policy, journals), each further line one Address, in
// address order. Split cuts the text at line boundaries into parts that fit in
// ConfigMaps; DecodeState reads the parts back, in order.

type header struct {
	Version  string               `json:"version"`
	Policy   string               `json:"policy"`
	Journals map[string]Watermark `json:"journals,omitempty"`
}

// EncodeState returns st as JSON lines; equal states give equal bytes.
func EncodeState(st State) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(header{Version: StateVersion, Policy: st.Policy, Journals: st.Journals}); err != nil {
		return nil, fmt.Errorf("encoding discovery state: %w", err)
	}
	addrs := slices.Clone(st.Addresses)
	slices.SortFunc(addrs, func(x, y Address) int { return strings.Compare(x.Address, y.Address) })
	for _, a := range addrs {
		if err := enc.Encode(a); err != nil {
			return nil, fmt.Errorf("encoding discovery state: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// DecodeState reads the parts written by EncodeState and Split, in order.
func DecodeState(parts ...[]byte) (State, error) {
	sc := bufio.NewScanner(bytes.NewReader(bytes.Join(parts, nil)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var st State
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if line == 1 {
			var h header
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
				return State{}, fmt.Errorf("discovery state header: %w", err)
			}
			if h.Version != StateVersion {
				return State{}, fmt.Errorf("discovery state version %q, want %q", h.Version, StateVersion)
			}
			st = State{Version: h.Version, Policy: h.Policy, Journals: h.Journals}
			continue
		}
		var a Address
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return State{}, fmt.Errorf("discovery state line %d: %w", line, err)
		}
		st.Addresses = append(st.Addresses, a)
	}
	if err := sc.Err(); err != nil {
		return State{}, fmt.Errorf("reading discovery state: %w", err)
	}
	if st.Version == "" {
		return State{}, errors.New("discovery state is empty")
	}
	return st, nil
}

// Split cuts JSON-lines data into parts of at most maxBytes, at line boundaries. A line
// longer than maxBytes gets a part of its own.
func Split(data []byte, maxBytes int) [][]byte {
	var parts [][]byte
	for len(data) > 0 {
		end := min(len(data), maxBytes)
		if end < len(data) {
			if nl := bytes.LastIndexByte(data[:end], '\n'); nl >= 0 {
				end = nl + 1
			} else if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
				end = nl + 1
			} else {
				end = len(data)
			}
		}
		parts = append(parts, data[:end])
		data = data[end:]
	}
	return parts
}

// EncodeBatch returns b as JSON, with Version set.
func EncodeBatch(b Batch) ([]byte, error) {
	b.Version = BatchVersion
	if b.Observations == nil {
		b.Observations = []Observation{}
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding discovery batch: %w", err)
	}
	return data, nil
}

// DecodeBatch parses a batch and checks its version.
func DecodeBatch(data []byte) (Batch, error) {
	var b Batch
	if err := json.Unmarshal(data, &b); err != nil {
		return Batch{}, fmt.Errorf("decoding discovery batch: %w", err)
	}
	if b.Version != BatchVersion {
		return Batch{}, fmt.Errorf("discovery batch version %q, want %q", b.Version, BatchVersion)
	}
	if b.Journal == "" {
		return Batch{}, errors.New("discovery batch has no journal identity")
	}
	return b, nil
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
