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

	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// The operator's own SMTP identity, for the reports it sends through the relay. The
// Secret (in --namespace) holds the password; only its hash, in the Secret's
// password-hash annotation, reaches the relay config.
const (
	ReportSecretName = "postwarden-discovery-report"
	reportUsername   = "postwarden-discovery-report"
)

// issueReportCredential creates the report credential's Secret the first time: its own
// phase of a render, before gather, which only reads. Without --report-relay the operator
// sends no mail and needs none. The Secret has no owner: it belongs to the installation
// (the operator namespace), and the operator issues it again if it is deleted.
func (r *configReconciler) issueReportCredential(ctx context.Context) error {
	if r.opts.ReportRelay == "" {
		return nil
	}
	name := types.NamespacedName{Namespace: r.opts.Namespace, Name: ReportSecretName}
	if err := r.client.Get(ctx, name, secretMeta()); !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("reading the report credential Secret: %w", err)
		}
		return nil
	}
	password := rand.Text()
	hash, err := snapshot.HashPassword(password)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name,
			Labels:      map[string]string{labelManagedBy: managerName},
			Annotations: map[string]string{AnnotationUsername: reportUsername, AnnotationPasswordHash: hash}},
		Type:      corev1.SecretTypeOpaque,
		Immutable: new(true),
		Data:      map[string][]byte{"username": []byte(reportUsername), "password": []byte(password)},
	}
	if err := r.client.Create(ctx, secret, client.FieldOwner(fieldOwner)); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the report credential Secret: %w", err)
	}
	return nil
}

// reportCredential returns the report credential to compile, read past the cache so a
// Secret issueReportCredential has just created is seen (metadata only is kept).
func (r *configReconciler) reportCredential(ctx context.Context) (*compiler.ReportCredential, error) {
	if r.opts.ReportRelay == "" {
		return nil, nil
	}
	name := types.NamespacedName{Namespace: r.opts.Namespace, Name: ReportSecretName}
	meta := secretMeta()
	err := r.client.Get(ctx, name, meta)
	if apierrors.IsNotFound(err) {
		var live corev1.Secret
		if err = r.apiReader.Get(ctx, name, &live); err == nil {
			meta.ObjectMeta = live.ObjectMeta
		}
	}
	if apierrors.IsNotFound(err) {
		return nil, nil // deleted meanwhile: the next render issues it again
	}
	if err != nil {
		return nil, fmt.Errorf("reading the report credential Secret: %w", err)
	}
	return &compiler.ReportCredential{
		Username:     meta.Annotations[AnnotationUsername],
		PasswordHash: meta.Annotations[AnnotationPasswordHash],
		Source:       snapshot.ObjectRef{Namespace: name.Namespace, Name: name.Name},
	}, nil
}
