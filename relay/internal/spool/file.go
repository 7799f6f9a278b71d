package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// stateVersion is the version of the state file format; Open refuses others.
const stateVersion = 1

// stateFile is the on-disk form of queue/ID.json.
type stateFile struct {
	Version int     `json:"version"`
	Message Message `json:"message"`
}

// writeState writes m to a new file at path and fsyncs it; the caller renames it into
// place. The file is removed again on any error.
func writeState(path string, m Message) error {
	f, err := createState(path, m)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return storageErr("sync state", err)
	}
	return nil
}

// createState writes m to a new file at path and returns it open and not yet synced.
// The file is removed again on any error.
func createState(path string, m Message) (*os.File, error) {
	data, err := json.Marshal(stateFile{Version: stateVersion, Message: m})
	if err != nil {
		return nil, fmt.Errorf("spool: encode state %s: %w", m.ID, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, storageErr("create state", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, storageErr("write state", err)
	}
	return f, nil
}

// readState reads and checks a state file.
func readState(path string) (Message, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Message{}, fmt.Errorf("spool: read state: %w", err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return Message{}, fmt.Errorf("spool: decode state %s: %w", path, err)
	}
	if sf.Version != stateVersion {
		return Message{}, fmt.Errorf("spool: state %s has version %d, want %d", path, sf.Version, stateVersion)
	}
	return sf.Message, nil
}

// syncDir fsyncs a directory, making renames and unlinks in it durable.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool: open dir for sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return storageErr("sync dir", err)
	}
	return nil
}

// storageErr wraps err with what failed, and with ErrInsufficientStorage when the disk
// or the quota is full.
func storageErr(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("spool: %s: %w: %w", what, ErrInsufficientStorage, err)
	}
	return fmt.Errorf("spool: %s: %w", what, err)
}
