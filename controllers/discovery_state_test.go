package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// The state lives in the operator's namespace, where tenants cannot edit it: a state an
// earlier release kept in the policy's namespace is carried over once, and the state
// goes when its policy goes (there is no owner reference across namespaces).
func TestDiscoveryStateMovesHomeAndLeavesWithItsPolicy(t *testing.T) {
	discoveryClock.SetTime(time.Now()) // earlier tests may have moved it weeks ahead
	ns := newNamespace(t, "dstate")
	domain := ns + ".example"
	create(t, mailDomain(ns, "main", domain))

	// The earlier release's state: one pending address, in the tenant's namespace.
	seen := time.Now().UTC().Truncate(time.Second)
	legacy := dstate.State{Version: dstate.StateVersion, Policy: ns + "/learn", Addresses: []dstate.Address{{
		Address: "kept@" + domain, State: snapshot.DiscoveredPending, Reason: dstate.ReasonVerified,
		FirstSeen: seen, LastSeen: seen, Since: seen,
	}}}
	parts, err := dstate.Shard(legacy, dstate.MaxPartBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: dstate.LegacyStateName("learn", i),
			Labels: map[string]string{dstate.LabelState: "learn"},
			Annotations: map[string]string{dstate.AnnotationPart: strconv.Itoa(i),
				dstate.AnnotationParts: strconv.Itoa(len(parts))},
		}, Data: map[string]string{dstate.StateKey: string(p)}})
	}
	policy := discoveryPolicy(ns, "learn", 3, "main")
	create(t, policy)

	eventually(t, "the earlier state is carried into the operator namespace", func() error {
		st, cms, err := stateOf(t, ns, "learn")
		if err != nil {
			return err
		}
		// Carried over with its history (its state may move on with the clock).
		if a := addressIn(st, "kept@"+domain); a == nil || !a.FirstSeen.Equal(seen) {
			return fmt.Errorf("state %+v", st.Addresses)
		}
		for _, cm := range cms {
			if cm.Namespace != operatorNS || len(cm.OwnerReferences) != 0 {
				return fmt.Errorf("state ConfigMap %s/%s, owners %v", cm.Namespace, cm.Name, cm.OwnerReferences)
			}
		}
		return nil
	})

	if err := k8s.Delete(context.Background(), policy); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the state is deleted with its policy", func() error {
		var list corev1.ConfigMapList
		if err := k8s.List(context.Background(), &list, client.InNamespace(operatorNS),
			client.MatchingLabels{dstate.LabelState: dstate.StateLabel(ns, "learn")}); err != nil {
			return err
		}
		if len(list.Items) != 0 {
			return errors.New("state ConfigMaps remain")
		}
		return nil
	})
}
