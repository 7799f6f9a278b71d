package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/postwarden/postwarden/controllers/compiler"
)

var certificateGK = schema.GroupKind{Group: certmanagerv1.SchemeGroupVersion.Group, Kind: "Certificate"}

// certManagerInstalled asks the API server whether cert-manager's Certificate kind
// exists. The operator checks once at start; installing cert-manager later needs a
// restart of the operator.
func certManagerInstalled(cfg *rest.Config) (bool, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return false, fmt.Errorf("creating HTTP client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return false, fmt.Errorf("creating REST mapper: %w", err)
	}
	return certManagerMapped(mapper)
}

func certManagerMapped(mapper meta.RESTMapper) (bool, error) {
	_, err := mapper.RESTMapping(certificateGK, certmanagerv1.SchemeGroupVersion.Version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	default:
		var discoveryErr *apiutil.ErrResourceDiscoveryFailed
		if errors.As(err, &discoveryErr) {
			return false, nil
		}
		return false, fmt.Errorf("looking up cert-manager's Certificate kind: %w", err)
	}
}

// certificateManager keeps the relay's cert-manager Certificate in line with the
// hostnames of the compiled config, and reports its state.
type certificateManager struct {
	client    client.Client
	opts      OperatorOptions
	installed bool
	view      *certTracker
	notifier  *notifier
	ledger    *renderLedger
}

// enabled says the operator owns a Certificate.
func (m *certificateManager) enabled() bool { return m.installed && m.opts.IssuerName != "" }

// ensure creates or updates the Certificate for hostnames and records its state. It
// returns a requeue delay to recheck expiry.
func (m *certificateManager) ensure(ctx context.Context, hostnames []string) (time.Duration, error) {
	view := certView{Missing: !m.installed}
	switch {
	case !m.installed:
		view.Message = "cert-manager's CRDs are not installed: the operator manages no relay certificate; install cert-manager and restart the operator"
	case m.opts.IssuerName == "":
		// Certificates are managed outside the operator (--issuer-name is empty).
	case len(hostnames) == 0:
		view.Managed = true
		view.Message = "no hostnames to certify: set --relay-hostnames or a MailDomain's submissionHostnames"
	default:
		view.Managed = true
		view.SecretName = m.opts.certificateSecretName()
		cert, err := m.apply(ctx, hostnames)
		if err != nil {
			return 0, err
		}
		view.Ready, view.Message, view.NotAfter = certificateReadiness(cert)
	}
	if m.view.set(view) {
		m.notifier.notify(ctx, m.ledger.keys(compiler.KindMailDomain))
	}
	if view.Ready && view.NotAfter != nil {
		// Recheck at expiry, in case cert-manager cannot renew in time.
		return min(time.Until(view.NotAfter.Time)+time.Second, 24*time.Hour), nil
	}
	return 0, nil
}

func (m *certificateManager) apply(ctx context.Context, hostnames []string) (*certmanagerv1.Certificate, error) {
	log := logf.FromContext(ctx)
	want := certmanagerv1.CertificateSpec{
		SecretName: m.opts.certificateSecretName(),
		DNSNames:   hostnames,
		IssuerRef:  cmmeta.IssuerReference{Name: m.opts.IssuerName, Kind: m.opts.IssuerKind, Group: m.opts.IssuerGroup},
	}
	var cert certmanagerv1.Certificate
	key := types.NamespacedName{Namespace: m.opts.Namespace, Name: m.opts.CertificateName}
	err := m.client.Get(ctx, key, &cert)
	switch {
	case apierrors.IsNotFound(err):
		cert = certmanagerv1.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{labelManagedBy: managerName}},
			Spec:       want,
		}
		if err := m.client.Create(ctx, &cert, client.FieldOwner(fieldOwner)); err != nil {
			return nil, fmt.Errorf("creating Certificate %s: %w", key, err)
		}
		log.Info("relay Certificate created", "certificate", key, "dnsNames", hostnames)
		return &cert, nil
	case err != nil:
		return nil, fmt.Errorf("reading Certificate %s: %w", key, err)
	}
	s := cert.Spec
	if s.SecretName == want.SecretName && slices.Equal(s.DNSNames, want.DNSNames) && s.IssuerRef == want.IssuerRef {
		return &cert, nil
	}
	patch := client.MergeFrom(cert.DeepCopy())
	cert.Spec.SecretName, cert.Spec.DNSNames, cert.Spec.IssuerRef = want.SecretName, want.DNSNames, want.IssuerRef
	if err := m.client.Patch(ctx, &cert, patch, client.FieldOwner(fieldOwner)); err != nil {
		return nil, fmt.Errorf("updating Certificate %s: %w", key, err)
	}
	log.Info("relay Certificate updated", "certificate", key, "dnsNames", hostnames)
	return &cert, nil
}

// certificateReadiness reads a Certificate's Ready condition and expiry.
func certificateReadiness(cert *certmanagerv1.Certificate) (bool, string, *metav1.Time) {
	for _, c := range cert.Status.Conditions {
		if c.Type == certmanagerv1.CertificateConditionReady {
			if c.ObservedGeneration != 0 && c.ObservedGeneration != cert.Generation {
				return false, "cert-manager has not processed the latest hostnames yet", cert.Status.NotAfter
			}
			return c.Status == cmmeta.ConditionTrue, c.Message, cert.Status.NotAfter
		}
	}
	return false, "cert-manager has not reported on the Certificate yet", cert.Status.NotAfter
}

// certView is the state of the relay certificate, as MailDomains report it.
type certView struct {
	// Managed says the operator owns a Certificate; Missing says cert-manager's CRDs are
	// not installed.
	Managed, Missing bool
	SecretName       string
	Ready            bool
	Message          string
	NotAfter         *metav1.Time
}

// certTracker holds the certificate manager's last view of the certificate.
type certTracker struct {
	mu   sync.Mutex
	view certView
}

// set records c and reports whether it differs from the view before.
func (t *certTracker) set(c certView) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	same := t.view.Managed == c.Managed && t.view.Missing == c.Missing && t.view.SecretName == c.SecretName &&
		t.view.Ready == c.Ready && t.view.Message == c.Message && timesEqual(t.view.NotAfter, c.NotAfter)
	t.view = c
	return !same
}

func (t *certTracker) current() certView {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.view
}

func timesEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}
