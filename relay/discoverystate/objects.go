package discoverystate

import (
	"strconv"
	"strings"
)

// Where discovery data lives in Kubernetes. Both sides use these names.
//
// Each relay replica owns one ConfigMap in its namespace, ObservationsPrefix+<pod
// name>, labelled LabelObservations=true, holding its current Batch (JSON) under
// BatchKey. The operator, after merging a batch into every policy state it touches,
// sets AnnotationAcked to AckValue(journal, highest seq merged); the relay then drops
// those observations from its journal and publishes the rest.
//
// The operator keeps each policy's State in ConfigMaps in the policy's namespace:
// StateName(policy, i) for part i of Shard(state, MaxPartBytes, parts used last time),
// labelled LabelState=<policy name>, with AnnotationPart and AnnotationParts, under
// StateKey. It writes only the parts whose bytes changed.
const (
	ObservationsPrefix = "postwarden-discovery-observations-"
	LabelObservations  = "relay.postwarden.dev/discovery-observations"
	AnnotationAcked    = "relay.postwarden.dev/discovery-acked"
	BatchKey           = "batch.json"

	StatePrefix     = "postwarden-discovery-"
	LabelState      = "relay.postwarden.dev/discovery-state"
	AnnotationPart  = "relay.postwarden.dev/part"
	AnnotationParts = "relay.postwarden.dev/parts"
	StateKey        = "addresses.jsonl"
	// MaxPartBytes keeps each state ConfigMap well under the API server's 1 MiB.
	MaxPartBytes = 900 << 10
)

// StateName is the name of part i of a policy's state ConfigMaps.
func StateName(policy string, i int) string {
	if i == 0 {
		return StatePrefix + policy
	}
	return StatePrefix + policy + "-" + strconv.Itoa(i)
}

// AckValue is the value of AnnotationAcked: the journal and the highest seq merged.
func AckValue(journal string, seq uint64) string {
	return journal + "/" + strconv.FormatUint(seq, 10)
}

// ParseAck reads an AnnotationAcked value.
func ParseAck(v string) (journal string, seq uint64, ok bool) {
	journal, n, found := strings.Cut(v, "/")
	if !found || journal == "" {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	return journal, seq, err == nil
}
