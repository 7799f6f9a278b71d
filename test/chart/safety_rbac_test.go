package chart

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// checkRBAC checks that every role is bound and every binding's role exists, that the
// relay's account has no cluster-wide binding, and that its rules stay within reading
// Secrets and writing its status Lease.
func checkRBAC(t *testing.T, r *rendered) {
	t.Helper()
	roles := map[string]*unstructured.Unstructured{}
	for _, o := range r.Objects {
		if o.GetKind() == "Role" || o.GetKind() == "ClusterRole" {
			roles[o.GetKind()+"/"+o.GetName()] = o
		}
	}
	bound := map[string]bool{}
	relaySA := ""
	if sts := workload(r, "StatefulSet"); sts != nil {
		relaySA = nested[string](t, sts, "spec", "template", "spec", "serviceAccountName")
	}
	for _, b := range r.Objects {
		if b.GetKind() != "RoleBinding" && b.GetKind() != "ClusterRoleBinding" {
			continue
		}
		ref := nested[string](t, b, "roleRef", "kind") + "/" + nested[string](t, b, "roleRef", "name")
		role, ok := roles[ref]
		if !ok {
			t.Errorf("%s %s binds %s, which is not rendered", b.GetKind(), b.GetName(), ref)
			continue
		}
		bound[ref] = true
		for _, s := range nested[[]any](t, b, "subjects") {
			s := mustMap(s)
			if s["kind"] != "ServiceAccount" || relaySA == "" || s["name"] != relaySA {
				continue
			}
			if b.GetKind() == "ClusterRoleBinding" || role.GetKind() == "ClusterRole" {
				t.Errorf("the relay's ServiceAccount is bound to %s by %s %s: it must have nothing cluster-wide", ref, b.GetKind(), b.GetName())
			}
			checkRelayRules(t, role)
		}
	}
	for ref := range roles {
		if !bound[ref] {
			t.Errorf("%s is rendered but bound to nobody", ref)
		}
	}
}

// relayAllowed is everything the relay may do: read Secrets, keep its status Lease and
// its discovery observations.
var relayAllowed = map[string][]string{
	"/secrets":                   {"get", "list", "watch"},
	"coordination.k8s.io/leases": {"get", "create", "update"},
	"/configmaps":                {"get", "create", "update"},
}

func checkRelayRules(t *testing.T, role *unstructured.Unstructured) {
	t.Helper()
	for _, rule := range nested[[]any](t, role, "rules") {
		rule := mustMap(rule)
		for _, g := range strSlice(rule["apiGroups"]) {
			for _, res := range strSlice(rule["resources"]) {
				allowed := relayAllowed[g+"/"+res]
				for _, verb := range strSlice(rule["verbs"]) {
					if !slices.Contains(allowed, verb) {
						t.Errorf("the relay's %s %s allows %s on %q/%s", role.GetKind(), role.GetName(), verb, g, res)
					}
				}
			}
		}
	}
}
