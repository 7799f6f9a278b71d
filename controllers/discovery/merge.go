package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// readBatches decodes every observations ConfigMap. One that does not decode is logged
// and left alone: it is never acknowledged, so nothing in it is lost.
func (r *reconciler) readBatches(ctx context.Context) ([]*batchCM, error) {
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
func (r *reconciler) mergePolicy(ctx context.Context, snap *snapshot.Snapshot, name string, batches []*batchCM, now time.Time) error {
	p, ok := dstate.PolicyFor(snap, name)
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
		r.wall.Since(memo.lastMerge) > resync || dueAt(cur.state, p, now)
	stored := cur
	if due {
		next := dstate.Merge(cur.state, relevant, p, now)
		var written bool
		stored, written, err = r.writeState(ctx, &obj, cur, next)
		if err != nil {
			memo.stored = nil // read it again from the API server
			block()
			return err
		}
		memo.stored, memo.input, memo.lastMerge, memo.settle = stored, string(input), r.wall.Now(), written
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
func (r *reconciler) current(ctx context.Context, obj *relayv1alpha1.DiscoveryPolicy, memo *policyMemo) (*storedState, error) {
	cached, err := stateConfigMaps(ctx, r.client, r.opts.Namespace, obj.Namespace, obj.Name)
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
	live, err := stateConfigMaps(ctx, r.apiReader, r.opts.Namespace, obj.Namespace, obj.Name)
	if err != nil {
		return nil, err
	}
	if len(live) == 0 {
		// Upgraded from a release that kept the state in the policy's namespace: carry
		// it over once; written here, it is never read from there again.
		if live, err = legacyStateConfigMaps(ctx, r.apiReader, obj.Namespace, obj.Name); err != nil {
			return nil, err
		}
		if len(live) > 0 {
			logf.FromContext(ctx).Info("moving the discovery state into the operator namespace",
				"policy", obj.Namespace+"/"+obj.Name, "configMaps", len(live))
			memo.settle = true // write it to the new place even without observations
		}
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
func dueAt(st dstate.State, p dstate.Policy, now time.Time) bool {
	expiry := time.Duration(max(p.ExpiryDays, 1)) * 24 * time.Hour
	for _, a := range st.Addresses {
		if a.State == snapshot.DiscoveredPending && !now.Before(a.FirstSeen.Add(expiry)) {
			return true
		}
	}
	return false
}
