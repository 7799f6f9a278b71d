package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// recover empties tmp/, deletes orphan bodies, quarantines inconsistent entries and
// indexes every complete message. It runs in Open, before any writer exists.
func (s *Spool) recover() error {
	tmps, err := os.ReadDir(s.tmp)
	if err != nil {
		return fmt.Errorf("spool: scan tmp: %w", err)
	}
	for _, de := range tmps {
		if err := os.RemoveAll(filepath.Join(s.tmp, de.Name())); err != nil {
			return fmt.Errorf("spool: remove half-written file: %w", err)
		}
	}
	if len(tmps) > 0 {
		s.log.Info("spool: removed half-written files", "count", len(tmps))
	}

	des, err := os.ReadDir(s.queue)
	if err != nil {
		return fmt.Errorf("spool: scan queue: %w", err)
	}
	bodies := make(map[string]int64)
	var states []string
	for _, de := range des {
		name := de.Name()
		id, ext, _ := strings.Cut(name, ".")
		switch {
		case !validID(id) || !de.Type().IsRegular():
			s.log.Warn("spool: ignoring unexpected file in queue", "name", name)
		case "."+ext == bodyExt:
			info, err := de.Info()
			if err != nil {
				return fmt.Errorf("spool: stat %s: %w", name, err)
			}
			bodies[id] = info.Size()
		case "."+ext == stateExt:
			states = append(states, id)
		default:
			s.log.Warn("spool: ignoring unexpected file in queue", "name", name)
		}
	}

	for _, id := range states {
		m, err := readState(s.statePath(id))
		size, hasBody := bodies[id]
		delete(bodies, id)
		var reason string
		switch {
		case err != nil:
			reason = err.Error()
		case m.ID != id:
			reason = fmt.Sprintf("state names id %q", m.ID)
		case !hasBody:
			reason = "body missing"
		case size != m.Size:
			reason = fmt.Sprintf("body has %d bytes, state says %d", size, m.Size)
		default:
			s.idx.put(id, keyOf(m), m.Size)
			t := tallyOf(m)
			t.attempting = false // nothing is in flight after a restart
			s.idx.setTally(id, t)
			continue
		}
		if err := s.quarantine(id); err != nil {
			return err
		}
		s.log.Error("spool: quarantined inconsistent message", "id", id, "reason", reason,
			"dir", filepath.Join(s.dir, corruptDir))
	}

	// Bodies left over have no state: a crash between Accept's renames or Remove's
	// unlinks. They were never acknowledged, or already delivered.
	for id := range bodies {
		if err := os.Remove(s.bodyPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: remove orphan body: %w", err)
		}
	}
	if len(bodies) > 0 {
		s.log.Info("spool: removed orphan bodies", "count", len(bodies))
	}
	return nil
}

// quarantine moves an entry's files to corrupt/, out of delivery but kept for a human.
func (s *Spool) quarantine(id string) error {
	dst := filepath.Join(s.dir, corruptDir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("spool: create quarantine dir: %w", err)
	}
	for _, name := range []string{id + stateExt, id + bodyExt} {
		err := os.Rename(filepath.Join(s.queue, name), filepath.Join(dst, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: quarantine %s: %w", name, err)
		}
	}
	return syncDir(dst)
}
