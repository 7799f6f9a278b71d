package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// testCAPEM is a CA certificate that is the same PEM on every run, as the golden
// config holds it.
func testCAPEM(t *testing.T) string {
	t.Helper()
	return testkit.NewCA(t, testkit.Reproducible(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))).PEM()
}

func TestRelayCertificateCoversSubmissionHostnames(t *testing.T) {
	ns := newNamespace(t, "cert")
	host := "smtp." + ns + ".example"
	md := mailDomain(ns, "main", ns+".example", "a@"+ns+".example")
	md.Spec.SubmissionHostnames = []string{host}
	create(t, md)

	cert := &certmanagerv1.Certificate{ObjectMeta: objectMeta(operatorNS, "postwarden-relay")}
	eventually(t, "the Certificate names the relay and the submission hostname", func() error {
		if err := get(t, cert); err != nil {
			return err
		}
		s := cert.Spec
		if !slices.Contains(s.DNSNames, relayHostname) || !slices.Contains(s.DNSNames, host) {
			return fmt.Errorf("dnsNames %v", s.DNSNames)
		}
		if s.SecretName != "postwarden-relay-tls" || s.IssuerRef.Name != "test-issuer" || s.IssuerRef.Kind != "ClusterIssuer" {
			return fmt.Errorf("secretName %s issuerRef %+v", s.SecretName, s.IssuerRef)
		}
		return nil
	})
	eventually(t, "the domain reports a certificate not yet issued", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		return wantCondition(md.Status.Conditions, "CertificateReady", "False/"+relayv1alpha1.ReasonCertificateNotReady)
	})

	// Issue it, as cert-manager would: the Secret, then the Ready condition.
	tlsSecret := &corev1.Secret{ObjectMeta: objectMeta(operatorNS, "postwarden-relay-tls"), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("cert"), "tls.key": []byte("key")}}
	if err := k8s.Create(context.Background(), tlsSecret); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	notAfter := metav1.NewTime(time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second))
	eventually(t, "marking the Certificate ready", func() error {
		if err := get(t, cert); err != nil {
			return err
		}
		cert.Status.NotAfter = &notAfter
		cert.Status.Conditions = []certmanagerv1.CertificateCondition{{Type: certmanagerv1.CertificateConditionReady,
			Status: cmmeta.ConditionTrue, Reason: "Ready", Message: "Certificate is up to date and has not expired", ObservedGeneration: cert.Generation}}
		return k8s.Status().Update(context.Background(), cert)
	})
	eventually(t, "the domain reports the issued certificate", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		c := md.Status.Certificate
		if c == nil || !c.Ready || c.SecretName != "postwarden-relay-tls" || c.NotAfter == nil || !c.NotAfter.Equal(&notAfter) {
			return fmt.Errorf("status.certificate %+v", c)
		}
		return wantCondition(md.Status.Conditions, "CertificateReady", "True/Issued")
	})
	snapshotWhere(t, "the config points the relay at the certificate Secret", func(s *snapshot.Snapshot) error {
		if len(s.Certificates) != 1 || s.Certificates[0].SecretName != "postwarden-relay-tls" || !slices.Contains(s.Certificates[0].Hostnames, host) {
			return fmt.Errorf("certificates %+v", s.Certificates)
		}
		return nil
	})
}
