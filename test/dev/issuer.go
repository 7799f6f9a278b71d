package dev

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/postwarden/postwarden/test/testkit"
)

// annotationIssuedFor records which spec a Secret was issued for, so a changed spec
// (new DNS names) gets a new certificate and an unchanged one does not.
const annotationIssuedFor = "dev.postwarden.dev/issued-for"

// Issuer plays cert-manager's CA issuer: it watches Certificates and fills their Secrets
// (kubernetes.io/tls with tls.crt, tls.key and ca.crt) from a local CA, then marks them
// Ready with notAfter, as cert-manager would.
type Issuer struct {
	// CAFile is the CA certificate (PEM), for clients to verify the relay with.
	CAFile string

	client client.Client
	ca     *testkit.CA
}

// NewIssuer creates a CA and writes its certificate to dir/ca.crt. c must read Secrets
// directly (not through a metadata-only cache).
func NewIssuer(dir string, c client.Client) (*Issuer, error) {
	now := time.Now()
	ca, err := testkit.GenerateCA(testkit.CommonName("Postwarden dev CA"), testkit.Validity(now.Add(-time.Hour), now.AddDate(1, 0, 0)))
	if err != nil {
		return nil, err
	}
	i := &Issuer{client: c, ca: ca, CAFile: filepath.Join(dir, "ca.crt")}
	if err := os.WriteFile(i.CAFile, i.CAPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("writing the CA file: %w", err)
	}
	return i, nil
}

// CAPEM is the CA certificate in PEM.
func (i *Issuer) CAPEM() []byte { return []byte(i.ca.PEM()) }

// Pool is a certificate pool holding the CA.
func (i *Issuer) Pool() *x509.CertPool { return i.ca.Pool() }

// SetupWithManager watches Certificates through mgr's cache.
func (i *Issuer) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("devissuer").
		For(&certmanagerv1.Certificate{}).
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
		Complete(i)
}

// Reconcile issues a Certificate's Secret when it is missing or was issued for another spec.
func (i *Issuer) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var cert certmanagerv1.Certificate
	if err := i.client.Get(ctx, req.NamespacedName, &cert); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var secret corev1.Secret
	err := i.client.Get(ctx, types.NamespacedName{Namespace: cert.Namespace, Name: cert.Spec.SecretName}, &secret)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("reading secret %s: %w", cert.Spec.SecretName, err)
	case secret.Annotations[annotationIssuedFor] == specKey(&cert) && isReady(&cert):
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, i.issue(ctx, &cert)
}

// Reissue renews a Certificate now, as cert-manager does at its renewal time.
func (i *Issuer) Reissue(ctx context.Context, namespace, name string) error {
	var cert certmanagerv1.Certificate
	if err := i.client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &cert); err != nil {
		return fmt.Errorf("reading certificate %s/%s: %w", namespace, name, err)
	}
	return i.issue(ctx, &cert)
}

func (i *Issuer) issue(ctx context.Context, cert *certmanagerv1.Certificate) error {
	certPEM, keyPEM, leaf, err := i.leaf(cert)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: cert.Namespace, Name: cert.Spec.SecretName}}
	_, err = ctrl.CreateOrUpdate(ctx, i.client, secret, func() error {
		secret.Type = corev1.SecretTypeTLS
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		if t := cert.Spec.SecretTemplate; t != nil {
			for k, v := range t.Labels {
				secret.Labels[k] = v
			}
			for k, v := range t.Annotations {
				secret.Annotations[k] = v
			}
		}
		secret.Annotations[annotationIssuedFor] = specKey(cert)
		secret.Annotations["cert-manager.io/certificate-name"] = cert.Name
		secret.Annotations["cert-manager.io/issuer-name"] = cert.Spec.IssuerRef.Name
		secret.Annotations["cert-manager.io/issuer-kind"] = cert.Spec.IssuerRef.Kind
		secret.Annotations["cert-manager.io/alt-names"] = strings.Join(cert.Spec.DNSNames, ",")
		secret.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": i.CAPEM()}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing secret %s: %w", cert.Spec.SecretName, err)
	}
	notBefore, notAfter := metav1.NewTime(leaf.NotBefore), metav1.NewTime(leaf.NotAfter)
	renewal := metav1.NewTime(leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3))
	revision := 1
	if cert.Status.Revision != nil {
		revision = *cert.Status.Revision + 1
	}
	cert.Status.NotBefore, cert.Status.NotAfter, cert.Status.RenewalTime = &notBefore, &notAfter, &renewal
	cert.Status.Revision = &revision
	now := metav1.Now()
	cert.Status.Conditions = []certmanagerv1.CertificateCondition{{
		Type: certmanagerv1.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready",
		Message: "Certificate is up to date and has not expired", LastTransitionTime: &now,
		ObservedGeneration: cert.Generation,
	}}
	if err := i.client.Status().Update(ctx, cert); err != nil {
		return fmt.Errorf("updating certificate status: %w", err)
	}
	return nil
}

// leaf signs a certificate for cert's names with the CA.
func (i *Issuer) leaf(cert *certmanagerv1.Certificate) (certPEM, keyPEM []byte, leaf *x509.Certificate, err error) {
	lifetime := 90 * 24 * time.Hour
	if cert.Spec.Duration != nil && cert.Spec.Duration.Duration > 0 {
		lifetime = cert.Spec.Duration.Duration
	}
	names := slices.Clone(cert.Spec.DNSNames)
	for _, ip := range cert.Spec.IPAddresses {
		if net.ParseIP(ip) != nil {
			names = append(names, ip)
		}
	}
	now := time.Now()
	issued, err := i.ca.Issue(testkit.CommonName(cert.Spec.CommonName), testkit.Names(names...),
		testkit.Validity(now.Add(-time.Minute), now.Add(lifetime)))
	if err != nil {
		return nil, nil, nil, err
	}
	if certPEM, keyPEM, err = testkit.EncodePEM(issued); err != nil {
		return nil, nil, nil, err
	}
	return certPEM, keyPEM, issued.Leaf, nil
}

func isReady(cert *certmanagerv1.Certificate) bool {
	for _, c := range cert.Status.Conditions {
		if c.Type == certmanagerv1.CertificateConditionReady {
			return c.Status == cmmeta.ConditionTrue && c.ObservedGeneration == cert.Generation
		}
	}
	return false
}

// specKey is a digest of what the certificate's content depends on.
func specKey(cert *certmanagerv1.Certificate) string {
	names := slices.Clone(cert.Spec.DNSNames)
	slices.Sort(names)
	ips := slices.Clone(cert.Spec.IPAddresses)
	slices.Sort(ips)
	sum := sha256.Sum256([]byte(cert.Spec.CommonName + "|" + strings.Join(names, ",") + "|" + strings.Join(ips, ",")))
	return hex.EncodeToString(sum[:8])
}
