package controllers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestDomainConflictAcrossNamespaces(t *testing.T) {
	// Claims made in the same second tie on creationTimestamp and go to the namespace
	// that sorts first, so the names keep the test's order either way.
	owner, intruder := newNamespace(t, "claim-a"), newNamespace(t, "claim-b")
	domain := owner + ".example"
	first := mailDomain(owner, "shop", domain, "sales@"+domain)
	create(t, first)
	eventually(t, "the first claim is accepted", func() error {
		if err := get(t, first); err != nil {
			return err
		}
		return wantCondition(first.Status.Conditions, relayv1alpha1.ConditionAccepted, "True/"+relayv1alpha1.ReasonCompiled)
	})
	second := mailDomain(intruder, "shop", domain, "evil@"+domain)
	create(t, second)
	eventually(t, "the second claim reports DomainConflict", func() error {
		if err := get(t, second); err != nil {
			return err
		}
		for _, typ := range []string{relayv1alpha1.ConditionAccepted, relayv1alpha1.ConditionReady} {
			if err := wantCondition(second.Status.Conditions, typ, "False/"+relayv1alpha1.ReasonDomainConflict); err != nil {
				return err
			}
		}
		if second.Status.ObservedGeneration != second.Generation {
			return fmt.Errorf("observedGeneration %d", second.Status.ObservedGeneration)
		}
		return nil
	})
	eventFor(t, second, relayv1alpha1.ReasonDomainConflict)
	snapshotWhere(t, "the domain stays with its first owner", func(s *snapshot.Snapshot) error {
		d := findDomain(s, domain)
		if d == nil || d.Source.Namespace != owner || len(d.Users) != 1 || d.Users[0].Address != "sales@"+domain {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	if err := get(t, first); err != nil {
		t.Fatal(err)
	}
	if err := wantCondition(first.Status.Conditions, relayv1alpha1.ConditionAccepted, "True/"+relayv1alpha1.ReasonCompiled); err != nil {
		t.Errorf("the first owner lost its domain: %v", err)
	}

	// The owner deletes and re-creates its MailDomain, as a GitOps re-sync does: the
	// waiting claim must not take the domain over in between.
	if err := k8s.Delete(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	snapshotWhere(t, "the domain leaves the config with its owner's object", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d != nil {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	if err := get(t, second); err != nil {
		t.Fatal(err)
	}
	if err := wantCondition(second.Status.Conditions, relayv1alpha1.ConditionAccepted, "False/"+relayv1alpha1.ReasonDomainConflict); err != nil {
		t.Errorf("the waiting claim took the domain while its owner re-creates it: %v", err)
	}
	recreated := mailDomain(owner, "shop", domain, "sales@"+domain)
	create(t, recreated)
	snapshotWhere(t, "the re-created MailDomain gets its domain back", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || d.Source.Namespace != owner {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})

	// The owner gives the domain up and an admin releases the claim (deleting its key in
	// the claims ConfigMap): the waiting MailDomain takes over at the next render.
	if err := k8s.Delete(context.Background(), recreated); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the claim is released by an admin", func() error {
		var cm corev1.ConfigMap
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: operatorNS, Name: configName + "-domain-claims"}, &cm); err != nil {
			return err
		}
		if _, ok := cm.Data[domain]; !ok {
			return fmt.Errorf("no claim for %s in %v", domain, cm.Data)
		}
		delete(cm.Data, domain)
		return k8s.Update(context.Background(), &cm)
	})
	// The release applies at the next render; a spec change of any object causes one.
	update(t, second, func(md *relayv1alpha1.MailDomain) {
		md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: "more@" + domain})
	})
	snapshotWhere(t, "the waiting claim takes over", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || d.Source.Namespace != intruder {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
}

func TestMailDomainStatusSummarisesWhatIsInEffect(t *testing.T) {
	ns := newNamespace(t, "summary")
	domain := ns + ".example"
	md := mailDomain(ns, "main", domain, "a@"+domain, "b@"+domain)
	md.Spec.Aliases = []relayv1alpha1.MailAlias{{Address: "alias@" + domain, Target: "a@" + domain}}
	create(t, md)
	create(t, smtpCredential(ns, "app", "main", "app"))
	create(t, &relayv1alpha1.DiscoveryPolicy{ObjectMeta: objectMeta(ns, "learn"),
		Spec: relayv1alpha1.DiscoveryPolicySpec{MailDomainRefs: []relayv1alpha1.MailDomainReference{{Name: "main"}}}})
	create(t, &relayv1alpha1.TLSDeliveryPolicy{ObjectMeta: objectMeta(ns, "strict"),
		Spec: relayv1alpha1.TLSDeliveryPolicySpec{Destinations: []string{"*"}, Mode: relayv1alpha1.TLSRequire}})
	eventually(t, "the status sums up the domain", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		s := md.Status
		want := []string{"DiscoveryPolicy/learn", "TLSDeliveryPolicy/strict"}
		if s.Users != 3 || s.Credentials != 1 || !slices.Equal(s.Policies, want) || s.ConfigHash == "" {
			return fmt.Errorf("users %d credentials %d policies %v configHash %q", s.Users, s.Credentials, s.Policies, s.ConfigHash)
		}
		return nil
	})
}

func TestInvalidDomainIsLeftOutAlone(t *testing.T) {
	ns := newNamespace(t, "invalid")
	good := mailDomain(ns, "good", ns+".example", "a@"+ns+".example")
	bad := mailDomain(ns, "bad", "bad-"+ns+".example", "x@bad-"+ns+".example")
	bad.Spec.InvalidAddresses = []string{"x@bad-" + ns + ".example"}
	create(t, good)
	create(t, bad)
	eventually(t, "the bad domain reports InvalidSpec", func() error {
		if err := get(t, bad); err != nil {
			return err
		}
		return wantCondition(bad.Status.Conditions, relayv1alpha1.ConditionAccepted, "False/"+relayv1alpha1.ReasonInvalidSpec)
	})
	snapshotWhere(t, "the good domain is served, the bad one is not", func(s *snapshot.Snapshot) error {
		if findDomain(s, ns+".example") == nil || findDomain(s, "bad-"+ns+".example") != nil {
			return fmt.Errorf("good present: %v, bad present: %v", findDomain(s, ns+".example") != nil, findDomain(s, "bad-"+ns+".example") != nil)
		}
		return nil
	})
	// Fixing the spec brings it in.
	update(t, bad, func(md *relayv1alpha1.MailDomain) { md.Spec.InvalidAddresses = []string{"y@bad-" + ns + ".example"} })
	snapshotWhere(t, "the fixed domain is served", func(s *snapshot.Snapshot) error {
		if findDomain(s, "bad-"+ns+".example") == nil {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

func TestConfigIsShardedWithoutLeftovers(t *testing.T) {
	ns := newNamespace(t, "big")
	domain := ns + ".example"
	big := mailDomain(ns, "big", domain)
	for i := range 300 {
		// Hashed local parts compress poorly, so the config needs several 1 KiB shards.
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		big.Spec.Users = append(big.Spec.Users, relayv1alpha1.MailUser{Address: hex.EncodeToString(sum[:8]) + "@" + domain})
	}
	create(t, big)
	shardCount := func() (int, error) {
		var list corev1.SecretList
		err := k8s.List(context.Background(), &list, client.InNamespace(operatorNS), client.MatchingLabels{snapshot.LabelConfig: configName})
		return len(list.Items), err
	}
	snapshotWhere(t, "the big domain is in the config", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.Users) != 300 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	grown, err := shardCount()
	if err != nil {
		t.Fatal(err)
	}
	if grown < 3 {
		t.Fatalf("the big domain fits in %d shards; the test needs several", grown)
	}
	if err := k8s.Delete(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the config shrinks and stale shards are deleted", func() error {
		s, err := currentSnapshot()
		if err != nil {
			return err
		}
		if findDomain(s, domain) != nil {
			return fmt.Errorf("the domain is still there")
		}
		n, err := shardCount()
		if err != nil {
			return err
		}
		if n >= grown {
			return fmt.Errorf("%d shards, had %d with the big domain", n, grown)
		}
		return nil
	})
}
