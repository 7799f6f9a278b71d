package controllers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// A relay that follows the shard Secrets through a watch must find, whenever shard 0
// changes, every other shard of the snapshot it names already in place: shard 0 is the
// commit point. The test replays every watch event as a relay would see it.
func TestShardZeroIsWrittenLast(t *testing.T) {
	// Bounds the replay below: a watch ends with its context, and resuming it then fails.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// Start from a list, as an informer does, and watch from its resourceVersion.
	seen := map[string]snapshot.Shard{}
	var list corev1.SecretList
	selector := []client.ListOption{client.InNamespace(operatorNS), client.MatchingLabels{snapshot.LabelConfig: configName}}
	if err := wc.List(ctx, &list, selector...); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		sh, err := snapshot.ShardFromAnnotations(s.Annotations, s.Data[snapshot.DataKey])
		if err != nil {
			t.Fatal(err)
		}
		seen[s.Name] = sh
	}
	w, err := wc.Watch(ctx, &corev1.SecretList{}, append(selector, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	ns := newNamespace(t, "order")
	domain := ns + ".example"
	md := mailDomain(ns, "grow", domain)
	for i := range 200 {
		sum := sha256.Sum256([]byte(ns + strconv.Itoa(i)))
		md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: hex.EncodeToString(sum[:8]) + "@" + domain})
	}
	create(t, md)
	snapshotWhere(t, "the grown config is written", func(s *snapshot.Snapshot) error {
		if findDomain(s, domain) == nil {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if err := k8s.Delete(ctx, md); err != nil {
		t.Fatal(err)
	}
	final := snapshotWhere(t, "the shrunk config is written", func(s *snapshot.Snapshot) error {
		if findDomain(s, domain) != nil {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	// Replay until the watch shows the final snapshot in shard 0 and no stale shard. The
	// API server may end a watch at any time; resume it where it stopped, as informers do.
	commits, lastRV, done := 0, list.ResourceVersion, false
	for !done {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Secret)
			if !ok {
				t.Fatalf("watch: %v", ev.Object)
			}
			lastRV = s.ResourceVersion
			if ev.Type == watch.Deleted {
				delete(seen, s.Name)
			} else {
				sh, err := snapshot.ShardFromAnnotations(s.Annotations, s.Data[snapshot.DataKey])
				if err != nil {
					t.Fatal(err)
				}
				seen[s.Name] = sh
			}
			head, ok := seen[configName+"-0"]
			if !ok {
				continue
			}
			if ev.Type != watch.Deleted && s.Name == configName+"-0" {
				// A commit: every shard of the snapshot it names must be in place.
				commits++
				shards := []snapshot.Shard{head}
				for i := 1; i < head.Count; i++ {
					sh, ok := seen[configName+"-"+strconv.Itoa(i)]
					if !ok || sh.Hash != head.Hash {
						t.Fatalf("shard 0 committed snapshot %.12s of %d shards, but shard %d is missing or of another snapshot",
							head.Hash, head.Count, i)
					}
					shards = append(shards, sh)
				}
				if _, err := snapshot.Assemble(shards); err != nil {
					t.Fatalf("the committed snapshot %.12s does not assemble: %v", head.Hash, err)
				}
			}
			// The snapshot before the grow may hash like the final one (the test's domain
			// is all that changes): only after the grow's and the shrink's commits does
			// shard 0 naming the final hash mean the end.
			if commits >= 2 && head.Hash == final.Hash && len(seen) == head.Count {
				done = true
				break
			}
		}
		if !done {
			w.Stop()
			if w, err = wc.Watch(ctx, &corev1.SecretList{}, append(selector, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: lastRV}})...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if commits < 2 {
		t.Errorf("saw %d commits of shard 0; the test needs the grow and the shrink", commits)
	}
}
