// Package discovery is the operator's side of SMTP Discovery (docs/discovery.md): the
// loop that merges the observations the relays publish into each DiscoveryPolicy's
// state ConfigMaps, writes the discovery part of the policies' status, mails the weekly
// reports and deletes what relays gone for good left behind. The merge itself, a pure
// function, and the state's encoding are in package state below; this package reads
// and writes the API server around it. The operator wires it in with Setup.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
)

const (
	// resync merges every policy at least this often (wall time), even without
	// observations, so that time-driven transitions never wait for traffic.
	resync = time.Hour
	// recentAddresses is how many addresses status.recentAddresses shows.
	recentAddresses = 20
)

// reconciler is the operator side of SMTP Discovery (docs/discovery.md): every
// pass it reads the relays' observation batches, merges them into the state of each
// policy they concern, writes the state parts that changed, then acknowledges the
// batches; it also writes the policies' discovery status, sends the weekly reports and
// deletes the observations of relays gone for good. One request key, one worker: passes
// never overlap, and a pass runs at most once per merge interval (wall time), so what
// arrives meanwhile is merged together.
type reconciler struct {
	client       client.Client // cached: policies, state ConfigMaps, relay Leases
	observations client.Reader // cache of the observation ConfigMaps of opts.Namespace
	apiReader    client.Reader
	recorder     recorder.EventRecorder
	opts         Options
	snapshots    Snapshots
	clock        clock.PassiveClock
	// wall paces the loop (merge interval, resync, report retries). It is not clock,
	// which is SMTP Discovery's own time and which tests move by days at once.
	wall    clock.PassiveClock
	reports *reporter

	lastPass time.Time
	// policies remembers, per policy, what the last merge saw.
	policies map[string]*policyMemo
	// absentSince is when a relay's Lease was first seen missing, by ConfigMap name.
	absentSince map[string]time.Time
	// lastStateGC is when collectStates last looked for states of deleted policies.
	lastStateGC time.Time
}

type policyMemo struct {
	stored    *storedState
	input     string // the Policy Merge was given, as JSON
	lastMerge time.Time
	// settle: the last merge changed the state, so merging again may change more (a new
	// user makes an alias possible).
	settle bool
}

// batchCM is one observations ConfigMap and its decoded batch.
type batchCM struct {
	cm    *corev1.ConfigMap
	batch discoverystate.Batch
	// blocked says a policy the batch concerns failed to merge: no acknowledgement.
	blocked bool
}

func (r *reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	interval := r.opts.MergeInterval
	if wait := interval - r.wall.Since(r.lastPass); !r.lastPass.IsZero() && wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	snap := r.snapshots.Snapshot()
	if snap == nil {
		return ctrl.Result{RequeueAfter: interval}, nil // no render yet
	}
	r.lastPass = r.wall.Now()
	now := r.clock.Now()
	batches, err := r.readBatches(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var errs []error
	live := map[string]bool{}
	for _, dp := range snap.DiscoveryPolicies {
		live[dp.Name] = true
		if err := r.mergePolicy(ctx, snap, dp.Name, batches, now); err != nil {
			errs = append(errs, err)
		}
	}
	for name := range r.policies {
		if !live[name] {
			delete(r.policies, name)
			r.lastStateGC = time.Time{} // deleted, perhaps: look for its state now
		}
	}
	if err := r.acknowledge(ctx, batches); err != nil {
		errs = append(errs, err)
	}
	if err := r.reports.run(ctx, r, snap, now); err != nil {
		errs = append(errs, err)
	}
	if err := r.collectGarbage(ctx, batches, now); err != nil {
		errs = append(errs, err)
	}
	if err := r.collectStates(ctx, now); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: interval}, nil
}

// StateSelector selects the discovery state ConfigMaps. The operator caches them (and
// no other ConfigMap) in its manager: the loop reads them there, and so does the render.
func StateSelector() labels.Selector {
	req, err := labels.NewRequirement(dstate.LabelState, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant key: cannot fail
	}
	return labels.NewSelector().Add(*req)
}

// Setup starts a cache of the observation ConfigMaps (in opts.Namespace, by label), and
// the discovery loop, which merges the policies of what snapshots gives. Every event
// maps to one request; the loop also requeues itself every merge interval. The
// manager's own cache must hold the state ConfigMaps (StateSelector) and the relay
// Leases of opts.Namespace.
func Setup(mgr ctrl.Manager, snapshots Snapshots, opts Options) error {
	opts = opts.withDefaults()
	obsCache, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:           mgr.GetHTTPClient(),
		Scheme:               mgr.GetScheme(),
		Mapper:               mgr.GetRESTMapper(),
		DefaultNamespaces:    map[string]cache.Config{opts.Namespace: {}},
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{discoverystate.LabelObservations: "true"}),
		ByObject:             map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {}},
	})
	if err != nil {
		return fmt.Errorf("creating the discovery observations cache: %w", err)
	}
	if err := mgr.Add(obsCache); err != nil {
		return fmt.Errorf("adding the discovery observations cache: %w", err)
	}
	r := &reconciler{client: mgr.GetClient(), observations: obsCache, apiReader: mgr.GetAPIReader(),
		recorder: mgr.GetEventRecorder(opts.ManagerName), opts: opts, snapshots: snapshots,
		clock: opts.Clock, wall: clock.RealClock{}, reports: newReporter(opts, mgr.GetAPIReader())}
	toKey := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{request}
	})
	prime := make(chan event.GenericEvent, 1)
	prime <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{}}
	if err := ctrl.NewControllerManagedBy(mgr).Named("discovery").
		WatchesRawSource(source.Kind(obsCache, client.Object(&corev1.ConfigMap{}), toKey)).
		WatchesRawSource(source.Channel(prime, toKey)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1,
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Second, 5*time.Minute)}).
		Complete(r); err != nil {
		return fmt.Errorf("setting up the discovery controller: %w", err)
	}
	return nil
}

var request = reconcile.Request{NamespacedName: types.NamespacedName{Name: "discovery"}}
