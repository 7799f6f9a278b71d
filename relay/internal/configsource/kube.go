package configsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Kube loads the snapshot from the shard Secrets labelled snapshot.LabelConfig=Name in
// Namespace, its certificates from kubernetes.io/tls Secrets of the same namespace, and
// the credentials its domains' hops log in with from the Secrets labelled
// snapshot.LabelRelaySecret there, through watches on the API server. Reads come from the watch caches, so the relay
// needs get, list and watch on Secrets in its namespace, and nothing cluster-wide.
type Kube struct {
	Client    kubernetes.Interface
	Namespace string
	// Name is the config name, the value of the snapshot.LabelConfig label.
	Name string
	// ExtraCerts are PEM files served besides the certificates the snapshot names.
	ExtraCerts []CertFiles
	// EventsCAFile is a PEM bundle of extra CAs for delivery event endpoints
	// (Update.EventsCA), watched on disk like ExtraCerts; empty: none.
	EventsCAFile string
	// Resync rereads the caches (and certificate files) this often (1 min when zero).
	Resync time.Duration
	Logger *slog.Logger
}

// Run watches until ctx ends. It fails only when the watches cannot start.
func (k *Kube) Run(ctx context.Context, sink Sink) error {
	log := k.Logger
	if log == nil {
		log = slog.Default()
	}
	resync := k.Resync
	if resync <= 0 {
		resync = time.Minute
	}
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}

	configSelector := labels.SelectorFromSet(labels.Set{snapshot.LabelConfig: k.Name}).String()
	configs := informers.NewSharedInformerFactoryWithOptions(k.Client, 0,
		informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = configSelector }))
	tlsSelector := fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()
	certs := informers.NewSharedInformerFactoryWithOptions(k.Client, 0,
		informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = tlsSelector }))

	secretSelector := labels.SelectorFromSet(labels.Set{snapshot.LabelRelaySecret: "true"}).String()
	relaySecrets := informers.NewSharedInformerFactoryWithOptions(k.Client, 0,
		informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = secretSelector }))

	configInformer := configs.Core().V1().Secrets()
	certInformer := certs.Core().V1().Secrets()
	secretInformer := relaySecrets.Core().V1().Secrets()
	for _, inf := range []cache.SharedIndexInformer{configInformer.Informer(), certInformer.Informer(), secretInformer.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching secrets: %w", err)
		}
	}
	configs.Start(ctx.Done())
	certs.Start(ctx.Done())
	relaySecrets.Start(ctx.Done())
	defer configs.Shutdown()
	defer certs.Shutdown()
	defer relaySecrets.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), configInformer.Informer().HasSynced, certInformer.Informer().HasSynced,
		secretInformer.Informer().HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("secret caches did not sync")
	}
	log.Info("watching config secrets", "namespace", k.Namespace, "selector", configSelector)

	// Certificates in files (--tls-cert, or certFile entries) and the delivery events
	// CA bundle are watched on disk.
	files, err := newDirWatcher(log)
	if err != nil {
		return err
	}
	defer files.Close()
	l := kubeLoader{kube: k, configs: configInformer.Lister(), certs: certInformer.Lister(), secrets: secretInformer.Lister(), log: log}
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	files.watch(l.load(sink))
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-files.Events:
			if ev.Op != fsnotify.Chmod {
				debounce.Reset(100 * time.Millisecond)
			}
			continue
		case err := <-files.Errors:
			log.Warn("certificate file watcher", "error", err)
			continue
		case <-changed:
		case <-ticker.C:
		case <-debounce.C:
		}
		files.watch(l.load(sink))
	}
}

type kubeLoader struct {
	kube    *Kube
	configs corelisters.SecretLister
	certs   corelisters.SecretLister
	secrets corelisters.SecretLister
	log     *slog.Logger
	last    string // what was last handed to the sink
	current string // the hash of the last snapshot applied
}

// load hands the current config to sink if it changed, and returns the certificate
// files involved, to be watched.
func (l *kubeLoader) load(sink Sink) (files []string) {
	for _, c := range l.kube.ExtraCerts {
		files = append(files, c.CertFile, c.KeyFile)
	}
	if l.kube.EventsCAFile != "" {
		files = append(files, l.kube.EventsCAFile)
	}
	secrets, err := l.configs.Secrets(l.kube.Namespace).List(labels.Everything())
	if err != nil {
		sink.Refuse(fmt.Errorf("listing config secrets: %w", err))
		return files
	}
	group, ok := newestComplete(secrets, l.current, l.log)
	if !ok {
		if len(secrets) == 0 {
			l.log.Debug("no config secrets yet", "namespace", l.kube.Namespace, "config", l.kube.Name)
		}
		return files // an incomplete set: the operator is still writing
	}
	shards := make([]snapshot.Shard, len(group))
	versions := make([]string, len(group))
	for i, sh := range group {
		shards[i] = sh.shard
		versions[i] = sh.secret.Name + "@" + sh.secret.ResourceVersion
	}
	s, err := snapshot.Assemble(shards)
	if err != nil {
		l.refuse(sink, "assemble\x00"+strings.Join(versions, ","), fmt.Errorf("config secrets: %w", err))
		return files
	}
	u := Update{Snapshot: s}
	if u.EventsCA, err = readEventsCA(l.kube.EventsCAFile); err != nil {
		l.refuse(sink, "eventsca\x00"+err.Error(), err)
		return files
	}
	var certFiles []CertFiles
	for _, c := range s.Certificates {
		if c.SecretName == "" {
			certFiles = append(certFiles, CertFiles{CertFile: c.CertFile, KeyFile: c.KeyFile})
			files = append(files, c.CertFile, c.KeyFile)
			continue
		}
		p, err := l.secretPair(c.SecretName)
		if err != nil {
			l.refuse(sink, "cert\x00"+err.Error(), err)
			return files
		}
		if p == nil {
			u.Missing = append(u.Missing, "secret/"+c.SecretName)
			continue
		}
		u.Certificates = append(u.Certificates, *p)
	}
	pairs, missing, err := readCertFiles(append(certFiles, l.kube.ExtraCerts...))
	if err != nil {
		l.refuse(sink, "files\x00"+err.Error(), err)
		return files
	}
	u.Certificates = append(u.Certificates, pairs...)
	u.Missing = append(u.Missing, missing...)
	u.Secrets = map[string]SecretData{}
	for _, name := range secretNames(s) {
		if sec, err := l.secrets.Secrets(l.kube.Namespace).Get(name); err == nil {
			u.Secrets[name] = sec.Data // the lister's only error is NotFound: not copied yet
		}
	}
	key := fingerprint(u)
	if key == l.last {
		return files
	}
	l.last = key
	if err := sink.Apply(u); err != nil {
		l.log.Debug("config not applied", "error", err)
		return files
	}
	l.current = s.Hash
	return files
}

// refuse tells the sink once per distinct failure, not at every unrelated event.
func (l *kubeLoader) refuse(sink Sink, key string, err error) {
	if key == l.last {
		return
	}
	l.last = key
	sink.Refuse(err)
}

// secretPair reads a kubernetes.io/tls Secret; nil when it does not exist yet.
func (l *kubeLoader) secretPair(name string) (*tlscert.Pair, error) {
	sec, err := l.certs.Secrets(l.kube.Namespace).Get(name)
	if err != nil {
		return nil, nil //nolint:nilerr // the lister's only error is NotFound
	}
	cert, key := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if len(cert) == 0 || len(key) == 0 {
		// cert-manager creates the Secret before it holds a certificate.
		return nil, nil
	}
	return &tlscert.Pair{Name: "secret/" + name, CertPEM: cert, KeyPEM: key}, nil
}

type shardSecret struct {
	secret *corev1.Secret
	shard  snapshot.Shard
}

// newestComplete groups the shard Secrets by snapshot hash and returns the shards of
// the group that has all its parts. The operator rewrites its Secrets in place, from the
// last shard down to shard 0, so a new set is complete only once the old one is not, and
// one group at most is complete. Should two be (a set written beside another under new
// names), the newest wins; creation times have a one-second grain, so on a tie a hash
// other than the current one wins, since a set is only ever added to replace it.
func newestComplete(secrets []*corev1.Secret, current string, log *slog.Logger) ([]shardSecret, bool) {
	groups := map[string][]shardSecret{}
	for _, sec := range secrets {
		sh, err := snapshot.ShardFromAnnotations(sec.Annotations, sec.Data[snapshot.DataKey])
		if err != nil {
			log.Warn("ignoring config secret", "secret", sec.Name, "error", err)
			continue
		}
		groups[sh.Hash] = append(groups[sh.Hash], shardSecret{secret: sec, shard: sh})
	}
	var best []shardSecret
	var bestTime time.Time
	for _, g := range groups {
		if !complete(g) {
			continue
		}
		newest := time.Time{}
		for _, sh := range g {
			if t := sh.secret.CreationTimestamp.Time; t.After(newest) {
				newest = t
			}
		}
		if best == nil || newest.After(bestTime) || newest.Equal(bestTime) && tieBreak(g[0].shard.Hash, best[0].shard.Hash, current) {
			best, bestTime = g, newest
		}
	}
	return best, best != nil
}

// tieBreak reports whether a group of hash a wins over one of hash b of the same age.
func tieBreak(a, b, current string) bool {
	if (a == current) != (b == current) {
		return b == current
	}
	return a > b
}

// complete reports whether g holds exactly the parts 0..Count-1 once each.
func complete(g []shardSecret) bool {
	count := g[0].shard.Count
	if len(g) != count {
		return false
	}
	seen := make([]bool, count)
	for _, sh := range g {
		if sh.shard.Count != count || sh.shard.Index < 0 || sh.shard.Index >= count || seen[sh.shard.Index] {
			return false
		}
		seen[sh.shard.Index] = true
	}
	return true
}
