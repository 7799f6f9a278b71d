package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenNS is fixed, because namespaces appear in the config.
const goldenNS = "golden"

// maskedHash stands in for the random password hash, so the golden file is stable.
var maskedHash = "hmac-sha256$" + strings.Repeat("A", 22) + "$" + strings.Repeat("A", 43)

// ownPart keeps the entries that come from namespace ns, with credentials' random
// usernames and hashes masked, and without the shared certificate entry.
func ownPart(s *snapshot.Snapshot, ns string) *snapshot.Snapshot {
	out := &snapshot.Snapshot{APIVersion: s.APIVersion}
	for _, d := range s.Domains {
		if d.Source.Namespace == ns {
			out.Domains = append(out.Domains, d)
		}
	}
	for _, c := range s.Credentials {
		if c.Source.Namespace == ns {
			c.Username = c.Source.Name + "-masked@" + c.Domain
			c.PasswordHash = maskedHash
			out.Credentials = append(out.Credentials, c)
		}
	}
	for _, p := range s.DiscoveryPolicies {
		if strings.HasPrefix(p.Name, ns+"/") {
			out.DiscoveryPolicies = append(out.DiscoveryPolicies, p)
		}
	}
	for _, p := range s.TLSPolicies {
		if p.Source.Namespace == ns {
			out.TLSPolicies = append(out.TLSPolicies, p)
		}
	}
	return out
}

func TestWrittenConfigMatchesGoldenFile(t *testing.T) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: goldenNS}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	com := mailDomain(goldenNS, "golden-com", "golden.example", "jane.doe@golden.example", "bob@golden.example")
	com.Spec.FunctionalAccounts = []relayv1alpha1.FunctionalAccount{{Address: "billing@golden.example", Description: "invoices"}}
	com.Spec.Aliases = []relayv1alpha1.MailAlias{{Address: "j.doe@golden.example", Target: "jane.doe@golden.example"}}
	com.Spec.InvalidAddresses = []string{"left@golden.example"}
	com.Spec.SendingServers = []relayv1alpha1.SendingServer{{CIDR: "203.0.113.0/28"}, {CIDR: "2001:db8:10::/64"}}
	com.Spec.InboundDelivery = &relayv1alpha1.InboundDelivery{Host: "mail.corp.golden.example", Port: 2525}
	net := mailDomain(goldenNS, "golden-net", "golden.net", "bob@golden.net")
	net.Spec.RequireSMTPAuth = true
	enabled := true
	for _, obj := range []client.Object{
		com, net,
		&corev1.Secret{ObjectMeta: objectMeta(goldenNS, "partner-ca"), StringData: map[string]string{"ca.crt": testCAPEM(t)}},
		&relayv1alpha1.SMTPCredential{ObjectMeta: objectMeta(goldenNS, "scanner"), Spec: relayv1alpha1.SMTPCredentialSpec{
			MailDomainRef: relayv1alpha1.MailDomainReference{Name: "golden-com"}, Label: "Scanner 3rd floor",
			AllowedSenders: []string{"billing@golden.example"}}},
		&relayv1alpha1.DiscoveryPolicy{ObjectMeta: objectMeta(goldenNS, "learn"), Spec: relayv1alpha1.DiscoveryPolicySpec{
			MailDomainRefs: []relayv1alpha1.MailDomainReference{{Name: "golden-com"}, {Name: "golden-net"}},
			Enabled:        &enabled, AutoAddAliases: true, ReportRecipients: []string{"postmaster@golden.example"},
			ReportSchedule: &relayv1alpha1.ReportSchedule{DayOfWeek: "Friday", TimeOfDay: "17:30"}}},
		&relayv1alpha1.TLSDeliveryPolicy{ObjectMeta: objectMeta(goldenNS, "everywhere"), Spec: relayv1alpha1.TLSDeliveryPolicySpec{
			Destinations: []string{"*"}}},
		&relayv1alpha1.TLSDeliveryPolicy{ObjectMeta: objectMeta(goldenNS, "partner"), Spec: relayv1alpha1.TLSDeliveryPolicySpec{
			Destinations: []string{"partner.example", "*.partner.example"}, Mode: relayv1alpha1.TLSRequireVerified, MinTLSVersion: "1.3",
			CABundleSecretRef: &relayv1alpha1.SecretKeySelector{Name: "partner-ca"}}},
		&relayv1alpha1.TLSDeliveryPolicy{ObjectMeta: objectMeta(goldenNS, "own-server"), Spec: relayv1alpha1.TLSDeliveryPolicySpec{
			Direction: relayv1alpha1.DirectionInbound, Mode: relayv1alpha1.TLSRequire,
			MailDomainRefs: []relayv1alpha1.MailDomainReference{{Name: "golden-com"}}}},
	} {
		if err := k8s.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}

	var got []byte
	snapshotWhere(t, "every golden object is in the config", func(s *snapshot.Snapshot) error {
		own := ownPart(s, goldenNS)
		if len(own.Domains) != 2 || len(own.Credentials) != 1 || len(own.DiscoveryPolicies) != 1 || len(own.TLSPolicies) != 3 {
			return fmt.Errorf("%d domains, %d credentials, %d discovery and %d TLS policies so far",
				len(own.Domains), len(own.Credentials), len(own.DiscoveryPolicies), len(own.TLSPolicies))
		}
		if _, err := own.Marshal(); err != nil {
			return err
		}
		var err error
		got, err = json.MarshalIndent(own, "", "  ")
		got = append(got, '\n')
		return err
	})
	path := filepath.Join("testdata", "written-config.json")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the written config differs from %s (run go test -update after checking):\n%s", path, got)
	}
	if _, err := snapshot.Unmarshal(want); err != nil {
		t.Errorf("the relay's parser refuses %s: %v", path, err)
	}
}
