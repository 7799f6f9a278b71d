package controllers

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// A login record is what the relay config trusts for one SMTPCredential: its username
// and its password's hash, in annotations of a Secret without data in the operator's
// namespace, which tenants cannot edit. The credential Secret in the tenant's namespace
// only delivers the password: a tenant that edits its annotations, or replaces it, can
// neither take another login's username nor install a password of its choosing. The
// record and the Secret share a random issue ID, so a render uses a record only with
// the Secret it was issued with.

// legacyIssuePrefix marks a record made, once, from a Secret issued before records
// existed, whose annotations then held the hash: it matches that Secret by UID.
const legacyIssuePrefix = "legacy:"

// loginRecordName is the record of cred, by UID, so that a re-created SMTPCredential of
// the same name never inherits its predecessor's login.
func loginRecordName(cred *relayv1alpha1.SMTPCredential) string {
	return "postwarden-login-" + string(cred.UID)
}

// loginMatches reports whether record was issued with secret.
func loginMatches(record, secret metav1.Object) bool {
	id := record.GetAnnotations()[AnnotationIssueID]
	return id != "" && (id == secret.GetAnnotations()[AnnotationIssueID] || id == legacyIssuePrefix+string(secret.GetUID()))
}

// newIssueID is a random ID that ties a record to its Secret.
func newIssueID() string { return rand.Text() }

// loadRecord reads cred's login record from the metadata cache.
func (r *smtpCredentialReconciler) loadRecord(ctx context.Context, scope *credentialScope) error {
	meta := secretMeta()
	key := types.NamespacedName{Namespace: r.opts.Namespace, Name: loginRecordName(scope.cred)}
	if err := r.client.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading login record %s: %w", key, err)
	}
	scope.record = meta
	return nil
}

// putRecord creates or updates cred's login record.
func (r *smtpCredentialReconciler) putRecord(ctx context.Context, scope *credentialScope, username, hash, issueID string) error {
	cred := scope.cred
	record := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.opts.Namespace,
			Name:      loginRecordName(cred),
			Labels:    map[string]string{LabelLogin: "true", labelManagedBy: managerName},
			Annotations: map[string]string{
				AnnotationUsername:     username,
				AnnotationPasswordHash: hash,
				AnnotationIssueID:      issueID,
				AnnotationCredential:   cred.Namespace + "/" + cred.Name,
			},
		},
		Type: corev1.SecretTypeOpaque,
	}
	err := r.client.Create(ctx, record, client.FieldOwner(fieldOwner))
	if apierrors.IsAlreadyExists(err) {
		var current corev1.Secret
		if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(record), &current); err != nil {
			return fmt.Errorf("reading login record %s: %w", record.Name, err)
		}
		current.Annotations = record.Annotations
		current.Labels = record.Labels
		err = r.client.Update(ctx, &current, client.FieldOwner(fieldOwner))
	}
	if err != nil {
		return fmt.Errorf("writing login record %s: %w", record.Name, err)
	}
	scope.record = &metav1.PartialObjectMetadata{ObjectMeta: record.ObjectMeta}
	return nil
}

// migrateRecord makes the record of a credential issued before records existed, from
// its Secret's annotations: trusted once, at the upgrade, as they were before it.
func (r *smtpCredentialReconciler) migrateRecord(ctx context.Context, scope *credentialScope) error {
	sec := scope.secret
	if scope.record != nil || sec == nil || !isControlledBy(sec, scope.cred) || sec.Annotations[AnnotationPasswordHash] == "" {
		return nil
	}
	logf.FromContext(ctx).Info("moving a credential's login to the operator's namespace", "secret", sec.Name)
	return r.putRecord(ctx, scope, sec.Annotations[AnnotationUsername], sec.Annotations[AnnotationPasswordHash],
		legacyIssuePrefix+string(sec.UID))
}

// deleteStaleRecords deletes the login records of namespace/name other than keep (the
// current credential's record name; "" when the credential is gone).
func (r *smtpCredentialReconciler) deleteStaleRecords(ctx context.Context, name types.NamespacedName, keep string) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.client.List(ctx, list, client.InNamespace(r.opts.Namespace), client.HasLabels{LabelLogin}); err != nil {
		return fmt.Errorf("listing login records: %w", err)
	}
	for i := range list.Items {
		rec := &list.Items[i]
		if rec.Annotations[AnnotationCredential] != name.String() || rec.Name == keep {
			continue
		}
		uid := rec.UID
		err := r.client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: rec.Namespace, Name: rec.Name}},
			client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting login record %s: %w", rec.Name, err)
		}
	}
	return nil
}
