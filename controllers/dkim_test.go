package controllers_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// A MailDomain's DKIM selectors: the operator generates each key once, into an
// immutable Secret of the relays' namespace; shows the record to publish; makes the
// relays sign only with a selector whose record DNS holds, one per key type; and
// switches to a new selector only once its record is published (rotation without a gap),
// reporting when the old one can go. SPF and DMARC records are checked beside.
func TestDKIMKeysAreMadeAndSignWhenPublished(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "dkim")
	domain := ns + ".example"
	md := mailDomain(ns, "shop", domain, "sales@"+domain)
	md.Spec.DKIM = &relayv1alpha1.DKIMSigning{Selectors: []relayv1alpha1.DKIMSelector{
		{Name: "pw1"}, {Name: "ed1", KeyType: relayv1alpha1.DKIMKeyEd25519}}}
	create(t, md)

	selector := func(name string) (relayv1alpha1.DKIMSelectorStatus, error) {
		if err := get(t, md); err != nil {
			return relayv1alpha1.DKIMSelectorStatus{}, err
		}
		if md.Status.DKIM == nil {
			return relayv1alpha1.DKIMSelectorStatus{}, fmt.Errorf("no status.dkim")
		}
		for _, s := range md.Status.DKIM.Selectors {
			if s.Name == name {
				return s, nil
			}
		}
		return relayv1alpha1.DKIMSelectorStatus{}, fmt.Errorf("selector %s not in status", name)
	}
	var rsaRecord, edRecord string
	eventually(t, "status shows both records, not published", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		if err := wantCondition(md.Status.Conditions, relayv1alpha1.ConditionDKIMPublished, "False/"+relayv1alpha1.ReasonRecordMissing); err != nil {
			return err
		}
		rs, err := selector("pw1")
		if err != nil {
			return err
		}
		es, err := selector("ed1")
		if err != nil {
			return err
		}
		if rs.State != relayv1alpha1.DKIMStateNotPublished || rs.RecordName != "pw1._domainkey."+domain || !strings.HasPrefix(rs.Record, "v=DKIM1; k=rsa; p=MII") {
			return fmt.Errorf("pw1 status %+v", rs)
		}
		if es.State != relayv1alpha1.DKIMStateNotPublished || !strings.HasPrefix(es.Record, "v=DKIM1; k=ed25519; p=") {
			return fmt.Errorf("ed1 status %+v", es)
		}
		rsaRecord, edRecord = rs.Record, es.Record
		return nil
	})

	// The private keys: in the operator's namespace, immutable, the public half of the
	// record, and nowhere else.
	var pems []string
	for _, sel := range []relayv1alpha1.DKIMSelector{{Name: "pw1", KeyType: relayv1alpha1.DKIMKeyRSA2048}, {Name: "ed1", KeyType: relayv1alpha1.DKIMKeyEd25519}} {
		var s corev1.Secret
		key := client.ObjectKey{Namespace: operatorNS, Name: compiler.DKIMSecretName(ns, "shop", sel.Name, sel.KeyType)}
		if err := k8s.Get(ctx, key, &s); err != nil {
			t.Fatalf("key Secret of %s: %v", sel.Name, err)
		}
		if s.Immutable == nil || !*s.Immutable || s.Labels[snapshot.LabelRelaySecret] != "true" {
			t.Errorf("key Secret of %s: immutable %v, labels %v", sel.Name, s.Immutable, s.Labels)
		}
		block, _ := pem.Decode(s.Data[snapshot.DKIMPrivateKeyKey])
		if block == nil {
			t.Fatalf("key Secret of %s holds no PEM", sel.Name)
		}
		if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			t.Errorf("key of %s: %v", sel.Name, err)
		}
		pems = append(pems, strings.Split(string(s.Data[snapshot.DKIMPrivateKeyKey]), "\n")[1]) // a line of the key itself
	}
	snapshotWhere(t, "nothing signs before a record is published", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.DKIM) != 0 {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})

	// The admin publishes the RSA record, and a wrong Ed25519 one.
	dnsServer.Add(t, testkit.TXTRecord("pw1._domainkey."+domain, rsaRecord),
		testkit.TXTRecord("ed1._domainkey."+domain, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="))
	rsaKey := snapshot.DKIMKey{Selector: "pw1", Algorithm: snapshot.DKIMRSASHA256,
		SecretName: compiler.DKIMSecretName(ns, "shop", "pw1", relayv1alpha1.DKIMKeyRSA2048)}
	snapshotWhere(t, "the relays sign with the published RSA selector", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.DKIM) != 1 || d.DKIM[0] != rsaKey {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	eventually(t, "status: pw1 signs, ed1's record differs", func() error {
		rs, err := selector("pw1")
		if err != nil {
			return err
		}
		es, err := selector("ed1")
		if err != nil {
			return err
		}
		if rs.State != relayv1alpha1.DKIMStateSigning || es.State != relayv1alpha1.DKIMStateRecordDiffers {
			return fmt.Errorf("pw1 %s, ed1 %s", rs.State, es.State)
		}
		return wantCondition(md.Status.Conditions, relayv1alpha1.ConditionDKIMPublished, "False/"+relayv1alpha1.ReasonRecordDiffers)
	})
	eventFor(t, md, relayv1alpha1.ReasonDKIMSigning)

	// Rotation: a new RSA selector in front. Until its record is there, pw1 signs on.
	update(t, md, func(m *relayv1alpha1.MailDomain) {
		m.Spec.DKIM.Selectors = append([]relayv1alpha1.DKIMSelector{{Name: "pw2"}}, m.Spec.DKIM.Selectors...)
	})
	var newRecord string
	eventually(t, "the new selector's record is shown", func() error {
		s, err := selector("pw2")
		if err != nil {
			return err
		}
		if s.State != relayv1alpha1.DKIMStateNotPublished || s.Record == "" || s.Record == rsaRecord {
			return fmt.Errorf("pw2 %+v", s)
		}
		newRecord = s.Record
		return nil
	})
	snapshotWhere(t, "pw1 signs while pw2 is not published", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.DKIM) != 1 || d.DKIM[0] != rsaKey {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	dnsServer.Add(t, testkit.TXTRecord("pw2._domainkey."+domain, newRecord))
	snapshotWhere(t, "signing switches to pw2 once it is published", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.DKIM) != 1 || d.DKIM[0].Selector != "pw2" {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	eventually(t, "pw1 is on standby, with the time its record may go", func() error {
		s, err := selector("pw1")
		if err != nil {
			return err
		}
		if s.State != relayv1alpha1.DKIMStateStandby || s.SignedUntil == nil || s.RemovableAfter == nil || !s.RemovableAfter.After(s.SignedUntil.Time) {
			return fmt.Errorf("pw1 %+v", s)
		}
		return nil
	})

	// The right Ed25519 record: both key types sign (RFC 8463 dual signing), and every
	// record is in place.
	dnsServer.Remove("ed1._domainkey." + domain)
	dnsServer.Add(t, testkit.TXTRecord("ed1._domainkey."+domain, edRecord))
	snapshotWhere(t, "RSA and Ed25519 both sign", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.DKIM) != 2 {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	eventually(t, "DKIMPublished is true", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		return wantCondition(md.Status.Conditions, relayv1alpha1.ConditionDKIMPublished, "True/"+relayv1alpha1.ReasonRecordsPublished)
	})

	// SPF and DMARC: what to publish, then that it is there.
	eventually(t, "SPF and DMARC are reported missing", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		d := md.Status.DKIM
		if d.SPF == nil || d.SPF.OK || d.SPF.Expected != "a:"+relayHostname || d.DMARC == nil || d.DMARC.OK || !strings.HasPrefix(d.DMARC.Expected, "v=DMARC1; p=none") {
			return fmt.Errorf("spf %+v dmarc %+v", d.SPF, d.DMARC)
		}
		return nil
	})
	dnsServer.Add(t, testkit.TXTRecord(domain, "v=spf1 mx a:"+relayHostname+" -all"), testkit.TXTRecord("_dmarc."+domain, "v=DMARC1; p=quarantine"))
	eventually(t, "SPF and DMARC are found", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		d := md.Status.DKIM
		if d.SPF == nil || !d.SPF.OK || d.DMARC == nil || !d.DMARC.OK || d.DMARC.Found != "v=DMARC1; p=quarantine" {
			return fmt.Errorf("spf %+v dmarc %+v", d.SPF, d.DMARC)
		}
		return nil
	})

	// No private key in status, Events or logs.
	if found := leaks(t, pems, client.ObjectKey{Namespace: operatorNS, Name: rsaKey.SecretName},
		client.ObjectKey{Namespace: operatorNS, Name: compiler.DKIMSecretName(ns, "shop", "ed1", relayv1alpha1.DKIMKeyEd25519)}); len(found) > 0 {
		t.Errorf("a DKIM private key appears in %v", found)
	}

	// The old selector leaves the spec: its key goes, the others stay.
	oldKey := client.ObjectKey{Namespace: operatorNS, Name: rsaKey.SecretName}
	update(t, md, func(m *relayv1alpha1.MailDomain) {
		m.Spec.DKIM.Selectors = slices.DeleteFunc(m.Spec.DKIM.Selectors, func(s relayv1alpha1.DKIMSelector) bool { return s.Name == "pw1" })
	})
	eventually(t, "the removed selector's key is deleted", func() error {
		if err := k8s.Get(ctx, oldKey, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("key of pw1 still there (%v)", err)
		}
		return nil
	})
	for _, sel := range []relayv1alpha1.DKIMSelector{{Name: "pw2", KeyType: relayv1alpha1.DKIMKeyRSA2048}, {Name: "ed1", KeyType: relayv1alpha1.DKIMKeyEd25519}} {
		key := client.ObjectKey{Namespace: operatorNS, Name: compiler.DKIMSecretName(ns, "shop", sel.Name, sel.KeyType)}
		if err := k8s.Get(ctx, key, &corev1.Secret{}); err != nil {
			t.Errorf("the key of %s, still in the spec: %v", sel.Name, err)
		}
	}

	// Signing off: the snapshot names no key.
	update(t, md, func(m *relayv1alpha1.MailDomain) { m.Spec.DKIM = nil })
	snapshotWhere(t, "nothing signs without spec.dkim", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.DKIM) != 0 {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	eventually(t, "status.dkim and its condition are gone", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		if md.Status.DKIM != nil || condition(md.Status.Conditions, relayv1alpha1.ConditionDKIMPublished) != "" {
			return fmt.Errorf("status.dkim %+v", md.Status.DKIM)
		}
		return nil
	})
}
