package discovery

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
)

// storedState is a policy's discovery state as its ConfigMaps hold it.
type storedState struct {
	state dstate.State
	// parts are the ConfigMaps by index; a missing index is nil.
	parts []*corev1.ConfigMap
}

// versions identifies the ConfigMaps a state was read from.
func (s *storedState) versions() string {
	var b strings.Builder
	for _, cm := range s.parts {
		if cm != nil {
			b.WriteString(cm.Name + "=" + cm.ResourceVersion + ";")
		}
	}
	return b.String()
}

// readState assembles a policy's state from its ConfigMaps (labelled
// dstate.LabelState, in the operator's namespace). Only a complete
// set counts: parts 0..n-1 that all say n parts, where n is what part 0 says. Extra parts
// beyond n are ignored. No ConfigMap at all is an empty state; an incomplete or
// undecodable set is an error, and the caller keeps what it had.
func readState(cms []corev1.ConfigMap, policy string) (*storedState, error) {
	out := &storedState{state: dstate.State{Version: dstate.StateVersion, Policy: policy}}
	if len(cms) == 0 {
		return out, nil
	}
	byIndex := map[int]*corev1.ConfigMap{}
	for i := range cms {
		cm := &cms[i]
		idx, err := strconv.Atoi(cm.Annotations[dstate.AnnotationPart])
		if err != nil || idx < 0 {
			continue
		}
		byIndex[idx] = cm
	}
	first := byIndex[0]
	if first == nil {
		return nil, fmt.Errorf("discovery state of %s has no part 0", policy)
	}
	n, err := strconv.Atoi(first.Annotations[dstate.AnnotationParts])
	if err != nil || n < 1 || n > 1<<16 {
		return nil, fmt.Errorf("discovery state of %s: part 0 has a bad %s annotation", policy, dstate.AnnotationParts)
	}
	out.parts = make([]*corev1.ConfigMap, n)
	data := make([][]byte, 0, n)
	for i := range n {
		cm := byIndex[i]
		if cm == nil || cm.Annotations[dstate.AnnotationParts] != strconv.Itoa(n) {
			return nil, fmt.Errorf("discovery state of %s: part %d of %d is missing or from another write", policy, i, n)
		}
		out.parts[i] = cm
		data = append(data, []byte(cm.Data[dstate.StateKey]))
	}
	st, err := dstate.DecodeState(data...)
	if err != nil {
		return nil, fmt.Errorf("discovery state of %s: %w", policy, err)
	}
	// An address lives in one part; a hand edit could repeat one, which the snapshot
	// could not hold.
	st.Addresses = slices.CompactFunc(st.Addresses, func(a, b dstate.Address) bool { return a.Address == b.Address })
	if st.Policy != policy {
		return nil, fmt.Errorf("discovery state in the ConfigMaps of %s names policy %q", policy, st.Policy)
	}
	out.state = st
	return out, nil
}

// salvageState reads what it can of a damaged set (a part deleted or edited by hand):
// every part that decodes on its own, the header from part 0 if it does. The merge loop
// writes the result back as a complete set, so one broken ConfigMap cannot stop
// discovery. Watermarks lost with part 0 may make a replayed batch count again.
func salvageState(cms []corev1.ConfigMap, policy string) *storedState {
	out := &storedState{state: dstate.State{Version: dstate.StateVersion, Policy: policy}}
	seen := map[string]bool{}
	for i := range cms {
		cm := &cms[i]
		idx, err := strconv.Atoi(cm.Annotations[dstate.AnnotationPart])
		if err != nil || idx < 0 || idx >= 1<<16 {
			continue
		}
		for len(out.parts) <= idx {
			out.parts = append(out.parts, nil)
		}
		out.parts[idx] = cm
		data := []byte(cm.Data[dstate.StateKey])
		if idx != 0 {
			// A part without the header: give it one to decode.
			h, _ := dstate.EncodeState(dstate.State{Policy: policy})
			data = append(h, data...)
		}
		st, err := dstate.DecodeState(data)
		if err != nil {
			continue
		}
		if idx == 0 && st.Policy == policy {
			out.state.Journals = st.Journals
		}
		for _, a := range st.Addresses {
			if !seen[a.Address] {
				seen[a.Address] = true
				out.state.Addresses = append(out.state.Addresses, a)
			}
		}
	}
	slices.SortFunc(out.state.Addresses, func(a, b dstate.Address) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// stateConfigMaps lists the state ConfigMaps of the policy namespace/name from r; they
// live in home, the operator's namespace.
func stateConfigMaps(ctx context.Context, r client.Reader, home, namespace, name string) ([]corev1.ConfigMap, error) {
	var list corev1.ConfigMapList
	if err := r.List(ctx, &list, client.InNamespace(home),
		client.MatchingLabels{dstate.LabelState: dstate.StateLabel(namespace, name)}); err != nil {
		return nil, fmt.Errorf("listing discovery state ConfigMaps of %s/%s: %w", namespace, name, err)
	}
	// A label value that is a hash could, in theory, be shared: keep this policy's own.
	own := list.Items[:0]
	for _, cm := range list.Items {
		if cm.Annotations[dstate.AnnotationPolicy] == namespace+"/"+name {
			own = append(own, cm)
		}
	}
	return own, nil
}

// legacyStateConfigMaps reads the state a release before this one kept in the policy's
// own namespace (dstate.LegacyStateName), by name: the operator may get, but no
// longer list or write, ConfigMaps outside its namespace. Nothing found is no error.
func legacyStateConfigMaps(ctx context.Context, r client.Reader, namespace, name string) ([]corev1.ConfigMap, error) {
	var out []corev1.ConfigMap
	for i := 0; ; i++ {
		var cm corev1.ConfigMap
		err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: dstate.LegacyStateName(name, i)}, &cm)
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the earlier discovery state of %s/%s: %w", namespace, name, err)
		}
		if cm.Labels[dstate.LabelState] != name {
			return out, nil // not ours
		}
		out = append(out, cm)
		if n, err := strconv.Atoi(cm.Annotations[dstate.AnnotationParts]); err != nil || i+1 >= n {
			return out, nil
		}
	}
}

// writeState writes next over cur: only the parts whose bytes changed, the highest index
// first and part 0 (the header, with the journal watermarks) last, each update
// conditional on the resourceVersion read. It returns the stored result and whether
// anything was written.
func (r *reconciler) writeState(ctx context.Context, policy *relayv1alpha1.DiscoveryPolicy,
	cur *storedState, next dstate.State) (*storedState, bool, error) {
	home := r.opts.Namespace
	parts, err := dstate.Shard(next, dstate.MaxPartBytes, len(cur.parts))
	if err != nil {
		return nil, false, err
	}
	out := &storedState{state: next, parts: make([]*corev1.ConfigMap, len(parts))}
	count := strconv.Itoa(len(parts))
	written := false
	for i := len(parts) - 1; i >= 0; i-- {
		var old *corev1.ConfigMap
		if i < len(cur.parts) {
			old = cur.parts[i]
		}
		if old != nil && old.Namespace != home {
			old = nil // read from the earlier location: write it anew here
		}
		if old != nil && old.Annotations[dstate.AnnotationParts] == count &&
			bytes.Equal([]byte(old.Data[dstate.StateKey]), parts[i]) {
			out.parts[i] = old
			continue
		}
		// No owner reference: the policy is in another namespace. collectStates deletes
		// the ConfigMaps of a policy that is gone.
		labels := map[string]string{}
		maps.Copy(labels, r.opts.Labels)
		labels[dstate.LabelState] = dstate.StateLabel(policy.Namespace, policy.Name)
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: home,
				Name:      dstate.StateName(policy.Namespace, policy.Name, i),
				Labels:    labels,
				Annotations: map[string]string{
					dstate.AnnotationPolicy: policy.Namespace + "/" + policy.Name,
					dstate.AnnotationPart:   strconv.Itoa(i),
					dstate.AnnotationParts:  count,
				},
			},
			Data: map[string]string{dstate.StateKey: string(parts[i])},
		}
		if old == nil {
			err = r.client.Create(ctx, cm, client.FieldOwner(r.opts.FieldOwner))
		} else {
			cm.ResourceVersion = old.ResourceVersion
			err = r.client.Update(ctx, cm, client.FieldOwner(r.opts.FieldOwner))
		}
		if err != nil {
			return nil, written, fmt.Errorf("writing discovery state %s/%s: %w", cm.Namespace, cm.Name, err)
		}
		out.parts[i] = cm
		written = true
	}
	return out, written, nil
}

// namespace is where a stored state's ConfigMaps are, "" when there are none.
func (s *storedState) namespace() string {
	for _, cm := range s.parts {
		if cm != nil {
			return cm.Namespace
		}
	}
	return ""
}

// stateNames are the ConfigMap names of a stored state, for status.
func (s *storedState) names() []string {
	var names []string
	for _, cm := range s.parts {
		if cm != nil {
			names = append(names, cm.Name)
		}
	}
	return names
}
