package discovery

import (
	"bytes"
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/postwarden/postwarden/relay/discoverystate"
)

// ConfigMapPublisher publishes batches to the replica's observations ConfigMap (see
// discoverystate: ObservationsPrefix). It needs get, create and update on ConfigMaps in
// its namespace.
type ConfigMapPublisher struct {
	Client    kubernetes.Interface
	Namespace string
	PodName   string
	// PodUID, when set, makes the Pod the ConfigMap's owner, so it goes with the pod.
	PodUID string
}

// Name is the ConfigMap's name.
func (p *ConfigMapPublisher) Name() string { return discoverystate.ObservationsPrefix + p.PodName }

// Publish implements Publisher. It writes only when the batch changed, and returns the
// acknowledgement the operator left for this journal.
func (p *ConfigMapPublisher) Publish(ctx context.Context, b discoverystate.Batch) (uint64, error) {
	data, err := discoverystate.EncodeBatch(b)
	if err != nil {
		return 0, err
	}
	cms := p.Client.CoreV1().ConfigMaps(p.Namespace)
	cm, err := cms.Get(ctx, p.Name(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: p.Name(), Namespace: p.Namespace,
			Labels: map[string]string{discoverystate.LabelObservations: "true"},
		}, Data: map[string]string{discoverystate.BatchKey: string(data)}}
		if p.PodUID != "" {
			cm.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: p.PodName, UID: types.UID(p.PodUID),
			}}
		}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return 0, fmt.Errorf("creating discovery observations %s/%s: %w", p.Namespace, p.Name(), err)
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading discovery observations %s/%s: %w", p.Namespace, p.Name(), err)
	}
	var acked uint64
	if journal, seq, ok := discoverystate.ParseAck(cm.Annotations[discoverystate.AnnotationAcked]); ok && journal == b.Journal {
		acked = seq
	}
	if bytes.Equal([]byte(cm.Data[discoverystate.BatchKey]), data) {
		return acked, nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[discoverystate.BatchKey] = string(data)
	// The update carries the resourceVersion read above: if the operator acknowledged
	// meanwhile, it conflicts and the next round sees the new acknowledgement.
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
		return acked, nil
	} else if err != nil {
		return 0, fmt.Errorf("updating discovery observations %s/%s: %w", p.Namespace, p.Name(), err)
	}
	return acked, nil
}
