package configsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// File loads the snapshot from a JSON file and its certificates from PEM files, and
// reloads when any of them changes.
//
// It watches the folders, not the files: editors save by writing a new file and renaming
// it over the old one, and Kubernetes swaps a symlink to a new folder, and a watch on the
// file itself would see neither.
type File struct {
	// Path is the snapshot document.
	Path string
	// ExtraCerts are served besides the certificates the snapshot names (--tls-cert).
	ExtraCerts []CertFiles
	// SecretsDir holds the relay secrets the snapshot names (route credentials, delivery
	// event keys, DKIM private keys), laid out as Secrets mounted as volumes are:
	// <dir>/<name>/<key>, such as <dir>/<name>/username and <dir>/<name>/password.
	// Empty: no hop can log in, and no delivery event or message is signed.
	SecretsDir string
	// EventsCAFile is a PEM bundle of extra CAs for delivery event endpoints
	// (Update.EventsCA); empty: none.
	EventsCAFile string
	// Debounce coalesces a burst of events, such as a certificate and its key written
	// one after the other (100 ms when zero).
	Debounce time.Duration
	// Resync rereads everything this often, in case an event was missed (1 min when zero).
	Resync time.Duration
	Logger *slog.Logger
}

// Run loads once, then on every change until ctx ends. A config that cannot be loaded
// goes to sink.Refuse; Run itself fails only when it cannot watch.
func (f *File) Run(ctx context.Context, sink Sink) error {
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	debounce, resync := f.Debounce, f.Resync
	if debounce <= 0 {
		debounce = 100 * time.Millisecond
	}
	if resync <= 0 {
		resync = time.Minute
	}
	w, err := newDirWatcher(log)
	if err != nil {
		return err
	}
	defer w.Close()

	var last string
	load := func() {
		u, files, err := f.load()
		w.watch(files)
		if err != nil {
			key := "error\x00" + err.Error()
			if key != last {
				sink.Refuse(err)
			}
			last = key
			return
		}
		key := fingerprint(u)
		if key == last {
			return
		}
		last = key
		if err := sink.Apply(u); err != nil {
			log.Debug("config not applied", "error", err)
		}
	}
	load()

	timer := time.NewTimer(resync)
	defer timer.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("config file watcher closed")
			}
			if ev.Op != fsnotify.Chmod && !pending {
				pending = true
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("config file watcher closed")
			}
			log.Warn("config file watcher", "error", err)
		case <-timer.C:
			pending = false
			load()
			timer.Reset(resync)
		}
	}
}

// dirWatcher watches the folders of files, each once.
type dirWatcher struct {
	*fsnotify.Watcher
	log     *slog.Logger
	watched map[string]bool
}

func newDirWatcher(log *slog.Logger) (*dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching config files: %w", err)
	}
	return &dirWatcher{Watcher: w, log: log, watched: map[string]bool{}}, nil
}

// watch adds the folders of files not watched yet. A folder that cannot be watched
// (it does not exist yet) is tried again at the next call.
func (w *dirWatcher) watch(files []string) {
	for _, file := range files {
		dir := filepath.Dir(file)
		if w.watched[dir] {
			continue
		}
		if err := w.Add(dir); err != nil {
			w.log.Warn("cannot watch config folder; changes are seen at the next resync", "dir", dir, "error", err)
			continue
		}
		w.watched[dir] = true
	}
}

// load reads the snapshot and its certificates. It returns the files involved, to be
// watched, even when it fails.
func (f *File) load() (Update, []string, error) {
	files := []string{f.Path}
	for _, c := range f.ExtraCerts {
		files = append(files, c.CertFile, c.KeyFile)
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return Update{}, files, fmt.Errorf("reading config %s: %w", f.Path, err)
	}
	s, err := snapshot.Unmarshal(data)
	if err != nil {
		return Update{}, files, fmt.Errorf("config %s: %w", f.Path, err)
	}
	u := Update{Snapshot: s}
	if f.EventsCAFile != "" {
		files = append(files, f.EventsCAFile)
		if u.EventsCA, err = readEventsCA(f.EventsCAFile); err != nil {
			return Update{}, files, err
		}
	}
	certs := make([]CertFiles, 0, len(s.Certificates)+len(f.ExtraCerts))
	for _, c := range s.Certificates {
		if c.SecretName != "" {
			// A file config has no API to read Secrets from.
			return Update{}, files, fmt.Errorf("config %s: certificate secret %q cannot be used without Kubernetes; use certFile and keyFile",
				f.Path, c.SecretName)
		}
		certs = append(certs, CertFiles{CertFile: f.resolve(c.CertFile), KeyFile: f.resolve(c.KeyFile)})
	}
	certs = append(certs, f.ExtraCerts...)
	for _, c := range certs {
		files = append(files, c.CertFile, c.KeyFile)
	}
	pairs, missing, err := readCertFiles(certs)
	if err != nil {
		return Update{}, files, err
	}
	u.Certificates, u.Missing = pairs, missing
	if f.SecretsDir != "" {
		u.Secrets = map[string]SecretData{}
		for _, name := range secretNames(s) {
			dir := filepath.Join(f.SecretsDir, name)
			files = append(files, filepath.Join(dir, "x")) // watch the folder
			data, err := readSecretDir(dir)
			if err != nil {
				return Update{}, files, err
			}
			if data != nil {
				u.Secrets[name] = data
			}
		}
	}
	return u, files, nil
}

// readSecretDir reads the files of a secret's folder, key by file name; nil when the
// folder does not exist yet. Names starting with a dot are skipped: a mounted Secret
// keeps its real files there (..data) and links to them by key.
func readSecretDir(dir string) (SecretData, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading relay secret %s: %w", dir, err)
	}
	data := SecretData{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while listing
		}
		if err != nil {
			return nil, fmt.Errorf("reading relay secret %s: %w", dir, err)
		}
		// A trailing newline is how editors end a file, never part of a password or key.
		data[e.Name()] = bytes.TrimRight(b, "\r\n")
	}
	return data, nil
}

// resolve makes a relative path relative to the folder of the config file.
func (f *File) resolve(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(f.Path), path)
}

// readCertFiles reads every pair; a pair whose files do not exist yet is missing, not
// an error.
func readCertFiles(certs []CertFiles) (pairs []tlscert.Pair, missing []string, err error) {
	for _, c := range certs {
		p, err := c.read()
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, c.CertFile)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %s: %w", c.CertFile, err)
		}
		pairs = append(pairs, p)
	}
	return pairs, missing, nil
}
