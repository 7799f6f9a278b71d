package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
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
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Defaults of the discovery loop.
const (
	// DefaultDiscoveryMergeInterval bounds how often a policy's state is merged, and so
	// how often discovery alone changes the relay config.
	DefaultDiscoveryMergeInterval = time.Minute
	// DefaultDiscoveryGCAfter is how long a relay replica's Lease must have been expired
	// (or absent) before its acknowledged observations ConfigMap is deleted.
	DefaultDiscoveryGCAfter = 24 * time.Hour
	// discoveryResync merges every policy at least this often (wall time), even without
	// observations, so that time-driven transitions never wait for traffic.
	discoveryResync = time.Hour
	// recentAddresses is how many addresses status.recentAddresses shows.
	recentAddresses = 20
)

// discoveryReconciler is the operator side of SMTP Discovery (docs/discovery.md): every
// pass it reads the relays' observation batches, merges them into the state of each
// policy they concern, writes the state parts that changed, then acknowledges the
// batches; it also writes the policies' discovery status, sends the weekly reports and
// deletes the observations of relays gone for good. One request key, one worker: passes
// never overlap, and a pass runs at most once per merge interval (wall time), so what
// arrives meanwhile is merged together.
type discoveryReconciler struct {
	client       client.Client // cached: policies, state ConfigMaps, relay Leases
	observations client.Reader // cache of the observation ConfigMaps of opts.Namespace
	apiReader    client.Reader
	scheme       *runtime.Scheme
	recorder     recorder.EventRecorder
	opts         OperatorOptions
	shared       *state
	clock        clock.PassiveClock
	reports      *reporter

	lastPass time.Time
	// policies remembers, per policy, what the last merge saw.
	policies map[string]*policyMemo
	// absentSince is when a relay's Lease was first seen missing, by ConfigMap name.
	absentSince map[string]time.Time
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

func (r *discoveryReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	interval := r.opts.DiscoveryMergeInterval
	if wait := interval - time.Since(r.lastPass); !r.lastPass.IsZero() && wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	snap := r.shared.snapshot()
	if snap == nil {
		return ctrl.Result{RequeueAfter: interval}, nil // no render yet
	}
	r.lastPass = time.Now()
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
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: interval}, nil
}

// readBatches decodes every observations ConfigMap. One that does not decode is logged
// and left alone: it is never acknowledged, so nothing in it is lost.
func (r *discoveryReconciler) readBatches(ctx context.Context) ([]*batchCM, error) {
	var list corev1.ConfigMapList
	if err := r.observations.List(ctx, &list, client.InNamespace(r.opts.Namespace),
		client.MatchingLabels{discoverystate.LabelObservations: "true"}); err != nil {
		return nil, fmt.Errorf("listing discovery observations: %w", err)
	}
	out := make([]*batchCM, 0, len(list.Items))
	for i := range list.Items {
		cm := &list.Items[i]
		b, err := discoverystate.DecodeBatch([]byte(cm.Data[discoverystate.BatchKey]))
		if err != nil {
			logf.FromContext(ctx).Error(err, "skipping a discovery observations ConfigMap", "configMap", cm.Name)
			continue
		}
		out = append(out, &batchCM{cm: cm, batch: b})
	}
	return out, nil
}

// mergePolicy merges what concerns one policy, when there is something to merge or the
// clock says a transition may be due, writes the changed state, and writes status.
func (r *discoveryReconciler) mergePolicy(ctx context.Context, snap *snapshot.Snapshot, name string, batches []*batchCM, now time.Time) error {
	p, ok := discoverystate.PolicyFor(snap, name)
	if !ok {
		return nil
	}
	ns, n, _ := strings.Cut(name, "/")
	var obj relayv1alpha1.DiscoveryPolicy
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: n}, &obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		return nil
	}
	covered := map[string]bool{}
	for _, d := range p.Domains {
		covered[d.Name] = true
	}
	block := func() {
		for _, b := range batches {
			if concerns(b.batch, covered, 0) {
				b.blocked = true
			}
		}
	}
	memo := r.policies[name]
	if memo == nil {
		memo = &policyMemo{}
		if r.policies == nil {
			r.policies = map[string]*policyMemo{}
		}
		r.policies[name] = memo
	}
	cur, err := r.current(ctx, &obj, memo)
	if err != nil {
		block()
		return err
	}
	var relevant []discoverystate.Batch
	for _, b := range batches {
		w := cur.state.Journals[b.batch.Journal].Seq
		if !concerns(b.batch, covered, w) {
			continue
		}
		sub := b.batch
		sub.Observations = nil
		for _, o := range b.batch.Observations {
			if o.Seq > w && covered[snapshot.Domainpart(strings.ToLower(o.Address))] {
				sub.Observations = append(sub.Observations, o)
			}
		}
		relevant = append(relevant, sub)
	}
	input, _ := json.Marshal(p) // plain data: cannot fail
	due := len(relevant) > 0 || memo.settle || memo.input != string(input) ||
		time.Since(memo.lastMerge) > discoveryResync || dueAt(cur.state, p, now)
	stored := cur
	if due {
		next := discoverystate.Merge(cur.state, relevant, p, now)
		var written bool
		stored, written, err = writeState(ctx, r.client, r.scheme, &obj, cur, next)
		if err != nil {
			memo.stored = nil // read it again from the API server
			block()
			return err
		}
		memo.stored, memo.input, memo.lastMerge, memo.settle = stored, string(input), time.Now(), written
		if written || len(relevant) > 0 {
			logf.FromContext(ctx).V(1).Info("merged discovery observations", "policy", name,
				"observations", countObservations(relevant), "addresses", len(next.Addresses), "written", written)
		}
		if !written && len(relevant) == 0 {
			due = false // nothing happened: lastMergeTime stays
		}
	}
	return r.writeDiscoveryStatus(ctx, &obj, stored, due, now)
}

// current returns the policy's stored state: the one this loop last wrote when the
// cache shows exactly those ConfigMaps, otherwise read afresh from the API server (at
// start, after a failed write, after someone else's edit, or while the cache lags).
func (r *discoveryReconciler) current(ctx context.Context, obj *relayv1alpha1.DiscoveryPolicy, memo *policyMemo) (*storedState, error) {
	cached, err := stateConfigMaps(ctx, r.client, obj.Namespace, obj.Name)
	if err != nil {
		return nil, err
	}
	if memo.stored != nil {
		probe := &storedState{}
		for i := range cached {
			probe.parts = append(probe.parts, &cached[i])
		}
		if sameVersions(probe, memo.stored) {
			return memo.stored, nil
		}
	}
	live, err := stateConfigMaps(ctx, r.apiReader, obj.Namespace, obj.Name)
	if err != nil {
		return nil, err
	}
	st, err := readState(live, obj.Namespace+"/"+obj.Name)
	if err != nil {
		logf.FromContext(ctx).Error(err, "the discovery state is damaged: keeping what decodes and writing it back whole")
		r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, relayv1alpha1.EventDiscoveryStateDamaged, "Merge",
			"the discovery state ConfigMaps are incomplete or damaged (%v); what decodes is kept and written back", err)
		st = salvageState(live, obj.Namespace+"/"+obj.Name)
		memo.settle = true // write it back even without observations
	}
	memo.stored = st
	return st, nil
}

func sameVersions(a, b *storedState) bool {
	va := map[string]string{}
	for _, cm := range a.parts {
		va[cm.Name] = cm.ResourceVersion
	}
	n := 0
	for _, cm := range b.parts {
		if cm == nil {
			continue
		}
		n++
		if va[cm.Name] != cm.ResourceVersion {
			return false
		}
	}
	return n == len(va)
}

// concerns reports whether b holds an observation above seq of a covered domain.
func concerns(b discoverystate.Batch, covered map[string]bool, seq uint64) bool {
	for _, o := range b.Observations {
		if o.Seq > seq && covered[snapshot.Domainpart(strings.ToLower(o.Address))] {
			return true
		}
	}
	return false
}

func countObservations(bs []discoverystate.Batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.Observations)
	}
	return n
}

// dueAt reports whether a Pending address has reached its expiry at now.
func dueAt(st discoverystate.State, p discoverystate.Policy, now time.Time) bool {
	expiry := time.Duration(max(p.ExpiryDays, 1)) * 24 * time.Hour
	for _, a := range st.Addresses {
		if a.State == snapshot.DiscoveredPending && !now.Before(a.FirstSeen.Add(expiry)) {
			return true
		}
	}
	return false
}

// stateSelector selects the discovery state ConfigMaps: the only ConfigMaps in the
// manager's cache.
func stateSelector() labels.Selector {
	req, err := labels.NewRequirement(discoverystate.LabelState, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant key: cannot fail
	}
	return labels.NewSelector().Add(*req)
}

// setupDiscoveryController starts a cache of the observation ConfigMaps (in
// --namespace, by label), and the discovery loop. Every event maps to one request; the
// loop also requeues itself every merge interval.
func setupDiscoveryController(mgr ctrl.Manager, st *state, opts OperatorOptions) error {
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
	r := &discoveryReconciler{client: mgr.GetClient(), observations: obsCache, apiReader: mgr.GetAPIReader(),
		scheme: mgr.GetScheme(), recorder: mgr.GetEventRecorder(managerName), opts: opts, shared: st,
		clock: opts.Clock, reports: newReporter(opts, mgr.GetAPIReader())}
	toKey := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{discoveryRequest}
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

var discoveryRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "discovery"}}
