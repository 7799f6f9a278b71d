package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// writeShards writes the snapshot's shards to Secrets <ConfigName>-<index> and deletes
// shards left over from a larger snapshot. It reports whether anything was written.
//
// Write order: shards are written from the highest index down to 0, so shard 0 is the
// commit point. When shard 0 carries a new hash, every other shard of that hash is
// already in place; a relay that reads in between sees shards of two hashes, which
// snapshot.Assemble refuses, and keeps its current snapshot until the set agrees. Stale
// shards (index >= the new count) are deleted only after shard 0 is written. A shard
// whose annotations already describe the wanted shard is not rewritten.
func (r *configReconciler) writeShards(ctx context.Context, s *snapshot.Snapshot) (bool, error) {
	shards, err := snapshot.Encode(s, r.maxShardBytes)
	if err != nil {
		return false, fmt.Errorf("encoding relay config: %w", err)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.client.List(ctx, list, client.InNamespace(r.opts.Namespace),
		client.MatchingLabels{snapshot.LabelConfig: r.opts.ConfigName}); err != nil {
		return false, fmt.Errorf("listing relay config Secrets: %w", err)
	}
	existing := map[string]*metav1.PartialObjectMetadata{}
	for i := range list.Items {
		existing[list.Items[i].Name] = &list.Items[i]
	}

	written := false
	for i := len(shards) - 1; i >= 0; i-- {
		sh := shards[i]
		name := r.shardName(i)
		if cur := existing[name]; cur != nil && annotationsHold(cur.Annotations, sh.Annotations()) {
			continue
		}
		if err := r.putShard(ctx, name, sh, existing[name]); err != nil {
			return written, err
		}
		written = true
	}
	for name := range existing {
		if index, ok := r.shardIndex(name); ok && index < len(shards) {
			continue
		}
		stale := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: name}}
		if err := r.client.Delete(ctx, stale); client.IgnoreNotFound(err) != nil {
			return written, fmt.Errorf("deleting stale relay config shard %s: %w", name, err)
		}
		written = true
	}
	return written, nil
}

func (r *configReconciler) putShard(ctx context.Context, name string, sh snapshot.Shard, cur *metav1.PartialObjectMetadata) error {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   r.opts.Namespace,
			Name:        name,
			Labels:      map[string]string{snapshot.LabelConfig: r.opts.ConfigName, labelManagedBy: managerName},
			Annotations: sh.Annotations(),
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{snapshot.DataKey: sh.Data},
	}
	if cur == nil {
		err := r.client.Create(ctx, secret, client.FieldOwner(fieldOwner))
		if !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("creating relay config shard %s: %w", name, err)
			}
			return nil
		}
		// The cache has not seen it yet: fall through to an update of the live object.
		var live corev1.Secret
		if err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: name}, &live); err != nil {
			return fmt.Errorf("reading relay config shard %s: %w", name, err)
		}
		secret.ResourceVersion = live.ResourceVersion
	} else {
		secret.ResourceVersion = cur.ResourceVersion
	}
	if err := r.client.Update(ctx, secret, client.FieldOwner(fieldOwner)); err != nil {
		return fmt.Errorf("updating relay config shard %s: %w", name, err)
	}
	return nil
}

func (r *configReconciler) shardName(index int) string {
	return r.opts.ConfigName + "-" + strconv.Itoa(index)
}

// shardIndex parses the index out of a shard Secret's name.
func (r *configReconciler) shardIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, r.opts.ConfigName+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil && r.shardName(i) == name
}

// annotationsHold reports whether have contains every key of want with the same value.
func annotationsHold(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
