package controllers

import (
	"context"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Credential usage: each relay reports on its status Lease what its busiest credentials
// sent in the last 24 hours (snapshot.AnnotationCredentialUsage). The relays reconciler
// adds the live relays' reports up in a usageTracker and tells the SMTPCredential
// reconciler of the credentials whose figures moved by a tenth; that reconciler writes
// status.usage when they moved by a tenth of the daily limit. So a credential's status
// is written about ten times on the way to its daily limit, and as often on the way
// down: at most a few status writes a day per credential, whatever it sends.

// usageOf decodes a Lease's usage report.
func usageOf(l *coordinationv1.Lease) []snapshot.CredentialUsage {
	return leaseReport[snapshot.CredentialUsage](l, snapshot.AnnotationCredentialUsage, snapshot.MaxUsageReports)
}

// usageTracker holds the summed usage of each reported credential, and what its
// reconciler was last told.
type usageTracker struct {
	mu     sync.Mutex
	now    map[types.NamespacedName]reportedUsage
	told   map[types.NamespacedName]int
	latest time.Time
}

type reportedUsage struct {
	username   string
	messages   int
	recipients int
	at         time.Time
}

// set replaces the usage with the sum of reports (of the live relays, at now) and
// returns the credentials whose message count moved by a tenth since they were last
// told, or that left the reports.
func (t *usageTracker) set(reports []snapshot.CredentialUsage, now time.Time) []compiler.ObjectKey {
	sums := map[types.NamespacedName]reportedUsage{}
	for _, r := range reports {
		key := types.NamespacedName{Namespace: r.Credential.Namespace, Name: r.Credential.Name}
		u := sums[key]
		if u.username != "" && u.username != r.Username {
			continue // relays disagree on who this is: a rotation in flight
		}
		u.username, u.messages, u.recipients, u.at = r.Username, u.messages+r.Messages, u.recipients+r.Recipients, now
		sums[key] = u
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.told == nil {
		t.told = map[types.NamespacedName]int{}
	}
	var changed []compiler.ObjectKey
	tell := func(key types.NamespacedName, messages int) {
		t.told[key] = messages
		changed = append(changed, compiler.ObjectKey{Kind: compiler.KindSMTPCredential, Namespace: key.Namespace, Name: key.Name})
	}
	for key, u := range sums {
		last, ok := t.told[key]
		if !ok || abs(u.messages-last) >= max(1, last/10) {
			tell(key, u.messages)
		}
	}
	for key := range t.told {
		if _, ok := sums[key]; !ok {
			delete(t.told, key)
			changed = append(changed, compiler.ObjectKey{Kind: compiler.KindSMTPCredential, Namespace: key.Namespace, Name: key.Name})
		}
	}
	t.now, t.latest = sums, now
	return changed
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// setUsage writes the credential's usage into status when it moved by a tenth of its
// daily limit (of 1000 messages without one) since status last said, or when the
// credential left the relays' reports (it sent nothing for a day, or others sent more).
func (t *usageTracker) setUsage(ctx context.Context, c client.Client, cred *relayv1alpha1.SMTPCredential) {
	key := client.ObjectKeyFromObject(cred)
	t.mu.Lock()
	u, reported := t.now[key]
	ran := !t.latest.IsZero()
	t.mu.Unlock()
	s := &cred.Status
	if !reported || u.username != s.Username {
		if ran && s.Usage != nil && s.Usage.Messages24h > 0 {
			s.Usage = nil // no relay reports it any more
		}
		return
	}
	var md relayv1alpha1.MailDomain
	var domainLimits *relayv1alpha1.SendingLimits
	if err := c.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.MailDomainRef.Name}, &md); err == nil {
		domainLimits = md.Spec.SendingLimits
	}
	daily := compiler.ResolveLimits(cred.Spec.Limits, domainLimits).MessagesPerDay
	step := 1000
	if daily > 0 {
		step = max(1, daily/10)
	}
	if s.Usage != nil && abs(u.messages-int(s.Usage.Messages24h)) < step {
		return
	}
	percent := 0
	if daily > 0 {
		percent = u.messages * 100 / daily
	}
	at := metav1.NewTime(u.at.UTC().Truncate(time.Second))
	s.Usage = &relayv1alpha1.CredentialUsage{Messages24h: int32(u.messages), Recipients24h: int32(u.recipients),
		PercentOfDailyLimit: int32(percent), ObservedAt: &at}
}
