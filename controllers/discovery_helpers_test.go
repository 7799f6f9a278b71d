package controllers_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// publish writes a relay's observations ConfigMap as the relay does: the batch under
// batch.json, keeping whatever acknowledgement the operator left.
func publish(t testing.TB, pod, journal string, obs ...discoverystate.Observation) {
	t.Helper()
	data, err := discoverystate.EncodeBatch(discoverystate.Batch{Journal: journal, Relay: pod, Observations: obs})
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: discoverystate.ObservationsPrefix + pod,
		Labels: map[string]string{discoverystate.LabelObservations: "true"}}}
	eventually(t, "publishing the observations of "+pod, func() error {
		err := get(t, cm)
		if apierrors.IsNotFound(err) {
			cm.Data = map[string]string{discoverystate.BatchKey: string(data)}
			cm.ResourceVersion = ""
			return k8s.Create(context.Background(), cm)
		}
		if err != nil {
			return err
		}
		cm.Data = map[string]string{discoverystate.BatchKey: string(data)}
		return k8s.Update(context.Background(), cm)
	})
}

func waitAck(t testing.TB, pod, want string) {
	t.Helper()
	eventually(t, pod+" is acknowledged up to "+want, func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: discoverystate.ObservationsPrefix + pod}}
		if err := get(t, cm); err != nil {
			return err
		}
		if got := cm.Annotations[discoverystate.AnnotationAcked]; got != want {
			return fmt.Errorf("acknowledged %q", got)
		}
		return nil
	})
}

// stateOf reads a policy's state as kubectl would: in the operator's namespace.
func stateOf(t testing.TB, ns, policy string) (dstate.State, []corev1.ConfigMap, error) {
	var list corev1.ConfigMapList
	if err := k8s.List(context.Background(), &list, client.InNamespace(operatorNS),
		client.MatchingLabels{dstate.LabelState: dstate.StateLabel(ns, policy)}); err != nil {
		return dstate.State{}, nil, err
	}
	if len(list.Items) == 0 {
		return dstate.State{}, nil, fmt.Errorf("no state ConfigMaps")
	}
	var parts [][]byte
	for _, cm := range list.Items {
		parts = append(parts, []byte(cm.Data[dstate.StateKey]))
	}
	st, err := dstate.DecodeState(parts...)
	return st, list.Items, err
}

func addressIn(st dstate.State, addr string) *dstate.Address {
	for i := range st.Addresses {
		if st.Addresses[i].Address == addr {
			return &st.Addresses[i]
		}
	}
	return nil
}

// stateWhere polls until the policy's state satisfies check.
func stateWhere(t testing.TB, ns, policy, what string, check func(dstate.State) error) dstate.State {
	t.Helper()
	var st dstate.State
	eventually(t, what, func() error {
		s, _, err := stateOf(t, ns, policy)
		if err != nil {
			return err
		}
		if err := check(s); err != nil {
			return err
		}
		st = s
		return nil
	})
	return st
}

func wantAddress(st dstate.State, addr, state string, clean int) error {
	a := addressIn(st, addr)
	switch {
	case a == nil && state == "":
		return nil
	case a == nil:
		return fmt.Errorf("%s is not tracked", addr)
	case state == "":
		return fmt.Errorf("%s is tracked as %s, want forgotten", addr, a.State)
	case a.State != state || len(a.Clean) != clean:
		return fmt.Errorf("%s is %s with %d clean messages, want %s with %d", addr, a.State, len(a.Clean), state, clean)
	}
	return nil
}

func discovered(s *snapshot.Snapshot, domain string) map[string]string {
	out := map[string]string{}
	if d := findDomain(s, domain); d != nil {
		for _, a := range d.Discovered {
			out[a.Address] = a.State
		}
	}
	return out
}

func discoveryPolicy(ns, name string, threshold int32, refs ...string) *relayv1alpha1.DiscoveryPolicy {
	p := &relayv1alpha1.DiscoveryPolicy{ObjectMeta: objectMeta(ns, name), Spec: relayv1alpha1.DiscoveryPolicySpec{DetectionThreshold: threshold}}
	for _, r := range refs {
		p.Spec.MailDomainRefs = append(p.Spec.MailDomainRefs, relayv1alpha1.MailDomainReference{Name: r})
	}
	return p
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
