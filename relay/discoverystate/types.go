// Package discoverystate is the shared language of SMTP Discovery between the relays and
// the operator: the observations a relay records (an address verified or refused by the
// domain's server, a clean delivery, an outbound sender), the batches in which it
// publishes them, the authoritative per-policy State the operator keeps, and Merge, the
// pure function that folds observations into that state and applies the lifecycle of
// every discovered address. It imports nothing from the relay's internals, so the
// operator can use it directly. docs/discovery.md describes the formats for humans.
package discoverystate

import (
	"strings"
	"time"
)

// Format versions. A reader refuses any other.
const (
	// BatchVersion identifies the format of a Batch.
	BatchVersion = "relay.postwarden.dev/discovery-batch/v1"
	// StateVersion identifies the format of a State.
	StateVersion = "relay.postwarden.dev/discovery-state/v1"
)

// Kind is what an Observation saw.
type Kind string

// Observation kinds.
const (
	// Verified: a verification callout got 250 for the address.
	Verified Kind = "Verified"
	// Refused: a verification callout got a permanent (5xx) refusal for the address.
	Refused Kind = "Refused"
	// Delivered: a message to the address was delivered to the domain's server (250): a
	// clean message, which counts towards the detection threshold.
	Delivered Kind = "Delivered"
	// OutboundSender: a sending server relayed mail from the address, which the
	// directory did not list.
	OutboundSender Kind = "OutboundSender"
	// CatchAll: the domain's server accepted a random address no one would have (the
	// Address of the observation), so its callouts cannot tell a real mailbox from a
	// made-up one. While a domain is catch-all, nothing new of it is discovered.
	CatchAll Kind = "CatchAll"
)

// Observation is one fact a relay recorded about an address of a managed domain.
type Observation struct {
	// Seq numbers the observations of one journal, from 1, without gaps or repeats.
	Seq  uint64 `json:"seq"`
	Kind Kind   `json:"kind"`
	// Address is lower case.
	Address string    `json:"address"`
	Time    time.Time `json:"time"`
}

// Batch is what a relay publishes: the observations of its journal not yet
// acknowledged, oldest first. The operator may see a batch, or part of it, more than
// once; Merge skips what it has already merged, by Journal and Seq.
type Batch struct {
	// Version must be BatchVersion.
	Version string `json:"version"`
	// Journal is the random identity of the relay's journal. It changes when a journal is
	// created afresh (a new volume), so sequence numbers of different journals never mix.
	Journal string `json:"journal"`
	// Relay is the pod name of the publishing replica, for humans.
	Relay        string        `json:"relay,omitempty"`
	Observations []Observation `json:"observations"`
}

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
