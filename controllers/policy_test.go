package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestDiscoveryPolicyConflictIsReportedOnTheYounger(t *testing.T) {
	ns := newNamespace(t, "discovery")
	create(t, mailDomain(ns, "main", ns+".example", "a@"+ns+".example"))
	refs := []relayv1alpha1.MailDomainReference{{Name: "main"}}
	older := &relayv1alpha1.DiscoveryPolicy{ObjectMeta: objectMeta(ns, "older"), Spec: relayv1alpha1.DiscoveryPolicySpec{MailDomainRefs: refs}}
	create(t, older)
	eventually(t, "the first policy is accepted", func() error {
		if err := get(t, older); err != nil {
			return err
		}
		if !slices.Equal(older.Status.MailDomains, []string{ns + ".example"}) {
			return fmt.Errorf("status.mailDomains %v", older.Status.MailDomains)
		}
		return wantCondition(older.Status.Conditions, relayv1alpha1.ConditionAccepted, "True/"+relayv1alpha1.ReasonCompiled)
	})
	younger := &relayv1alpha1.DiscoveryPolicy{ObjectMeta: objectMeta(ns, "younger"), Spec: relayv1alpha1.DiscoveryPolicySpec{MailDomainRefs: refs}}
	create(t, younger)
	eventually(t, "the second policy reports PolicyConflict", func() error {
		if err := get(t, younger); err != nil {
			return err
		}
		return wantCondition(younger.Status.Conditions, relayv1alpha1.ConditionAccepted, "False/"+relayv1alpha1.ReasonPolicyConflict)
	})
	snapshotWhere(t, "the domain uses the older policy", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, ns+".example"); d == nil || d.DiscoveryPolicy != ns+"/older" {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
}

func TestTLSPolicyOverlapAndCABundle(t *testing.T) {
	ns := newNamespace(t, "tls")
	domain := ns + ".example"
	create(t, mailDomain(ns, "main", domain, "a@"+domain))
	caPEM := testCAPEM(t)
	ca := &corev1.Secret{ObjectMeta: objectMeta(ns, "partner-ca"), StringData: map[string]string{"ca.crt": caPEM}}
	create(t, ca)
	first := &relayv1alpha1.TLSDeliveryPolicy{ObjectMeta: objectMeta(ns, "partner"), Spec: relayv1alpha1.TLSDeliveryPolicySpec{
		Destinations: []string{"partner.example"}, Mode: relayv1alpha1.TLSRequireVerified,
		CABundleSecretRef: &relayv1alpha1.SecretKeySelector{Name: "partner-ca", Key: "ca.crt"},
	}}
	create(t, first)
	snapshotWhere(t, "the policy is in the config with its CA bundle and explicit domains", func(s *snapshot.Snapshot) error {
		for _, p := range s.TLSPolicies {
			if p.Source.Namespace == ns && p.Source.Name == "partner" {
				if p.CABundlePEM != caPEM || !slices.Equal(p.Domains, []string{domain}) {
					return fmt.Errorf("policy entry %+v", p)
				}
				return nil
			}
		}
		return fmt.Errorf("no policy %s/partner", ns)
	})
	// Created in the same second, the tie goes to the name that sorts first: partner.
	second := &relayv1alpha1.TLSDeliveryPolicy{ObjectMeta: objectMeta(ns, "strict-overlap"), Spec: relayv1alpha1.TLSDeliveryPolicySpec{
		Destinations: []string{"partner.example", "other.example"}, Mode: relayv1alpha1.TLSRequire,
	}}
	create(t, second)
	eventually(t, "the overlapping policy reports PolicyConflict", func() error {
		if err := get(t, second); err != nil {
			return err
		}
		return wantCondition(second.Status.Conditions, relayv1alpha1.ConditionAccepted, "False/"+relayv1alpha1.ReasonPolicyConflict)
	})

	// A CA bundle that stops parsing takes the policy out, and only it.
	update(t, ca, func(s *corev1.Secret) { s.Data = map[string][]byte{"ca.crt": []byte("not a certificate")} })
	eventually(t, "a broken CA bundle is reported", func() error {
		if err := get(t, first); err != nil {
			return err
		}
		return wantCondition(first.Status.Conditions, relayv1alpha1.ConditionAccepted, "False/"+relayv1alpha1.ReasonInvalidSpec)
	})
	if err := k8s.Delete(context.Background(), ca); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a missing CA bundle is reported", func() error {
		if err := get(t, first); err != nil {
			return err
		}
		return wantCondition(first.Status.Conditions, relayv1alpha1.ConditionAccepted, "False/"+relayv1alpha1.ReasonInvalidReference)
	})
}
