package spool

import "sync"

// freeFiles are message files of removed messages kept for reuse: an accept writes its
// message over one of them instead of creating a file, and Remove moves a message file
// here instead of unlinking it. A file creation and an unlink are the costliest system
// calls of a message's life on some filesystems: on ext4 without a journal, for one,
// allocating an inode skips the recently deleted ones by reading each, which under a
// steady stream of messages is a tenth of the relay's CPU. Renames cost the same either
// way. A reused file is written from its start, cut to the new message's length and
// fsync'd before it is renamed into the queue, as a new one is, so it never shows a
// byte of the message it held; until then it is only in free/, which Open empties.
//
// A file is taken into the pool only once the directory fsync that made its removal
// from the queue durable has returned, so a crash can never leave a queue entry that
// names a file already holding another message.
type freeFiles struct {
	mu    sync.Mutex
	files []freeFile
}

type freeFile struct {
	path string
	size int64 // what it holds now
}

const (
	// maxFreeFiles bounds the pool: more than the messages in flight between accept and
	// removal at a few thousand a second, and a few megabytes of disk.
	maxFreeFiles = 256
	// maxFreeFileSize keeps large messages' files out of the pool, so it never holds
	// much disk space; reusing them would save little.
	maxFreeFileSize = 256 << 10
)

// wants reports whether a removed message file of size bytes should go to the pool,
// with pending more already on their way there.
func (p *freeFiles) wants(size int64, pending int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return size <= maxFreeFileSize && len(p.files)+pending < maxFreeFiles
}

func (p *freeFiles) put(f freeFile) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = append(p.files, f)
}

// take returns the file most recently freed, whose blocks are the likeliest cached.
func (p *freeFiles) take() (freeFile, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.files) == 0 {
		return freeFile{}, false
	}
	f := p.files[len(p.files)-1]
	p.files = p.files[:len(p.files)-1]
	return f, true
}
