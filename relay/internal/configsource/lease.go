package configsource

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// LeaseReporter keeps the replica's status Lease (see relay/snapshot: LeasePrefix +
// pod name, labelled LabelRelayStatus, annotated with the hash the replica enforces).
// It renews the Lease while Status reports ready, and lets it expire otherwise, so the
// operator can tell which replicas enforce which snapshot. It needs get, create and
// update on Leases in its namespace.
type LeaseReporter struct {
	Client    kubernetes.Interface
	Namespace string
	PodName   string
	// Status returns whether the replica is ready and the hash of the snapshot it
	// enforces.
	Status func() (ready bool, hash string)
	// Annotations, when set, returns more to report on the Lease at each renewal, such
	// as snapshot.AnnotationLoginFailures; an empty value removes the annotation.
	Annotations func() map[string]string
	// Duration is the Lease's leaseDurationSeconds (30 s when zero); the Lease is renewed
	// every third of it.
	Duration time.Duration
	Logger   *slog.Logger
	// Now is the clock of renewTime (time.Now when nil).
	Now func() time.Time

	poke chan struct{}
}

// NewLeaseReporter returns a reporter; call Run.
func NewLeaseReporter(r LeaseReporter) *LeaseReporter {
	r.poke = make(chan struct{}, 1)
	if r.Duration <= 0 {
		r.Duration = 30 * time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return &r
}

// Name is the Lease's name.
func (r *LeaseReporter) Name() string { return snapshot.LeasePrefix + r.PodName }

// Poke renews the Lease now, as after a reload, instead of at the next period.
func (r *LeaseReporter) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// Run renews the Lease until ctx ends.
func (r *LeaseReporter) Run(ctx context.Context) {
	ticker := time.NewTicker(r.Duration / 3)
	defer ticker.Stop()
	var lease *coordinationv1.Lease
	for {
		ready, hash := r.Status()
		if ready {
			var err error
			if lease, err = r.renew(ctx, lease, hash); err != nil && ctx.Err() == nil {
				r.Logger.Warn("renewing relay status lease", "lease", r.Name(), "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-r.poke:
		}
	}
}

// renew writes the Lease, starting from the copy we last wrote when we have one, so a
// renewal is one request. A conflict or any error drops the copy: the next round reads
// the Lease afresh.
func (r *LeaseReporter) renew(ctx context.Context, lease *coordinationv1.Lease, hash string) (*coordinationv1.Lease, error) {
	leases := r.Client.CoordinationV1().Leases(r.Namespace)
	if lease == nil {
		got, err := leases.Get(ctx, r.Name(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := leases.Create(ctx, r.fill(&coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: r.Name(), Namespace: r.Namespace},
			}, hash), metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("creating lease: %w", err)
			}
			return created, nil
		case err != nil:
			return nil, fmt.Errorf("reading lease: %w", err)
		}
		lease = got
	}
	updated, err := leases.Update(ctx, r.fill(lease.DeepCopy(), hash), metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating lease: %w", err)
	}
	return updated, nil
}

func (r *LeaseReporter) fill(l *coordinationv1.Lease, hash string) *coordinationv1.Lease {
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[snapshot.LabelRelayStatus] = "true"
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[snapshot.AnnotationHash] = hash
	if r.Annotations != nil {
		for k, v := range r.Annotations() {
			if v == "" {
				delete(l.Annotations, k)
			} else {
				l.Annotations[k] = v
			}
		}
	}
	holder := r.PodName
	seconds := int32(r.Duration / time.Second)
	now := metav1.NewMicroTime(r.Now())
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &seconds
	l.Spec.RenewTime = &now
	if l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &now
	}
	return l
}
