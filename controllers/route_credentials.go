package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Route credentials: a MailDomain's inboundDelivery or outboundRoute may log in with a
// username and password from a Secret of its namespace. The relays read Secrets of
// their own namespace only, so the operator copies the two values into a Secret there
// (compiler.RouteSecretName, labelled snapshot.LabelRelaySecret); the snapshot
// names the copy, never the values. Copies are written before the snapshot that names
// them and deleted after the snapshot that no longer does.

// Annotations on a copy: the source and its MailDomain, for whoever lists the relays'
// namespace (and for the relays reconciler, to name a failing hop's MailDomain), and
// the source's resourceVersion when copied, so a render sees from the metadata cache
// that a copy is current and reads nothing.
const (
	annotationRouteSource        = "relay.postwarden.dev/source-secret"
	annotationRouteMailDomain    = "relay.postwarden.dev/maildomain"
	annotationRouteSourceVersion = "relay.postwarden.dev/source-version"
)

// relaySecretProblems reads the tenant Secrets that MailDomains give the relays, marks
// them referenced (so the Secret cache keeps them), and says what is wrong with each
// for its use, by the copy's name, for the compiler: "" when it has the keys its use
// needs. A Secret that does not exist has no entry.
func (r *configReconciler) relaySecretProblems(ctx context.Context, domains []*relayv1alpha1.MailDomain,
	referenced map[types.NamespacedName]bool) (map[string]string, error) {
	out := map[string]string{}
	for _, md := range domains {
		for _, a := range compiler.RelaySecrets(md) {
			referenced[a.Source] = true
			data, err := r.secretData(ctx, a.Source)
			if err != nil {
				return nil, err
			}
			if data != nil {
				out[a.Copy] = relaySecretProblem(a, data)
			}
		}
	}
	return out, nil
}

// minEventKey is the shortest HMAC key accepted for delivery events: 128 bits.
const minEventKey = 16

func relaySecretProblem(a compiler.RelaySecret, data map[string][]byte) string {
	if a.Hop == compiler.UseEvents {
		if len(data[snapshot.WebhookSecretKey]) < minEventKey {
			return fmt.Sprintf("needs the key %s, of at least %d bytes", snapshot.WebhookSecretKey, minEventKey)
		}
		return ""
	}
	switch {
	case len(data[corev1.BasicAuthUsernameKey]) == 0 || len(data[corev1.BasicAuthPasswordKey]) == 0:
		return "needs the keys username and password"
	case bytes.ContainsAny(data[corev1.BasicAuthUsernameKey], "\x00\r\n") || bytes.ContainsAny(data[corev1.BasicAuthPasswordKey], "\x00\r\n"):
		// SASL PLAIN separates its fields with NUL; a line break would end the command.
		return "has a username or password with a NUL or line break"
	}
	return ""
}

// writeRouteCopies writes the copy of every usable Secret that an accepted domain's hop
// logs in with, and returns the names of the copies that should exist.
func (r *configReconciler) writeRouteCopies(ctx context.Context, in compiler.Input, res *compiler.Result) (map[string]bool, error) {
	copies, err := r.routeCopies(ctx)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	var errs []error
	for _, md := range in.MailDomains {
		v := res.Verdicts[compiler.ObjectKey{Kind: compiler.KindMailDomain, Namespace: md.Namespace, Name: md.Name}]
		if v == nil || !v.Accepted {
			continue
		}
		for _, a := range compiler.RelaySecrets(md) {
			if p, ok := in.SecretProblems[a.Copy]; !ok || p != "" {
				continue // the domain's status says why; mail on the hop waits
			}
			want[a.Copy] = true
			src := r.secrets[a.Source]
			if c := copies[a.Copy]; c != nil && c.Annotations[annotationRouteSourceVersion] == src.resourceVersion &&
				c.Annotations[annotationRouteSource] == a.Source.String() {
				continue // current: no read, no write
			}
			if err := r.writeRouteCopy(ctx, a, src); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return want, errors.Join(errs...)
}

// routeCopies returns the copies that exist, from the metadata cache, by name.
func (r *configReconciler) routeCopies(ctx context.Context) (map[string]*metav1.PartialObjectMetadata, error) {
	list, err := r.labelledSecrets(ctx, client.InNamespace(r.opts.Namespace), client.MatchingLabels{snapshot.LabelRelaySecret: "true"})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*metav1.PartialObjectMetadata, len(list))
	for name, c := range list {
		if _, key := c.Labels[labelDKIMKey]; key {
			continue // a DKIM key, which the relays read too, is no copy: see deleteStaleDKIMKeys
		}
		out[name.Name] = c
	}
	return out, nil
}

// writeRouteCopy writes a's copy from its source, unless the API server's copy (read
// afresh: the cache may lag behind our own last write) already holds it.
func (r *configReconciler) writeRouteCopy(ctx context.Context, a compiler.RelaySecret, src cachedSecret) error {
	data := src.data
	desired := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: a.Copy,
			Labels: map[string]string{snapshot.LabelRelaySecret: "true", labelManagedBy: managerName},
			Annotations: map[string]string{annotationRouteSource: a.Source.String(),
				annotationRouteMailDomain: a.MailDomain.String() + " " + a.Hop, annotationRouteSourceVersion: src.resourceVersion}},
		Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{
			corev1.BasicAuthUsernameKey: data[corev1.BasicAuthUsernameKey],
			corev1.BasicAuthPasswordKey: data[corev1.BasicAuthPasswordKey],
		},
	}
	if a.Hop == compiler.UseEvents {
		// Only the key: whatever else the tenant keeps in its Secret stays there.
		desired.Type = corev1.SecretTypeOpaque
		desired.Data = map[string][]byte{snapshot.WebhookSecretKey: data[snapshot.WebhookSecretKey]}
	}
	var cur corev1.Secret
	err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(desired), &cur)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.client.Create(ctx, desired, client.FieldOwner(fieldOwner)); err != nil {
			return fmt.Errorf("copying the credentials of %s for %s: %w", a.Source, a.MailDomain, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading route credentials %s: %w", a.Copy, err)
	case cur.Type != desired.Type:
		// Someone else's Secret of that name, or one edited by hand: the type of a
		// Secret cannot change, so replace it.
		if err := r.client.Delete(ctx, &cur, client.Preconditions{UID: &cur.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("replacing route credentials %s: %w", a.Copy, err)
		}
		return r.writeRouteCopy(ctx, a, src)
	case maps.EqualFunc(cur.Data, desired.Data, bytes.Equal) && maps.Equal(cur.Annotations, desired.Annotations):
		return nil
	}
	desired.ResourceVersion = cur.ResourceVersion
	if err := r.client.Update(ctx, desired, client.FieldOwner(fieldOwner)); err != nil {
		return fmt.Errorf("updating route credentials %s: %w", a.Copy, err)
	}
	return nil
}

// deleteStaleRouteCopies deletes the copies no accepted domain's hop uses any more.
func (r *configReconciler) deleteStaleRouteCopies(ctx context.Context, want map[string]bool) error {
	copies, err := r.routeCopies(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for name, c := range copies {
		if want[name] {
			continue
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: name}}
		if err := r.client.Delete(ctx, s, client.Preconditions{UID: &c.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting unused route credentials %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
