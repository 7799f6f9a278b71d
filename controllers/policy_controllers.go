package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
)

// discoveryPolicyReconciler writes DiscoveryPolicy status from the last render.
type discoveryPolicyReconciler struct {
	client   client.Client
	recorder recorder.EventRecorder
	state    *state
}

func (r *discoveryPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p relayv1alpha1.DiscoveryPolicy
	if err := r.client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	st, ok := r.state.status(compiler.ObjectKey{Kind: compiler.KindDiscoveryPolicy, Namespace: p.Namespace, Name: p.Name}, p.Generation)
	if !ok {
		return ctrl.Result{}, nil
	}
	before := p.DeepCopy()
	setConditions(&p.Status.Conditions, p.Generation, st)
	p.Status.MailDomains = st.verdict.MailDomains
	p.Status.ObservedGeneration = p.Generation
	return ctrl.Result{}, writeStatus(ctx, r.client, r.recorder, &p, before, p.Status, before.Status, p.Status.Conditions, before.Status.Conditions)
}

// tlsDeliveryPolicyReconciler writes TLSDeliveryPolicy status from the last render.
type tlsDeliveryPolicyReconciler struct {
	client   client.Client
	recorder recorder.EventRecorder
	state    *state
}

func (r *tlsDeliveryPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p relayv1alpha1.TLSDeliveryPolicy
	if err := r.client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	st, ok := r.state.status(compiler.ObjectKey{Kind: compiler.KindTLSDeliveryPolicy, Namespace: p.Namespace, Name: p.Name}, p.Generation)
	if !ok {
		return ctrl.Result{}, nil
	}
	before := p.DeepCopy()
	setConditions(&p.Status.Conditions, p.Generation, st)
	p.Status.MailDomains = st.verdict.MailDomains
	p.Status.ObservedGeneration = p.Generation
	return ctrl.Result{}, writeStatus(ctx, r.client, r.recorder, &p, before, p.Status, before.Status, p.Status.Conditions, before.Status.Conditions)
}
