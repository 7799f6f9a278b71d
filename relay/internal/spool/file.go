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
	data, err := json.Marshal(stateFile{Version: stateVersion, Message: m})
	if err != nil {
		return fmt.Errorf("spool: encode state %s: %w", m.ID, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return storageErr("create state", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return storageErr("write state", err)
	}
	return nil
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
