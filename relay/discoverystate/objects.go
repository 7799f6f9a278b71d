package discoverystate

import (
	"strconv"
	"strings"
)

// Where the observations live in Kubernetes. Both sides use these names.
//
// Each relay replica owns one ConfigMap in its namespace, ObservationsPrefix+<pod
// name>, labelled LabelObservations=true, holding its current Batch (JSON) under
// BatchKey. The operator, after merging a batch into every policy state it touches,
// sets AnnotationAcked to AckValue(journal, highest seq merged); the relay then drops
// those observations from its journal and publishes the rest.
const (
	ObservationsPrefix = "postwarden-discovery-observations-"
	LabelObservations  = "relay.postwarden.dev/discovery-observations"
	AnnotationAcked    = "relay.postwarden.dev/discovery-acked"
	BatchKey           = "batch.json"
)

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
