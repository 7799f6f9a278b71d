package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// recover empties tmp/, deletes what crashes left behind, converts messages of the
// layout before message files, quarantines inconsistent entries and indexes every
// complete message. It runs in Open, before any writer exists.
func (s *Spool) recover() error {
	// Half-written files, and files kept for reuse and perhaps half overwritten: the
	// pool starts empty.
	for _, d := range []string{s.tmp, s.freeDir} {
		n, err := emptyDir(d)
		if err != nil {
			return err
		}
		if n > 0 && d == s.tmp {
			s.log.Info("spool: removed half-written files", "count", n)
		}
	}

	des, err := os.ReadDir(s.queue)
	if err != nil {
		return fmt.Errorf("spool: scan queue: %w", err)
	}
	type files struct{ msg, state, legacyBody bool }
	found := make(map[string]*files)
	for _, de := range des {
		name := de.Name()
		id, ext, _ := strings.Cut(name, ".")
		if !validID(id) || !de.Type().IsRegular() {
			s.log.Warn("spool: ignoring unexpected file in queue", "name", name)
			continue
		}
		f := found[id]
		if f == nil {
			f = &files{}
			found[id] = f
		}
		switch "." + ext {
		case msgExt:
			f.msg = true
		case stateExt:
			f.state = true
		case legacyBodyExt:
			f.legacyBody = true
		default:
			s.log.Warn("spool: ignoring unexpected file in queue", "name", name)
		}
	}

	var orphans, converted int
	for id, f := range found {
		switch {
		case !f.msg && f.legacyBody && f.state:
			if err := s.convert(id); err != nil {
				return err
			}
			converted++
		case !f.msg && (f.state || f.legacyBody):
			// A later state whose message file is gone: a crash inside Remove, which
			// unlinks the message file first. (A legacy body alone: a crash between
			// the old layout's renames or unlinks.) Never acknowledged, or done.
			for _, ext := range []string{stateExt, legacyBodyExt} {
				if err := os.Remove(filepath.Join(s.queue, id+ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("spool: remove orphan: %w", err)
				}
			}
			orphans++
			continue
		case !f.msg:
			continue
		}
		if err := s.admit(id, f.state); err != nil {
			return err
		}
	}
	if orphans > 0 {
		s.log.Info("spool: removed orphan files", "count", orphans)
	}
	if converted > 0 {
		s.log.Info("spool: converted messages to message files", "count", converted)
	}
	return nil
}

// emptyDir removes everything in dir and returns how many entries it removed.
func emptyDir(dir string) (int, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("spool: scan %s: %w", dir, err)
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return 0, fmt.Errorf("spool: remove left-over file: %w", err)
		}
	}
	return len(des), nil
}

// admit checks a message's files and adds it to the index, or quarantines it. With a
// later state (updated), that state must belong to the same message and body size.
func (s *Spool) admit(id string, updated bool) error {
	mf, err := readMessageFile(s.msgPath(id))
	m := mf.m
	var reason string
	switch {
	case err != nil:
		reason = err.Error()
	case m.ID != id:
		reason = fmt.Sprintf("message file names id %q", m.ID)
	case updated:
		size := m.Size
		m, err = readState(s.statePath(id))
		switch {
		case err != nil:
			reason = err.Error()
		case m.ID != id:
			reason = fmt.Sprintf("state names id %q", m.ID)
		case m.Size != size:
			reason = fmt.Sprintf("state says %d bytes, the message file has %d", m.Size, size)
		}
	}
	if reason != "" {
		return s.quarantine(id, reason)
	}
	// A legacy body left by a conversion that crashed before its unlink.
	if err := os.Remove(filepath.Join(s.queue, id+legacyBodyExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove converted body: %w", err)
	}
	mf.mark.apply(&m)
	s.idx.put(id, keyOf(m), m.Size)
	e := s.idx.byID[id]
	e.updated, e.mark, e.markerAt = updated, mf.mark, mf.markerAt
	t := tallyOf(m)
	t.attempting = false // nothing is in flight after a restart
	s.idx.setTally(id, t)
	return nil
}

// convert turns a message of the layout before message files (ID.body, ID.json) into a
// message file holding the same body and state, and keeps ID.json as its later state.
// The body is removed only once the message file is durable; a crash in between
// leaves both, and the next Open finishes the job. A message that does not check out
// is quarantined unchanged.
func (s *Spool) convert(id string) error {
	legacy := filepath.Join(s.queue, id+legacyBodyExt)
	m, err := readState(s.statePath(id))
	var reason string
	var size int64
	if err == nil {
		var info os.FileInfo
		info, err = os.Stat(legacy)
		if err == nil {
			size = info.Size()
		}
	}
	switch {
	case err != nil:
		reason = err.Error()
	case m.ID != id:
		reason = fmt.Sprintf("state names id %q", m.ID)
	case size != m.Size:
		reason = fmt.Sprintf("body has %d bytes, state says %d", size, m.Size)
	}
	if reason != "" {
		return s.quarantine(id, reason)
	}

	tmp := filepath.Join(s.tmp, id+msgExt)
	if err := writeMessageFile(tmp, legacy, m); err != nil {
		return fmt.Errorf("spool: convert %s: %w", id, err)
	}
	if err := os.Rename(tmp, s.msgPath(id)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("spool: convert %s: %w", id, err)
	}
	if err := syncDir(s.queue); err != nil {
		return err
	}
	return nil // admit removes the legacy body once the message file checks out
}

// writeMessageFile copies the body at bodyPath into a new message file at path with m
// as its state, and fsyncs it.
func writeMessageFile(path, bodyPath string, m Message) error {
	body, err := os.Open(bodyPath)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return storageErr("create message", err)
	}
	_, err = io.Copy(f, body)
	if err == nil {
		_, err = appendState(f, nil, m)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return storageErr("write message", err)
	}
	return nil
}

// quarantine moves an entry's files to corrupt/, out of delivery but kept for a human,
// and logs why.
func (s *Spool) quarantine(id, reason string) error {
	dst := filepath.Join(s.dir, corruptDir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("spool: create quarantine dir: %w", err)
	}
	for _, ext := range []string{msgExt, stateExt, legacyBodyExt} {
		name := id + ext
		err := os.Rename(filepath.Join(s.queue, name), filepath.Join(dst, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: quarantine %s: %w", name, err)
		}
	}
	if err := syncDir(dst); err != nil {
		return err
	}
	s.log.Error("spool: quarantined inconsistent message", "id", id, "reason", reason, "dir", dst)
	return nil
}
