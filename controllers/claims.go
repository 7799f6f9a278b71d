package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/postwarden/postwarden/controllers/compiler"
)

// Domain claims (compiler.Claim) live in one ConfigMap in the operator's namespace, one
// key per domain, so they survive restarts and leader changes and no tenant can edit
// them. An admin releases a claim at once by deleting its key; the next render applies
// that.

// claimsName is the ConfigMap of the domain claims.
func (o OperatorOptions) claimsName() types.NamespacedName {
	return types.NamespacedName{Namespace: o.Namespace, Name: o.ConfigName + "-domain-claims"}
}

// readClaims returns the stored claims and the ConfigMap they came from (nil when there
// is none yet). It reads past the cache, which holds only discovery ConfigMaps. A key
// that does not decode is dropped with a log line: its domain goes to the oldest
// MailDomain again, as before claims were kept.
func (r *configReconciler) readClaims(ctx context.Context) (map[string]compiler.Claim, *corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	if err := r.apiReader.Get(ctx, r.opts.claimsName(), &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return map[string]compiler.Claim{}, nil, nil
		}
		return nil, nil, fmt.Errorf("reading domain claims: %w", err)
	}
	claims := make(map[string]compiler.Claim, len(cm.Data))
	for domain, text := range cm.Data {
		var cl compiler.Claim
		if err := json.Unmarshal([]byte(text), &cl); err != nil || cl.Namespace == "" {
			logf.FromContext(ctx).Info("ignoring a damaged domain claim", "domain", domain, "configMap", cm.Name)
			continue
		}
		claims[domain] = cl
	}
	return claims, &cm, nil
}

// writeClaims stores claims when they differ from what cm holds. It runs before the
// snapshot that relies on them is written, so a config never serves a domain whose
// claim was not stored.
func (r *configReconciler) writeClaims(ctx context.Context, claims map[string]compiler.Claim, cm *corev1.ConfigMap) error {
	data := make(map[string]string, len(claims))
	for domain, cl := range claims {
		text, err := json.Marshal(cl)
		if err != nil {
			return err
		}
		data[domain] = string(text)
	}
	if cm != nil && maps.Equal(cm.Data, data) {
		return nil
	}
	if cm == nil {
		name := r.opts.claimsName()
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name}, Data: data}
		if err := r.client.Create(ctx, cm); err != nil {
			return fmt.Errorf("storing domain claims: %w", err)
		}
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data = data
	if err := r.client.Update(ctx, cm); err != nil {
		return fmt.Errorf("storing domain claims: %w", err)
	}
	return nil
}
