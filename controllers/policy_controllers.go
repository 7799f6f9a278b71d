package controllers

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
)

// policyStatus points at the status fields that both policy kinds share.
type policyStatus struct {
	conditions         *[]metav1.Condition
	mailDomains        *[]string
	observedGeneration *int64
}

func discoveryPolicyStatus(p *relayv1alpha1.DiscoveryPolicy) policyStatus {
	return policyStatus{&p.Status.Conditions, &p.Status.MailDomains, &p.Status.ObservedGeneration}
}

func tlsDeliveryPolicyStatus(p *relayv1alpha1.TLSDeliveryPolicy) policyStatus {
	return policyStatus{&p.Status.Conditions, &p.Status.MailDomains, &p.Status.ObservedGeneration}
}

// policyReconciler writes a DiscoveryPolicy's or TLSDeliveryPolicy's status from the last
// render: the two kinds report the same things.
type policyReconciler[P any, PT interface {
	*P
	conditioned
}] struct {
	client client.Client
	views  statusViews
	writer statusWriter
	kind   compiler.Kind
	status func(PT) policyStatus
}

func (r *policyReconciler[P, PT]) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := PT(new(P))
	if err := r.client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	st, ok := r.views.status(compiler.ObjectKey{Kind: r.kind, Namespace: p.GetNamespace(), Name: p.GetName()}, p.GetGeneration())
	if !ok {
		return ctrl.Result{}, nil
	}
	before := p.DeepCopyObject().(PT)
	s := r.status(p)
	setConditions(s.conditions, p.GetGeneration(), st)
	*s.mailDomains = st.verdict.MailDomains
	*s.observedGeneration = p.GetGeneration()
	return ctrl.Result{}, r.writer.write(ctx, p, before)
}
