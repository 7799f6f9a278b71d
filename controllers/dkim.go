package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// DKIM keys: for each selector of a MailDomain's spec.dkim, the DKIM checker generates a
// key pair once and keeps the private key in a Secret of the relays' namespace
// (compiler.DKIMSecretName, labelled snapshot.LabelRelaySecret so the relays load it,
// and labelDKIMKey), immutable: no tenant can read or replace it, and the operator
// never writes it again. The public record goes to the MailDomain's status. The checker
// then looks the records up in DNS, with the domain's SPF and DMARC records, and tells
// the render which keys to sign with: for each key type, the first selector in the
// spec whose record it found. Only the MailDomain status reconciler writes status, from
// the tracker the checker fills.
const (
	labelDKIMKey = "relay.postwarden.dev/dkim-key"
	// annotationDKIMRecord holds the public record of the key in the Secret, so that a
	// restarted operator reports it without reading the private key.
	annotationDKIMRecord   = "relay.postwarden.dev/dkim-record"
	annotationDKIMSelector = "relay.postwarden.dev/dkim-selector"
)

// DKIM check timing. A domain whose records are all in place is checked every
// --dns-check-interval (an hour by default): records rarely change, and the relays keep
// signing through a failed lookup. Until then every pendingDNSCheck for the first
// pendingFastFor after a spec change, so that an admin who has just published a record
// sees the relays sign within minutes; after that every slowPendingDNSCheck, so that
// domains whose records never come cost the resolvers little.
const (
	DefaultDNSCheckInterval = time.Hour
	pendingDNSCheck         = 2 * time.Minute
	pendingFastFor          = time.Hour
	slowPendingDNSCheck     = 15 * time.Minute
	// dkimRetireAfter is how long a selector's record stays needed after its last
	// signature: a queued message may be delivered days later (the queue lifetime is
	// 5 days), and receivers may verify after that.
	dkimRetireAfter = 7 * 24 * time.Hour
	// staleKeyAge: a key Secret that no MailDomain names is deleted only when it is
	// older than this, so that a render from a cache that has not seen a new selector
	// yet cannot delete the key just made for it.
	staleKeyAge = 10 * time.Minute
)

// dkimCheck is what the checker last found for one MailDomain generation.
type dkimCheck struct {
	generation int64
	// since is when this operator first checked this generation.
	since     time.Time
	status    relayv1alpha1.DKIMStatus
	condition metav1.Condition
	// signing are the keys the relays sign with; records are the public records by
	// key Secret name, so that a check reads no Secret it has read before.
	signing []snapshot.DKIMKey
	records map[string]string
}

// dkimTracker holds the last check of each MailDomain with spec.dkim. The checker
// writes it; the render and the MailDomain status reconciler read it.
type dkimTracker struct {
	mu      sync.Mutex
	domains map[types.NamespacedName]*dkimCheck
}

func newDKIMTracker() *dkimTracker {
	return &dkimTracker{domains: map[types.NamespacedName]*dkimCheck{}}
}

// set stores c and reports whether the keys the relays sign with changed.
func (t *dkimTracker) set(name types.NamespacedName, c *dkimCheck) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.domains[name]
	t.domains[name] = c
	return prev == nil && len(c.signing) > 0 || prev != nil && !slices.Equal(prev.signing, c.signing)
}

// forget drops a MailDomain that is gone or signs no more, and reports whether the
// relays signed its mail.
func (t *dkimTracker) forget(name types.NamespacedName) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.domains[name]
	delete(t.domains, name)
	return prev != nil && len(prev.signing) > 0
}

func (t *dkimTracker) get(name types.NamespacedName) *dkimCheck {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.domains[name]
}

// signing returns the keys each MailDomain signs with, for a render.
func (t *dkimTracker) signing() map[types.NamespacedName][]snapshot.DKIMKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[types.NamespacedName][]snapshot.DKIMKey, len(t.domains))
	for name, c := range t.domains {
		if len(c.signing) > 0 {
			out[name] = c.signing
		}
	}
	return out
}

// dkimChecker generates the keys of MailDomains' DKIM selectors and checks their DNS
// records. It reconciles MailDomains, and each again after its check interval.
type dkimChecker struct {
	client    client.Client
	apiReader client.Reader
	recorder  recorder.EventRecorder
	opts      OperatorOptions
	dns       *txtResolver
	tracker   *dkimTracker
	notifier  *notifier
	now       func() time.Time
}

func (r *dkimChecker) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var md relayv1alpha1.MailDomain
	err := r.client.Get(ctx, req.NamespacedName, &md)
	if client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, err
	}
	if apierrors.IsNotFound(err) || !md.DeletionTimestamp.IsZero() || md.Spec.DKIM == nil {
		// Its keys are deleted by the render that no longer sees it (deleteStaleDKIMKeys).
		if r.tracker.forget(req.NamespacedName) {
			r.notifier.render()
		}
		if err == nil {
			r.notifier.notify(ctx, []compiler.ObjectKey{{Kind: compiler.KindMailDomain, Namespace: md.Namespace, Name: md.Name}})
		}
		return ctrl.Result{}, nil
	}
	prev := r.tracker.get(req.NamespacedName)
	c, keyErr := r.check(ctx, &md, prev)
	if r.tracker.set(req.NamespacedName, c) {
		r.notifier.render()
		r.event(&md, c)
	}
	r.notifier.notify(ctx, []compiler.ObjectKey{{Kind: compiler.KindMailDomain, Namespace: md.Namespace, Name: md.Name}})
	if keyErr != nil {
		return ctrl.Result{}, keyErr
	}
	return ctrl.Result{RequeueAfter: r.nextCheck(c)}, nil
}

// nextCheck is how soon c's domain is looked up again.
func (r *dkimChecker) nextCheck(c *dkimCheck) time.Duration {
	next := cmpOrDuration(r.opts.DNSCheckInterval, DefaultDNSCheckInterval)
	if c.condition.Status == metav1.ConditionTrue && (c.status.SPF == nil || c.status.SPF.OK) && (c.status.DMARC == nil || c.status.DMARC.OK) {
		return next
	}
	if r.now().Sub(c.since) >= pendingFastFor {
		return min(next, slowPendingDNSCheck)
	}
	return min(next, cmpOrDuration(r.opts.tests.pendingDNSCheck, pendingDNSCheck))
}

func cmpOrDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// event tells the MailDomain which selectors its mail is now signed with.
func (r *dkimChecker) event(md *relayv1alpha1.MailDomain, c *dkimCheck) {
	if r.recorder == nil {
		return
	}
	if len(c.signing) == 0 {
		r.recorder.Eventf(md, nil, corev1.EventTypeWarning, relayv1alpha1.ReasonDKIMSigning, "Sign",
			"the relays do not sign the domain's mail: no selector's record is published (see status.dkim)")
		return
	}
	var names []string
	for _, k := range c.signing {
		names = append(names, k.Selector+" ("+k.Algorithm+")")
	}
	r.recorder.Eventf(md, nil, corev1.EventTypeNormal, relayv1alpha1.ReasonDKIMSigning, "Sign",
		"the relays sign the domain's mail with selector %s", strings.Join(names, " and "))
}

// check makes the keys md's selectors lack and looks up every record md needs. Its
// error is a key that could not be made; the check is complete all the same.
func (r *dkimChecker) check(ctx context.Context, md *relayv1alpha1.MailDomain, prev *dkimCheck) (*dkimCheck, error) {
	now := r.now()
	domain := md.Spec.Domain
	known := priorSelectors(md, prev)
	c := &dkimCheck{generation: md.Generation, since: now, records: map[string]string{}}
	if prev != nil && prev.generation == md.Generation {
		c.since = prev.since
	}
	c.status.LastChanged = &metav1.Time{Time: now}
	var keyErrs []error
	var missing, differs, failed, pending []string
	signingType := map[relayv1alpha1.DKIMKeyType]bool{}
	for _, sel := range md.Spec.DKIM.Selectors {
		secret := compiler.DKIMSecretName(md.Namespace, md.Name, sel.Name, sel.KeyType)
		st := relayv1alpha1.DKIMSelectorStatus{Name: sel.Name, KeyType: sel.KeyType,
			RecordName: sel.Name + "._domainkey." + domain, State: relayv1alpha1.DKIMStateKeyPending}
		before := known[sel.Name]
		record, err := r.ensureKey(ctx, md, sel, secret, prev)
		if err != nil {
			keyErrs = append(keyErrs, err)
			pending = append(pending, sel.Name)
			c.status.Selectors = append(c.status.Selectors, st)
			continue
		}
		c.records[secret] = record
		st.Record = record
		found, lookupErr := r.published(ctx, st.RecordName, record)
		var isPublished bool
		switch {
		case lookupErr != nil:
			// DNS said nothing: the last state stands, so a resolver outage neither
			// starts nor stops signing.
			isPublished = before.Record == record &&
				(before.State == relayv1alpha1.DKIMStateSigning || before.State == relayv1alpha1.DKIMStateStandby)
			failed = append(failed, sel.Name)
			st.State = relayv1alpha1.DKIMStateNotPublished
		case found == nil:
			st.State = relayv1alpha1.DKIMStateNotPublished
			missing = append(missing, st.RecordName)
		case !*found:
			st.State = relayv1alpha1.DKIMStateRecordDiffers
			differs = append(differs, st.RecordName)
		default:
			isPublished = true
		}
		if isPublished {
			st.State = relayv1alpha1.DKIMStateStandby
			if !signingType[sel.KeyType] {
				signingType[sel.KeyType] = true
				st.State = relayv1alpha1.DKIMStateSigning
				c.signing = append(c.signing, snapshot.DKIMKey{Selector: sel.Name, Algorithm: compiler.DKIMAlgorithm(sel.KeyType), SecretName: secret})
			}
		}
		// When a selector stops signing, receivers still need its record for a while.
		switch {
		case st.State == relayv1alpha1.DKIMStateSigning:
		case before.State == relayv1alpha1.DKIMStateSigning:
			st.SignedUntil = &metav1.Time{Time: now}
		default:
			st.SignedUntil = before.SignedUntil
		}
		if st.SignedUntil != nil {
			st.RemovableAfter = &metav1.Time{Time: st.SignedUntil.Add(dkimRetireAfter)}
		}
		c.status.Selectors = append(c.status.Selectors, st)
	}
	c.status.SPF = r.checkSPF(ctx, domain)
	c.status.DMARC = r.checkDMARC(ctx, domain)
	c.condition = dkimCondition(md.Generation, missing, differs, failed, pending)
	return c, errors.Join(keyErrs...)
}

// priorSelectors is the last known state of md's selectors: the tracker's, or after a
// restart what the operator last wrote to status.
func priorSelectors(md *relayv1alpha1.MailDomain, prev *dkimCheck) map[string]relayv1alpha1.DKIMSelectorStatus {
	out := map[string]relayv1alpha1.DKIMSelectorStatus{}
	from := md.Status.DKIM
	if prev != nil {
		from = &prev.status
	}
	if from != nil {
		for _, s := range from.Selectors {
			out[s.Name] = s
		}
	}
	return out
}

// published looks the record up: nil when there is none, else whether it holds record's key.
func (r *dkimChecker) published(ctx context.Context, name, record string) (*bool, error) {
	found, err := r.dns.lookup(ctx, name)
	if errors.Is(err, errNoRecord) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ok := slices.ContainsFunc(found, func(f string) bool { return sameDKIMKey(f, record) })
	return &ok, nil
}

func dkimCondition(generation int64, missing, differs, failed, pending []string) metav1.Condition {
	c := metav1.Condition{Type: relayv1alpha1.ConditionDKIMPublished, ObservedGeneration: generation, Status: metav1.ConditionFalse}
	switch {
	case len(pending) > 0:
		c.Reason = relayv1alpha1.ReasonKeyPending
		c.Message = "the key of selector " + strings.Join(pending, ", ") + " is not generated yet"
	case len(differs) > 0:
		c.Reason = relayv1alpha1.ReasonRecordDiffers
		c.Message = "DNS holds another key at " + strings.Join(differs, ", ") + "; publish status.dkim.selectors[].record there: the relays do not sign with a key receivers cannot verify"
	case len(missing) > 0:
		c.Reason = relayv1alpha1.ReasonRecordMissing
		c.Message = "no DKIM record at " + strings.Join(missing, ", ") + "; publish status.dkim.selectors[].record there: the relays sign with a selector once its record is found"
	case len(failed) > 0:
		c.Reason = relayv1alpha1.ReasonLookupFailed
		c.Message = "DNS did not answer for selector " + strings.Join(failed, ", ") + "; the last known state stands"
	default:
		c.Status, c.Reason = metav1.ConditionTrue, relayv1alpha1.ReasonRecordsPublished
		c.Message = "every selector's record is published"
	}
	return c
}

// ensureKey returns the public record of sel's key, generating the key pair when its
// Secret does not exist.
func (r *dkimChecker) ensureKey(ctx context.Context, md *relayv1alpha1.MailDomain, sel relayv1alpha1.DKIMSelector,
	secret string, prev *dkimCheck) (string, error) {
	key := types.NamespacedName{Namespace: r.opts.Namespace, Name: secret}
	// The metadata cache answers whether the key still exists without reading it.
	meta := secretMeta()
	err := r.client.Get(ctx, key, meta)
	if err == nil && meta.DeletionTimestamp.IsZero() {
		if rec := meta.Annotations[annotationDKIMRecord]; rec != "" {
			return rec, nil
		}
		if prev != nil && prev.records[secret] != "" {
			return prev.records[secret], nil
		}
	} else if client.IgnoreNotFound(err) != nil {
		return "", fmt.Errorf("reading DKIM key %s: %w", secret, err)
	}
	var cur corev1.Secret
	err = r.apiReader.Get(ctx, key, &cur)
	if err == nil {
		if rec := cur.Annotations[annotationDKIMRecord]; rec != "" {
			return rec, nil
		}
		return dkimRecordFromPEM(cur.Data[snapshot.DKIMPrivateKeyKey])
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("reading DKIM key %s: %w", secret, err)
	}
	privatePEM, record, err := generateDKIMKey(sel.KeyType)
	if err != nil {
		return "", err
	}
	immutable := true
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: secret,
			Labels: map[string]string{snapshot.LabelRelaySecret: "true", labelDKIMKey: "true", labelManagedBy: managerName},
			Annotations: map[string]string{annotationRouteMailDomain: md.Namespace + "/" + md.Name,
				annotationDKIMSelector: sel.Name + " " + string(sel.KeyType), annotationDKIMRecord: record}},
		Type:      corev1.SecretTypeOpaque,
		Immutable: &immutable,
		Data:      map[string][]byte{snapshot.DKIMPrivateKeyKey: privatePEM},
	}
	if err := r.client.Create(ctx, s, client.FieldOwner(fieldOwner)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return r.ensureKey(ctx, md, sel, secret, prev) // another check made it meanwhile
		}
		return "", fmt.Errorf("storing DKIM key %s of %s/%s: %w", sel.Name, md.Namespace, md.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("generated a DKIM key", "selector", sel.Name, "keyType", sel.KeyType, "secret", secret)
	return record, nil
}

// SPF: mail through the relay passes SPF for the envelope sender's domain when the
// domain's record names the relay's outbound addresses; --spf-mechanism says how
// (default a:<first relay hostname>).
func (r *dkimChecker) checkSPF(ctx context.Context, domain string) *relayv1alpha1.DNSRecordStatus {
	mech := r.opts.spfMechanism()
	if mech == "" {
		return nil
	}
	st := &relayv1alpha1.DNSRecordStatus{RecordName: domain, Expected: mech}
	found, err := r.dns.lookup(ctx, domain)
	if err != nil {
		return st
	}
	for _, f := range found {
		terms := strings.Fields(strings.ToLower(f))
		if len(terms) == 0 || terms[0] != "v=spf1" {
			continue
		}
		st.Found = truncate(f, 1024)
		st.OK = slices.Contains(terms, strings.ToLower(mech)) || slices.Contains(terms, "+"+strings.ToLower(mech))
		break
	}
	return st
}

// DMARC: a policy record at _dmarc.<domain> (RFC 7489 6.1); DKIM signatures with d= the
// From: domain align under either adkim mode. A domain without one is told to start
// with p=none and reports, the usual first step.
func (r *dkimChecker) checkDMARC(ctx context.Context, domain string) *relayv1alpha1.DNSRecordStatus {
	st := &relayv1alpha1.DNSRecordStatus{RecordName: "_dmarc." + domain,
		Expected: "v=DMARC1; p=none; rua=mailto:postmaster@" + domain}
	found, err := r.dns.lookup(ctx, st.RecordName)
	if err != nil {
		return st
	}
	for _, f := range found {
		tags := dkimTags(f)
		if tags["v"] != "DMARC1" {
			continue
		}
		st.Found = truncate(f, 1024)
		switch strings.ToLower(tags["p"]) {
		case "none", "quarantine", "reject":
			st.OK = true
		}
		break
	}
	return st
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// setDKIMStatus writes what the checker found of md's DKIM keys into its status; a
// MailDomain not checked since its last change keeps what it has.
func setDKIMStatus(s *relayv1alpha1.MailDomainStatus, md *relayv1alpha1.MailDomain, t *dkimTracker) {
	if md.Spec.DKIM == nil {
		s.DKIM = nil
		meta.RemoveStatusCondition(&s.Conditions, relayv1alpha1.ConditionDKIMPublished)
		return
	}
	c := t.get(types.NamespacedName{Namespace: md.Namespace, Name: md.Name})
	if c == nil || c.generation != md.Generation {
		return
	}
	st := c.status.DeepCopy()
	if s.DKIM != nil && s.DKIM.LastChanged != nil && sameDKIMStatus(s.DKIM, st) {
		// Only the time of the check moved: not worth a status write every interval.
		st.LastChanged = s.DKIM.LastChanged
	}
	s.DKIM = st
	meta.SetStatusCondition(&s.Conditions, c.condition)
}

func sameDKIMStatus(a, b *relayv1alpha1.DKIMStatus) bool {
	x, y := *a, *b
	x.LastChanged, y.LastChanged = nil, nil
	return equality.Semantic.DeepEqual(x, y)
}

// deleteStaleDKIMKeys deletes the key Secrets of selectors no MailDomain names any more,
// once they are old enough that no render can be behind their creation.
func (r *configReconciler) deleteStaleDKIMKeys(ctx context.Context, domains []*relayv1alpha1.MailDomain) error {
	keys, err := r.labelledSecrets(ctx, client.InNamespace(r.opts.Namespace), client.HasLabels{labelDKIMKey})
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, md := range domains {
		if md.Spec.DKIM == nil {
			continue
		}
		for _, sel := range md.Spec.DKIM.Selectors {
			want[compiler.DKIMSecretName(md.Namespace, md.Name, sel.Name, sel.KeyType)] = true
		}
	}
	var errs []error
	for name, k := range keys {
		// Wall time, as the API server's creationTimestamp is: not the injectable clock
		// of discovery and claims, which tests move by weeks.
		if want[name.Name] || time.Since(k.CreationTimestamp.Time) < cmpOrDuration(r.opts.tests.staleKeyAge, staleKeyAge) {
			continue
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name}}
		if err := r.client.Delete(ctx, s, client.Preconditions{UID: &k.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting unused DKIM key %s: %w", name.Name, err))
			continue
		}
		ctrl.LoggerFrom(ctx).Info("deleted the DKIM key of a selector no MailDomain names", "secret", name.Name,
			"selector", k.Annotations[annotationDKIMSelector], "mailDomain", k.Annotations[annotationRouteMailDomain])
	}
	return errors.Join(errs...)
}
