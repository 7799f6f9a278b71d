package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
)

// mailDomainReconciler writes MailDomain status from the last render: the conditions,
// the counts and policies in effect, the relay certificate, and the config hash; and
// from the DKIM checker's last check, the DKIM keys and records.
type mailDomainReconciler struct {
	client client.Client
	views  statusViews
	status statusWriter
	dkim   *dkimTracker
}

func (r *mailDomainReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var md relayv1alpha1.MailDomain
	if err := r.client.Get(ctx, req.NamespacedName, &md); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !md.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	st, ok := r.views.status(compiler.ObjectKey{Kind: compiler.KindMailDomain, Namespace: md.Namespace, Name: md.Name}, md.Generation)
	if !ok {
		return ctrl.Result{}, nil // the next render sends it again
	}
	before := md.DeepCopy()
	s := &md.Status
	setConditions(&s.Conditions, md.Generation, st)
	v := st.verdict
	s.Users, s.Credentials, s.Policies, s.ConfigHash, s.Certificate = 0, 0, nil, "", nil
	if v.Accepted {
		s.Users, s.Credentials, s.Policies, s.ConfigHash = v.Users, v.Credentials, v.Policies, st.firstHash
		setCertificateStatus(s, md.Generation, st.cert)
	} else {
		meta.RemoveStatusCondition(&s.Conditions, relayv1alpha1.ConditionCertificateReady)
	}
	setRelaySecretsStatus(s, md.Generation, v)
	setDKIMStatus(s, &md, r.dkim)
	s.ObservedGeneration = md.Generation
	if err := r.status.write(ctx, &md, before); err != nil {
		return ctrl.Result{}, err
	}
	if c := meta.FindStatusCondition(s.Conditions, relayv1alpha1.ConditionRelaySecretsReady); c != nil && c.Status == metav1.ConditionFalse &&
		!meta.IsStatusConditionFalse(before.Status.Conditions, relayv1alpha1.ConditionRelaySecretsReady) && r.status.recorder != nil {
		r.status.recorder.Eventf(&md, nil, corev1.EventTypeWarning, c.Reason, "CopySecrets", "%s", c.Message)
	}
	return ctrl.Result{}, nil
}

// setRelaySecretsStatus reports whether the relays have the credentials of the
// domain's hops that log in and the key of its delivery events; a domain that gives
// them none has no such condition.
func setRelaySecretsStatus(s *relayv1alpha1.MailDomainStatus, generation int64, v compiler.Verdict) {
	if !v.Accepted || !v.RelaySecrets {
		meta.RemoveStatusCondition(&s.Conditions, relayv1alpha1.ConditionRelaySecretsReady)
		return
	}
	cond := metav1.Condition{Type: relayv1alpha1.ConditionRelaySecretsReady, ObservedGeneration: generation,
		Status: metav1.ConditionTrue, Reason: relayv1alpha1.ReasonSecretsCopied,
		Message: "the relays have every credential and key the spec names"}
	if v.SecretProblem != "" {
		cond.Status, cond.Reason = metav1.ConditionFalse, relayv1alpha1.ReasonSecretMissing
		cond.Message = v.SecretProblem + "; mail on such a hop waits in the queue, and delivery events are not sent, until it is fixed"
	}
	meta.SetStatusCondition(&s.Conditions, cond)
}

// setCertificateStatus reports the relay certificate on a served domain.
func setCertificateStatus(s *relayv1alpha1.MailDomainStatus, generation int64, c certView) {
	cond := metav1.Condition{Type: relayv1alpha1.ConditionCertificateReady, ObservedGeneration: generation, Status: metav1.ConditionFalse, Message: c.Message}
	switch {
	case c.Missing:
		cond.Reason = relayv1alpha1.ReasonCertManagerMissing
	case !c.Managed:
		meta.RemoveStatusCondition(&s.Conditions, relayv1alpha1.ConditionCertificateReady)
		return
	case c.Ready:
		cond.Status, cond.Reason = metav1.ConditionTrue, relayv1alpha1.ReasonCertificateIssued
		s.Certificate = &relayv1alpha1.CertificateStatus{SecretName: c.SecretName, Ready: true, NotAfter: c.NotAfter}
	default:
		cond.Reason = relayv1alpha1.ReasonCertificateNotReady
		s.Certificate = &relayv1alpha1.CertificateStatus{SecretName: c.SecretName, NotAfter: c.NotAfter}
	}
	if cond.Message == "" {
		cond.Message = "the relay certificate is " + map[bool]string{true: "issued", false: "not issued yet"}[c.Ready]
	}
	meta.SetStatusCondition(&s.Conditions, cond)
}
