package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/controllers/discovery"
)

// configReconciler renders every object into one snapshot and writes it. Every event
// it watches maps to the single request configKey, so a burst of changes becomes one
// render; it runs with one worker, so renders never overlap.
type configReconciler struct {
	client    client.Client // cached; Secrets only as metadata
	apiReader client.Reader // uncached, for the few Secret contents needed
	opts      OperatorOptions
	// ledger is owned here: only this reconciler writes it.
	ledger   *renderLedger
	relays   *relayTracker
	notifier *notifier
	certs    *certificateManager
	// maxShardBytes is snapshot.MaxShardBytes, smaller in tests.
	maxShardBytes int

	// secrets caches the tenant Secrets a render needs the data of (CA bundles, route
	// credentials) by resourceVersion, so a render reads a Secret's
	// data only when it changed.
	secrets map[types.NamespacedName]cachedSecret
	// discovery decodes the policies' discovery states from the cache.
	discovery discovery.StateCache
	// dkim says which DKIM keys each MailDomain signs with; the DKIM checker owns it.
	dkim *dkimTracker
}

type cachedSecret struct {
	resourceVersion string
	data            map[string][]byte
}

func (r *configReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	start := time.Now()
	if err := r.issueReportCredential(ctx); err != nil {
		return ctrl.Result{}, err
	}
	in, err := r.gather(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var claimsCM *corev1.ConfigMap
	if in.Claims, claimsCM, err = r.readClaims(ctx); err != nil {
		return ctrl.Result{}, err
	}
	res, err := compiler.Compile(in)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("compiling relay config: %w", err)
	}
	if err := r.writeClaims(ctx, res.Claims, claimsCM); err != nil {
		return ctrl.Result{}, err
	}
	certRequeue, err := r.certs.ensure(ctx, res.Hostnames)
	if err != nil {
		return ctrl.Result{}, err
	}
	// Relay secrets (route credentials, event keys) are copied before the snapshot that
	// names them, and stale copies deleted after the snapshot that no longer does. A copy
	// that cannot be written only holds back its own hop: the render goes on for everyone
	// else and tries again soon.
	routeCopies, routeErr := r.writeRouteCopies(ctx, in, res)
	if routeErr != nil {
		log.Error(routeErr, "route credentials not copied; mail on those hops waits")
	}
	r.ledger.setWriting(res.Snapshot.Hash)
	written, err := r.writeShards(ctx, res.Snapshot)
	if err != nil {
		return ctrl.Result{}, err
	}
	if routeCopies != nil { // nil: the copies could not even be listed; delete nothing
		if err := r.deleteStaleRouteCopies(ctx, routeCopies); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.deleteStaleDKIMKeys(ctx, in.MailDomains); err != nil {
		return ctrl.Result{}, err
	}
	changed := r.ledger.record(res)
	if written {
		log.Info("relay config written", "hash", res.Snapshot.Hash, "domains", len(res.Snapshot.Domains),
			"credentials", len(res.Snapshot.Credentials), "duration", time.Since(start).Round(time.Millisecond))
	}
	r.notifier.notify(ctx, changed)
	r.notifier.notify(ctx, r.relays.refresh())
	requeue := certRequeue
	if next := res.NextClaimRelease(in.Now, in.ClaimReleaseAfter); next > 0 && (requeue == 0 || next < requeue) {
		requeue = next // render again when a vacant claim is due for release
	}
	if routeErr != nil && (requeue == 0 || requeue > routeRetry) {
		requeue = routeRetry
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// routeRetry is how soon a render that could not copy route credentials runs again.
const routeRetry = 10 * time.Second

// gather reads every input of a render from the cache.
func (r *configReconciler) gather(ctx context.Context) (compiler.Input, error) {
	noCopy := client.UnsafeDisableDeepCopy
	var in compiler.Input
	in.RelayHostnames = r.opts.RelayHostnames
	in.Now = r.opts.Clock.Now()
	in.ClaimReleaseAfter = r.opts.DomainClaimReleaseAfter

	var domains relayv1alpha1.MailDomainList
	if err := r.client.List(ctx, &domains, noCopy); err != nil {
		return in, fmt.Errorf("listing MailDomains: %w", err)
	}
	in.MailDomains = make([]*relayv1alpha1.MailDomain, 0, len(domains.Items))
	for i := range domains.Items {
		in.MailDomains = append(in.MailDomains, &domains.Items[i])
	}
	in.DKIM = r.dkim.signing()
	in.Relays = r.relays.current().Live

	var creds relayv1alpha1.SMTPCredentialList
	if err := r.client.List(ctx, &creds, noCopy); err != nil {
		return in, fmt.Errorf("listing SMTPCredentials: %w", err)
	}
	secrets, err := r.labelledSecrets(ctx, client.HasLabels{LabelCredential})
	if err != nil {
		return in, err
	}
	records, err := r.labelledSecrets(ctx, client.HasLabels{LabelLogin}, client.InNamespace(r.opts.Namespace))
	if err != nil {
		return in, err
	}
	in.Credentials = make([]compiler.Credential, 0, len(creds.Items))
	for i := range creds.Items {
		cred := &creds.Items[i]
		c := compiler.Credential{Object: cred}
		s := secrets[types.NamespacedName{Namespace: cred.Namespace, Name: credentialSecretName(cred)}]
		rec := records[types.NamespacedName{Namespace: r.opts.Namespace, Name: loginRecordName(cred)}]
		if s != nil && isControlledBy(s, cred) && rec != nil {
			// Only the record, which tenants cannot edit, says who logs in and how.
			if loginMatches(rec, s) {
				c.Username = rec.Annotations[AnnotationUsername]
				c.PasswordHash = rec.Annotations[AnnotationPasswordHash]
			} else {
				c.SecretMismatch = true
			}
		}
		in.Credentials = append(in.Credentials, c)
	}

	var policies relayv1alpha1.DiscoveryPolicyList
	if err := r.client.List(ctx, &policies, noCopy); err != nil {
		return in, fmt.Errorf("listing DiscoveryPolicies: %w", err)
	}
	names := make([]string, 0, len(policies.Items))
	for i := range policies.Items {
		in.DiscoveryPolicies = append(in.DiscoveryPolicies, &policies.Items[i])
		names = append(names, policies.Items[i].Namespace+"/"+policies.Items[i].Name)
	}
	if in.Discovery, err = r.discovery.States(ctx, r.client, r.opts.Namespace, names); err != nil {
		return in, err
	}
	if in.ReportCredential, err = r.reportCredential(ctx); err != nil {
		return in, err
	}

	var tls relayv1alpha1.TLSDeliveryPolicyList
	if err := r.client.List(ctx, &tls, noCopy); err != nil {
		return in, fmt.Errorf("listing TLSDeliveryPolicies: %w", err)
	}
	in.CABundles = map[compiler.SecretKeyRef]string{}
	referenced := map[types.NamespacedName]bool{}
	for i := range tls.Items {
		p := &tls.Items[i]
		in.TLSPolicies = append(in.TLSPolicies, p)
		if ref := p.Spec.CABundleSecretRef; ref != nil {
			referenced[types.NamespacedName{Namespace: p.Namespace, Name: ref.Name}] = true
			data, err := r.secretData(ctx, types.NamespacedName{Namespace: p.Namespace, Name: ref.Name})
			if err != nil {
				return in, err
			}
			key := ref.Key
			if key == "" {
				key = "ca.crt"
			}
			if v, ok := data[key]; ok {
				in.CABundles[compiler.SecretKeyRef{Namespace: p.Namespace, Name: ref.Name, Key: key}] = string(v)
			}
		}
	}

	if in.SecretProblems, err = r.relaySecretProblems(ctx, in.MailDomains, referenced); err != nil {
		return in, err
	}
	for name := range r.secrets {
		if !referenced[name] {
			delete(r.secrets, name) // no policy or MailDomain names it any more
		}
	}

	if r.certs.enabled() {
		exists, err := r.secretExists(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: r.opts.certificateSecretName()})
		if err != nil {
			return in, err
		}
		if exists {
			in.CertificateSecret = r.opts.certificateSecretName()
		}
	}
	return in, nil
}

// labelledSecrets returns the metadata of the Secrets that opts select, by name.
func (r *configReconciler) labelledSecrets(ctx context.Context, opts ...client.ListOption) (map[types.NamespacedName]*metav1.PartialObjectMetadata, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.client.List(ctx, list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		return nil, fmt.Errorf("listing Secrets: %w", err)
	}
	out := make(map[types.NamespacedName]*metav1.PartialObjectMetadata, len(list.Items))
	for i := range list.Items {
		s := &list.Items[i]
		out[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	return out, nil
}

// secretData returns a Secret's data, read from the API server only when the cached
// metadata shows a new resourceVersion. A missing Secret gives nil.
func (r *configReconciler) secretData(ctx context.Context, name types.NamespacedName) (map[string][]byte, error) {
	meta := secretMeta()
	if err := r.client.Get(ctx, name, meta); err != nil {
		if apierrors.IsNotFound(err) {
			delete(r.secrets, name)
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	if c, ok := r.secrets[name]; ok && c.resourceVersion == meta.ResourceVersion {
		return c.data, nil
	}
	var secret corev1.Secret
	if err := r.apiReader.Get(ctx, name, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	r.secrets[name] = cachedSecret{resourceVersion: secret.ResourceVersion, data: secret.Data}
	return secret.Data, nil
}

func (r *configReconciler) secretExists(ctx context.Context, name types.NamespacedName) (bool, error) {
	if err := r.client.Get(ctx, name, secretMeta()); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return true, nil
}

// secretMeta is an empty Secret metadata object, for the metadata cache.
func secretMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// isControlledBy reports whether obj's controller reference is owner.
func isControlledBy(obj metav1.Object, owner metav1.Object) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == owner.GetUID()
}
