package chart

import (
	"context"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
)

// The chart's RBAC, applied for real, grants what the API server's own authorizer says:
// the relay reads Secrets and keeps Leases in the release namespace and nothing else; the
// operator writes config Secrets only there.
func TestChartRBACGrantsLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	ns, other := newNamespace(t), newNamespace(t)
	r, err := render("perm", ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range r.Objects {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
			if err := serverSideApply(ctx, o, false); err != nil {
				t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	relaySA := "system:serviceaccount:" + ns + ":perm-postwarden-relay"
	operatorSA := "system:serviceaccount:" + ns + ":perm-postwarden-operator"

	type access struct {
		user, verb, group, resource, namespace string
	}
	allowed := map[string]access{
		"the relay watches Secrets in its namespace":           {relaySA, "watch", "", "secrets", ns},
		"the relay gets a certificate Secret in its namespace": {relaySA, "get", "", "secrets", ns},
		"the relay updates its status Lease":                   {relaySA, "update", "coordination.k8s.io", "leases", ns},
		"the relay creates its status Lease":                   {relaySA, "create", "coordination.k8s.io", "leases", ns},
		"the relay updates its discovery observations":         {relaySA, "update", "", "configmaps", ns},
		"the operator updates config Secrets in its namespace": {operatorSA, "update", "", "secrets", ns},
		"the operator lists MailDomains everywhere":            {operatorSA, "list", "relay.postwarden.dev", "maildomains", ""},
		"the operator writes SMTPCredential status":            {operatorSA, "patch", "relay.postwarden.dev", "smtpcredentials/status", other},
		"the operator keeps its leader Lease":                  {operatorSA, "update", "coordination.k8s.io", "leases", ns},
	}
	denied := map[string]access{
		"the relay cannot read Secrets of another namespace":     {relaySA, "list", "", "secrets", other},
		"the relay cannot list Secrets cluster-wide":             {relaySA, "list", "", "secrets", ""},
		"the relay cannot write Secrets":                         {relaySA, "create", "", "secrets", ns},
		"the relay cannot delete Leases":                         {relaySA, "delete", "coordination.k8s.io", "leases", ns},
		"the relay cannot read the custom resources":             {relaySA, "list", "relay.postwarden.dev", "maildomains", ns},
		"the relay cannot read Pods":                             {relaySA, "list", "", "pods", ns},
		"the relay cannot touch ConfigMaps of another namespace": {relaySA, "update", "", "configmaps", other},
		"the relay cannot delete ConfigMaps":                     {relaySA, "delete", "", "configmaps", ns},
		"the operator cannot update Secrets of other namespaces": {operatorSA, "update", "", "secrets", other},
		"the operator cannot touch Leases of other namespaces":   {operatorSA, "update", "coordination.k8s.io", "leases", other},
		"the operator cannot write the custom resources' spec":   {operatorSA, "update", "relay.postwarden.dev", "maildomains", other},
	}
	can := func(a access) (bool, error) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   a.user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: a.namespace, Verb: a.verb, Group: a.group, Resource: a.resource,
			},
		}}
		if res, sub, found := strings.Cut(a.resource, "/"); found {
			sar.Spec.ResourceAttributes.Resource, sar.Spec.ResourceAttributes.Subresource = res, sub
		}
		if err := env.Client.Create(ctx, sar); err != nil {
			return false, err
		}
		return sar.Status.Allowed, nil
	}
	// The authorizer sees new bindings through its informers: wait until every grant
	// shows, so that the denials below are not merely early.
	deadline := time.Now().Add(30 * time.Second)
	for name, a := range allowed {
		for {
			ok, err := can(a)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: denied", name)
				break
			}
			time.Sleep(50 * time.Millisecond) // polling the authorizer with a deadline
		}
	}
	for name, a := range denied {
		ok, err := can(a)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Errorf("%s: allowed", name)
		}
	}
}
