package controllers

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/controllers/discovery"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// SetupWithManager registers every reconciler of the operator with mgr. Create mgr with
// NewManager: it configures the cache the reconcilers rely on.
func SetupWithManager(mgr ctrl.Manager, opts OperatorOptions) error {
	opts = opts.withDefaults()
	log := ctrl.Log.WithName("operator")
	installed, err := certManagerMapped(mgr.GetRESTMapper())
	if err != nil {
		return err
	}
	switch {
	case !installed:
		log.Info("cert-manager's CRDs are not installed: the operator manages no relay certificate, and MailDomains report CertManagerMissing; everything else works")
	case opts.IssuerName == "":
		log.Info("no --issuer-name: the relay certificate is managed outside the operator")
	}
	if err := setupIndexes(mgr); err != nil {
		return err
	}

	// The config reconciler owns the ledger, the relays reconciler the relay view, the
	// certificate manager the certificate's; the per-kind reconcilers read all three
	// and hear from the notifier when to.
	ledger, notes := newRenderLedger(), newNotifier()
	relayView, cert := &relayTracker{ledger: ledger}, &certTracker{}
	views := statusViews{ledger: ledger, relays: relayView, cert: cert}
	rec := mgr.GetEventRecorder(managerName)
	c := mgr.GetClient()
	status := statusWriter{client: c, recorder: rec}
	certs := &certificateManager{client: c, opts: opts, installed: installed, view: cert, notifier: notes, ledger: ledger}
	dkim := newDKIMTracker()
	cfg := &configReconciler{client: c, apiReader: mgr.GetAPIReader(), opts: opts, ledger: ledger, relays: relayView,
		notifier: notes, certs: certs, dkim: dkim, maxShardBytes: cmp.Or(opts.tests.shardBytes, snapshot.MaxShardBytes), secrets: map[types.NamespacedName]cachedSecret{}}
	if err := setupConfigController(mgr, cfg, installed); err != nil {
		return err
	}

	if err := discovery.Setup(mgr, ledger, discoveryOptions(opts)); err != nil {
		return err
	}

	toConfig := func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{configRequest} }
	limitHits, usage := &limitHitTracker{}, &usageTracker{}
	relays := &relaysReconciler{client: c, recorder: rec, opts: opts, view: relayView, notifier: notes, now: time.Now,
		told: map[string]time.Time{}, limitHits: limitHits, usage: usage}
	if err := ctrl.NewControllerManagedBy(mgr).Named("relaystatus").
		Watches(&coordinationv1.Lease{}, handler.EnqueueRequestsFromMapFunc(toConfig)).
		Complete(relays); err != nil {
		return fmt.Errorf("setting up the relay status controller: %w", err)
	}

	workers := controller.Options{MaxConcurrentReconciles: 4}
	generation := builder.WithPredicates(predicate.GenerationChangedPredicate{})

	creds := &smtpCredentialReconciler{client: c, apiReader: mgr.GetAPIReader(), scheme: mgr.GetScheme(), recorder: rec, views: views, opts: opts,
		limitHits: limitHits, usage: usage}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&relayv1alpha1.SMTPCredential{}, generation).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(credentialsOfSecret(c))).
		Watches(&relayv1alpha1.MailDomain{}, handler.EnqueueRequestsFromMapFunc(credentialsOfDomain(c)),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc: func(event.CreateEvent) bool { return true },
				UpdateFunc: func(event.UpdateEvent) bool { return false },
				DeleteFunc: func(event.DeleteEvent) bool { return false },
			})).
		WatchesRawSource(notes.source(compiler.KindSMTPCredential)).
		WithOptions(workers).
		Complete(creds); err != nil {
		return fmt.Errorf("setting up the SMTPCredential controller: %w", err)
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&relayv1alpha1.MailDomain{}, generation).
		WatchesRawSource(notes.source(compiler.KindMailDomain)).
		WithOptions(workers).
		Complete(&mailDomainReconciler{client: c, views: views, status: status, dkim: dkim}); err != nil {
		return fmt.Errorf("setting up the MailDomain controller: %w", err)
	}
	checker := &dkimChecker{client: c, apiReader: mgr.GetAPIReader(), recorder: rec, opts: opts,
		dns: newTXTResolver(opts.DNSServers), tracker: dkim, notifier: notes, now: time.Now}
	if err := ctrl.NewControllerManagedBy(mgr).Named("dkim").
		For(&relayv1alpha1.MailDomain{}, generation).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(checker); err != nil {
		return fmt.Errorf("setting up the DKIM checker: %w", err)
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&relayv1alpha1.DiscoveryPolicy{}, generation).
		WatchesRawSource(notes.source(compiler.KindDiscoveryPolicy)).
		WithOptions(workers).
		Complete(&policyReconciler[relayv1alpha1.DiscoveryPolicy, *relayv1alpha1.DiscoveryPolicy]{
			client: c, views: views, writer: status, kind: compiler.KindDiscoveryPolicy, status: discoveryPolicyStatus}); err != nil {
		return fmt.Errorf("setting up the DiscoveryPolicy controller: %w", err)
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&relayv1alpha1.TLSDeliveryPolicy{}, generation).
		WatchesRawSource(notes.source(compiler.KindTLSDeliveryPolicy)).
		WithOptions(workers).
		Complete(&policyReconciler[relayv1alpha1.TLSDeliveryPolicy, *relayv1alpha1.TLSDeliveryPolicy]{
			client: c, views: views, writer: status, kind: compiler.KindTLSDeliveryPolicy, status: tlsDeliveryPolicyStatus}); err != nil {
		return fmt.Errorf("setting up the TLSDeliveryPolicy controller: %w", err)
	}
	return nil
}

var configRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: configKey}}

// setupConfigController watches everything a render reads, each event mapped to the
// one configRequest. A channel primes the first render, so an empty cluster still gets
// an (empty) config.
func setupConfigController(mgr ctrl.Manager, r *configReconciler, certManager bool) error {
	toConfig := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{configRequest}
	})
	generation := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	prime := make(chan event.GenericEvent, 1)
	prime <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{}}

	b := ctrl.NewControllerManagedBy(mgr).Named("relayconfig").
		Watches(&relayv1alpha1.MailDomain{}, toConfig, generation).
		Watches(&relayv1alpha1.SMTPCredential{}, toConfig, generation).
		Watches(&relayv1alpha1.DiscoveryPolicy{}, toConfig, generation).
		Watches(&relayv1alpha1.TLSDeliveryPolicy{}, toConfig, generation).
		WatchesMetadata(&corev1.Secret{}, r.secretEvents()).
		// Discovery state ConfigMaps (the only ConfigMaps in the cache): a merge changes
		// the snapshot's discovered addresses.
		Watches(&corev1.ConfigMap{}, toConfig).
		WatchesRawSource(source.Channel(prime, toConfig)).
		WatchesRawSource(source.Channel(r.notifier.renders, toConfig)).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: 1,
			// A failed render retries fast at first, and at most every 30 s.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](50*time.Millisecond, 30*time.Second),
		})
	if certManager {
		b = b.Watches(&certmanagerv1.Certificate{}, toConfig, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == r.opts.Namespace && o.GetName() == r.opts.CertificateName
		})))
	}
	if err := b.Complete(r); err != nil {
		return fmt.Errorf("setting up the relay config controller: %w", err)
	}
	return nil
}

// secretEvents maps the Secrets a render depends on to configRequest: credential
// Secrets, CA bundles that a TLSDeliveryPolicy names, the relay certificate's Secret,
// and the config shards themselves (so a deleted or edited shard is rewritten). A shard
// update that carries the hash just written is the render's own write and is skipped.
func (r *configReconciler) secretEvents() handler.EventHandler {
	relevant := func(ctx context.Context, o client.Object, deleted bool) bool {
		if _, ok := o.GetLabels()[LabelCredential]; ok {
			return true
		}
		if o.GetNamespace() == r.opts.Namespace {
			if _, ok := o.GetLabels()[LabelLogin]; ok {
				return true
			}
			if o.GetName() == r.opts.certificateSecretName() || o.GetName() == ReportSecretName && r.opts.ReportRelay != "" {
				return true
			}
			if _, ok := o.GetLabels()[snapshot.LabelRelaySecret]; ok {
				return true // a copy changed or went: write it again
			}
			if o.GetLabels()[snapshot.LabelConfig] == r.opts.ConfigName {
				return deleted || !r.ledger.isOwnHash(o.GetAnnotations()[snapshot.AnnotationHash])
			}
		}
		var policies relayv1alpha1.TLSDeliveryPolicyList
		if err := r.client.List(ctx, &policies, client.InNamespace(o.GetNamespace()),
			client.MatchingFields{indexTLSPolicyCASecret: o.GetName()}); err != nil {
			return true // cannot tell: render, to be safe
		}
		if len(policies.Items) > 0 {
			return true
		}
		var domains relayv1alpha1.MailDomainList
		if err := r.client.List(ctx, &domains, client.InNamespace(o.GetNamespace()),
			client.MatchingFields{indexMailDomainSecret: o.GetName()}); err != nil {
			return true
		}
		return len(domains.Items) > 0
	}
	add := func(ctx context.Context, o client.Object, deleted bool, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if relevant(ctx, o, deleted) {
			q.Add(configRequest)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, false, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectNew, false, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, true, q)
		},
	}
}

// credentialsOfSecret maps a Secret to the SMTPCredential that owns it, or that names it
// (a foreign Secret in the way of a credential).
func credentialsOfSecret(c client.Client) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		if _, ok := o.GetLabels()[LabelLogin]; ok {
			if ns, name, ok := strings.Cut(o.GetAnnotations()[AnnotationCredential], "/"); ok {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
			}
			return nil
		}
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "SMTPCredential" && ref.APIVersion == relayv1alpha1.GroupVersion.String() {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}}
		}
		var creds relayv1alpha1.SMTPCredentialList
		if err := c.List(ctx, &creds, client.InNamespace(o.GetNamespace()),
			client.MatchingFields{indexCredentialSecret: o.GetName()}); err != nil {
			return nil
		}
		return requestsFor(creds.Items)
	}
}

// credentialsOfDomain maps a new MailDomain to the credentials waiting for it.
func credentialsOfDomain(c client.Client) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var creds relayv1alpha1.SMTPCredentialList
		if err := c.List(ctx, &creds, client.InNamespace(o.GetNamespace()),
			client.MatchingFields{indexCredentialDomain: o.GetName()}); err != nil {
			return nil
		}
		return requestsFor(creds.Items)
	}
}

func requestsFor(creds []relayv1alpha1.SMTPCredential) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(creds))
	for i := range creds {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: creds[i].Namespace, Name: creds[i].Name}})
	}
	return reqs
}

// setupIndexes registers the cache indexes the reconcilers look up by.
func setupIndexes(mgr ctrl.Manager) error {
	ix := mgr.GetFieldIndexer()
	ctx := context.Background()
	indexes := []struct {
		obj   client.Object
		field string
		fn    client.IndexerFunc
	}{
		{&relayv1alpha1.SMTPCredential{}, indexCredentialSecret, func(o client.Object) []string {
			return []string{credentialSecretName(o.(*relayv1alpha1.SMTPCredential))}
		}},
		{&relayv1alpha1.SMTPCredential{}, indexCredentialUsername, func(o client.Object) []string {
			if u := o.(*relayv1alpha1.SMTPCredential).Status.Username; u != "" {
				return []string{u}
			}
			return nil
		}},
		{&relayv1alpha1.SMTPCredential{}, indexCredentialDomain, func(o client.Object) []string {
			return []string{o.(*relayv1alpha1.SMTPCredential).Spec.MailDomainRef.Name}
		}},
		{&relayv1alpha1.MailDomain{}, indexMailDomainSecret, func(o client.Object) []string {
			var names []string
			for _, a := range compiler.RelaySecrets(o.(*relayv1alpha1.MailDomain)) {
				names = append(names, a.Source.Name)
			}
			return names
		}},
		{&relayv1alpha1.TLSDeliveryPolicy{}, indexTLSPolicyCASecret, func(o client.Object) []string {
			if ref := o.(*relayv1alpha1.TLSDeliveryPolicy).Spec.CABundleSecretRef; ref != nil {
				return []string{ref.Name}
			}
			return nil
		}},
	}
	for _, i := range indexes {
		if err := ix.IndexField(ctx, i.obj, i.field, i.fn); err != nil {
			return fmt.Errorf("indexing %T by %s: %w", i.obj, i.field, err)
		}
	}
	return nil
}
