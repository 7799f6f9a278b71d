package state

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Where the operator keeps the state in Kubernetes.
//
// The operator keeps each policy's State in ConfigMaps in its own namespace, where
// tenants cannot edit them and where its write access to ConfigMaps ends:
// StateName(namespace, policy, i) for part i of Shard(state, MaxPartBytes, parts used
// last time), labelled LabelState=StateLabel(namespace, policy), annotated
// AnnotationPolicy=<namespace>/<policy>, AnnotationPart and AnnotationParts, under
// StateKey. It writes only the parts whose bytes changed. Releases before this one kept
// them in the policy's namespace as LegacyStateName(policy, i); the operator reads those
// once, when the new ones do not exist yet.
const (
	StatePrefix      = "postwarden-discovery-"
	LabelState       = "relay.postwarden.dev/discovery-state"
	AnnotationPolicy = "relay.postwarden.dev/discovery-policy"
	AnnotationPart   = "relay.postwarden.dev/part"
	AnnotationParts  = "relay.postwarden.dev/parts"
	StateKey         = "addresses.jsonl"
	// MaxPartBytes keeps each state ConfigMap well under the API server's 1 MiB.
	MaxPartBytes = 900 << 10
)

// StateName is the name of part i of the state ConfigMaps of the policy namespace/name:
// StatePrefix+"<namespace>.<name>" (a namespace has no dots, so the pair is
// unambiguous), or, when that would not fit a ConfigMap name, a hash of it.
func StateName(namespace, policy string, i int) string {
	base := namespace + "." + policy
	if len(StatePrefix)+len(base)+len("-9999") > 253 {
		base = hashOf(namespace, policy)
	}
	return partName(StatePrefix+base, i)
}

// StateLabel is the LabelState value of the policy namespace/name: "<namespace>.<name>"
// when that is a valid label value, otherwise a hash of it.
func StateLabel(namespace, policy string) string {
	if v := namespace + "." + policy; len(v) <= 63 {
		return v // both are DNS names: letters, digits, '-' and '.' only
	}
	return hashOf(namespace, policy)
}

// LegacyStateName is where releases before StateName kept part i: in the policy's
// own namespace, named after the policy alone.
func LegacyStateName(policy string, i int) string { return partName(StatePrefix+policy, i) }

func partName(base string, i int) string {
	if i == 0 {
		return base
	}
	return base + "-" + strconv.Itoa(i)
}

func hashOf(namespace, policy string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + policy))
	return "h" + hex.EncodeToString(sum[:12])
}
