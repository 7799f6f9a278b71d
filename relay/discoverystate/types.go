// Package discoverystate is the wire format of SMTP Discovery from the relays to the
// operator, and nothing else: the observations a relay records (an address verified or
// refused by the domain's server, a clean delivery, an outbound sender, a catch-all
// server), the versioned Batch in which it publishes them, the ConfigMap that carries
// the batch and the annotation by which the operator acknowledges it. The operator's
// per-policy state and the merge that folds batches into it are the operator's own
// (controllers/discovery/state). It imports nothing from either side, so both can use
// it. docs/discovery.md describes the formats for humans.
package discoverystate

import "time"

// BatchVersion identifies the format of a Batch. A reader refuses any other.
const BatchVersion = "relay.postwarden.dev/discovery-batch/v1"

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
// once; its merge skips what it has already merged, by Journal and Seq.
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
