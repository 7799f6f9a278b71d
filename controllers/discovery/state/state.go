// Package state is the operator's side of SMTP Discovery: the authoritative per-policy
// State it keeps (addresses, journal watermarks, catch-all domains), Merge, the pure
// function that folds the relays' observation batches (relay/discoverystate, the wire
// format the two sides share) into that state and applies the lifecycle of every
// discovered address, Apply, which puts the state into the relay config snapshot, and
// the encoding and ConfigMaps in which the operator stores the state. Only the operator
// runs this code; the relay sees its result through the snapshot alone.
// docs/discovery.md describes the formats for humans.
package state

import (
	"strings"
	"time"
)

// StateVersion identifies the format of a State. A reader refuses any other.
const StateVersion = "relay.postwarden.dev/discovery-state/v1"

// Address is one discovered address and the evidence about it.
type Address struct {
	Address string `json:"address"`
	// State is one of the snapshot.Discovered* states.
	State string `json:"state"`
	// Target is the user an Alias points to.
	Target string `json:"target,omitempty"`
	// Role is a User's role.
	Role string `json:"role,omitempty"`
	// Reason says why the address is in its state (one of the Reason* constants).
	Reason    string    `json:"reason,omitempty"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	// Since is when the address entered its current state.
	Since time.Time `json:"since"`
	// Clean holds the times of clean messages within the window, at most the threshold's
	// worth, newest last. Only Pending addresses keep them.
	Clean []time.Time `json:"clean,omitempty"`
}

// Reasons for a state.
const (
	ReasonVerified  = "Verified"  // Pending: the domain's server accepted it
	ReasonThreshold = "Threshold" // User: enough clean messages in the window
	ReasonOutbound  = "Outbound"  // User: seen as an outbound sender
	ReasonExpired   = "Expired"   // Invalid, or User with expiredAddressesBecomeUsers
	ReasonLocalPart = "LocalPart" // Alias: same local part as a user of another domain
)

// Watermark is how far the operator has merged one journal.
type Watermark struct {
	// Seq is the highest sequence number merged.
	Seq uint64 `json:"seq"`
	// Seen is when the journal last published.
	Seen time.Time `json:"seen"`
}

// State is the authoritative discovery state of one DiscoveryPolicy, written only by
// the operator.
type State struct {
	// Version must be StateVersion.
	Version string `json:"version"`
	// Policy is "<namespace>/<name>" of the DiscoveryPolicy.
	Policy string `json:"policy"`
	// Journals maps a journal identity to how far it has been merged.
	Journals map[string]Watermark `json:"journals,omitempty"`
	// Addresses are sorted by address.
	Addresses []Address `json:"addresses,omitempty"`
	// CatchAll maps a covered domain to the last time a relay found its server accepting
	// any address; an entry older than CatchAllWindow is dropped.
	CatchAll map[string]time.Time `json:"catchAll,omitempty"`
}

// Counts counts addresses by state.
type Counts struct {
	Pending, Users, Aliases, Invalid int
}

func localpart(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr
	}
	return addr[:i]
}

func domainpart(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}
