package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// smtpCredentialReconciler issues each SMTPCredential's Secret once, replaces it on
// rotation or when it is deleted, and writes the credential's status.
//
// The Secret is immutable and never updated. Rotation (a new spec.rotationToken)
// deletes it, with a UID precondition, and creates a new one with a new password: a
// replacement, never an overwrite. The password exists only in that Secret; its HMAC
// hash and the username are in the credential's login record in the operator's
// namespace (smtpcredential_login.go), which the config render reads.
type smtpCredentialReconciler struct {
	// limitHits says when the relays last refused each credential for a limit; usage,
	// what each sent.
	limitHits *limitHitTracker
	usage     *usageTracker
	client    client.Client
	apiReader client.Reader // uncached: whether a Secret exists right now
	scheme    *runtime.Scheme
	recorder  recorder.EventRecorder
	views     statusViews
	opts      OperatorOptions
}

// credentialScope is what one reconcile works with.
type credentialScope struct {
	cred   *relayv1alpha1.SMTPCredential
	secret *metav1.PartialObjectMetadata // nil when it does not exist
	record *metav1.PartialObjectMetadata // the login record; nil when it does not exist
	// problem is a condition the issuing phase sets when it cannot issue.
	problem *metav1.Condition
}

func (r *smtpCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cred relayv1alpha1.SMTPCredential
	if err := r.client.Get(ctx, req.NamespacedName, &cred); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.deleteStaleRecords(ctx, req.NamespacedName, "")
		}
		return ctrl.Result{}, err
	}
	if !cred.DeletionTimestamp.IsZero() {
		// The Secret goes with it (owner reference); the next render drops the credential.
		return ctrl.Result{}, r.deleteStaleRecords(ctx, req.NamespacedName, "")
	}
	before := cred.DeepCopy()
	scope := &credentialScope{cred: &cred}
	if err := r.loadSecret(ctx, scope); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.loadRecord(ctx, scope); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.migrateRecord(ctx, scope); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.deleteStaleRecords(ctx, req.NamespacedName, loginRecordName(&cred)); err != nil {
		return ctrl.Result{}, err
	}
	result, issueErr := r.issue(ctx, scope)
	if issueErr != nil && scope.problem == nil {
		return result, issueErr
	}
	if err := r.updateStatus(ctx, scope, before); err != nil {
		return ctrl.Result{}, err
	}
	return result, issueErr
}

func (r *smtpCredentialReconciler) loadSecret(ctx context.Context, scope *credentialScope) error {
	meta := secretMeta()
	key := types.NamespacedName{Namespace: scope.cred.Namespace, Name: credentialSecretName(scope.cred)}
	if err := r.client.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading Secret %s: %w", key, err)
	}
	scope.secret = meta
	return nil
}

// issue creates the Secret when it is missing, and replaces it when the rotation token
// changed or when it is not the Secret its login record was issued with (edited or
// replaced by hand, or its record lost). It never modifies an existing Secret.
func (r *smtpCredentialReconciler) issue(ctx context.Context, scope *credentialScope) (ctrl.Result, error) {
	cred, secret := scope.cred, scope.secret
	name := credentialSecretName(cred)
	matches := secret != nil && scope.record != nil && loginMatches(scope.record, secret)
	switch {
	case secret != nil && !isControlledBy(secret, cred):
		scope.problem = &metav1.Condition{Reason: relayv1alpha1.ReasonInvalidSpec,
			Message: fmt.Sprintf("Secret %s already exists and does not belong to this SMTPCredential; delete it or set another spec.secretName", name)}
		return ctrl.Result{}, reconcile.TerminalError(errors.New(scope.problem.Message))
	case matches && secret.Annotations[AnnotationRotationToken] == cred.Spec.RotationToken:
		return ctrl.Result{}, nil
	case secret != nil:
		uid := secret.UID
		err := r.client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: name}},
			client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return ctrl.Result{}, fmt.Errorf("deleting Secret %s for rotation: %w", name, err)
		}
		if err != nil {
			// Already replaced; the cache is behind. Look again shortly.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		if err := r.create(ctx, scope); err != nil {
			return ctrl.Result{}, err
		}
		if !matches {
			r.recorder.Eventf(cred, nil, corev1.EventTypeWarning, "SecretRecreated", "IssueSecret",
				"Secret %s is not the one issued with this credential's login (edited or replaced): issued a new password; clients using the old one must be updated", name)
			return ctrl.Result{}, nil
		}
		r.recorder.Eventf(cred, nil, corev1.EventTypeNormal, "PasswordRotated", "Rotate",
			"rotationToken changed to %q: Secret %s replaced with a new password", cred.Spec.RotationToken, name)
		return ctrl.Result{}, nil
	}

	reissue := cred.Status.IssuedAt != nil
	if err := r.create(ctx, scope); err != nil {
		return ctrl.Result{}, err
	}
	if scope.problem != nil || scope.secret == nil {
		return ctrl.Result{}, nil
	}
	if reissue {
		r.recorder.Eventf(cred, nil, corev1.EventTypeWarning, "SecretRecreated", "IssueSecret",
			"Secret %s was deleted: issued a new password; clients using the old one must be updated", name)
	} else {
		r.recorder.Eventf(cred, nil, corev1.EventTypeNormal, relayv1alpha1.ReasonSecretIssued, "IssueSecret",
			"username and password written to Secret %s", name)
	}
	return ctrl.Result{}, nil
}

// create writes a new Secret with a new password, after the login record that holds
// its hash. The username stays the one the credential already has, so rotation changes
// only the password.
func (r *smtpCredentialReconciler) create(ctx context.Context, scope *credentialScope) error {
	cred := scope.cred
	username, err := r.username(ctx, scope)
	if err != nil || username == "" {
		return err
	}
	// The record is rewritten before the Secret is created: make sure no Secret exists
	// that the cache has not seen yet, or its password would lose its record.
	if err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: credentialSecretName(cred)}, secretMeta()); err == nil {
		return nil // the watch brings it back here
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Secret %s: %w", credentialSecretName(cred), err)
	}
	password, issueID := newPassword(), newIssueID()
	hash, err := snapshot.HashPassword(password)
	if err != nil {
		return fmt.Errorf("hashing the new password: %w", err)
	}
	if err := r.putRecord(ctx, scope, username, hash, issueID); err != nil {
		return err
	}
	secret := credentialSecret(cred, username, password, issueID, r.opts.SubmissionHost, r.opts.SubmissionPort)
	if err := controllerutil.SetControllerReference(cred, secret, r.scheme); err != nil {
		return err
	}
	if err := r.client.Create(ctx, secret, client.FieldOwner(fieldOwner)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// The cache had not seen a Secret that exists; the watch brings it back here.
			return nil
		}
		return fmt.Errorf("creating Secret %s: %w", secret.Name, err)
	}
	logf.FromContext(ctx).Info("credential Secret issued", "secret", secret.Name, "username", username)
	scope.secret = &metav1.PartialObjectMetadata{ObjectMeta: secret.ObjectMeta}
	return nil
}

// username returns the credential's username: the one already issued, or a new one
// derived from the label and the MailDomain's domain. It returns "" (and sets
// scope.problem) while the MailDomain does not exist.
func (r *smtpCredentialReconciler) username(ctx context.Context, scope *credentialScope) (string, error) {
	cred := scope.cred
	if rec := scope.record; rec != nil && rec.Annotations[AnnotationUsername] != "" {
		return rec.Annotations[AnnotationUsername], nil
	}
	if cred.Status.Username != "" {
		return cred.Status.Username, nil
	}
	var md relayv1alpha1.MailDomain
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.MailDomainRef.Name}, &md); err != nil {
		if apierrors.IsNotFound(err) {
			scope.problem = &metav1.Condition{Reason: relayv1alpha1.ReasonInvalidReference,
				Message: fmt.Sprintf("MailDomain %s does not exist in namespace %s; the credential is issued once it does", cred.Spec.MailDomainRef.Name, cred.Namespace)}
			return "", nil
		}
		return "", fmt.Errorf("reading MailDomain %s: %w", cred.Spec.MailDomainRef.Name, err)
	}
	for range 5 {
		candidate, err := newUsername(cred.Spec.Label, md.Spec.Domain)
		if err != nil {
			return "", fmt.Errorf("generating a username: %w", err)
		}
		var taken relayv1alpha1.SMTPCredentialList
		if err := r.client.List(ctx, &taken, client.MatchingFields{indexCredentialUsername: candidate}); err != nil {
			return "", fmt.Errorf("checking username %s: %w", candidate, err)
		}
		if len(taken.Items) == 0 {
			return candidate, nil
		}
	}
	return "", errors.New("could not find a free username in 5 tries")
}

// updateStatus writes what the Secret says and what the last render decided.
func (r *smtpCredentialReconciler) updateStatus(ctx context.Context, scope *credentialScope, before *relayv1alpha1.SMTPCredential) error {
	cred := scope.cred
	s := &cred.Status
	if sec := scope.secret; sec != nil && isControlledBy(sec, cred) {
		s.SecretName = sec.Name
		if rec := scope.record; rec != nil && loginMatches(rec, sec) {
			s.Username = rec.Annotations[AnnotationUsername]
		}
		s.RotationToken = sec.Annotations[AnnotationRotationToken]
		if !sec.CreationTimestamp.IsZero() {
			issued := sec.CreationTimestamp
			s.IssuedAt = &issued
		}
	}
	if p := scope.problem; p != nil {
		for _, t := range []string{relayv1alpha1.ConditionAccepted, relayv1alpha1.ConditionReady} {
			meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionFalse,
				ObservedGeneration: cred.Generation, Reason: p.Reason, Message: p.Message})
		}
		s.ObservedGeneration = cred.Generation
	} else if st, ok := r.views.status(compiler.ObjectKey{Kind: compiler.KindSMTPCredential, Namespace: cred.Namespace, Name: cred.Name}, cred.Generation); ok {
		setConditions(&s.Conditions, cred.Generation, st)
		s.ObservedGeneration = cred.Generation
	}
	r.limitHits.setLimitReached(s, client.ObjectKeyFromObject(cred))
	r.usage.setUsage(ctx, r.client, cred)
	return statusWriter{r.client, r.recorder}.write(ctx, cred, before)
}
