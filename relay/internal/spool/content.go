package spool

import "io"

// Content returns m as a whole, as delivery sends it and as DSNs and the queue admin
// read its header: m.Envelope.Prepend followed by the stored body, which body reads
// (the file OpenBody returns). Its Size is len(Prepend) + m.Size. Each caller that
// reads it concurrently with another takes its own io.NewSectionReader of it, since
// ReadAt is safe to share and Read is not.
func Content(m Message, body io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(prefixed{prefix: m.Envelope.Prepend, body: body}, 0, m.ContentSize())
}

// ContentSize is the size of m as a whole (Content): the prefix and the body.
func (m Message) ContentSize() int64 { return int64(len(m.Envelope.Prepend)) + m.Size }

// prefixed reads prefix, then body from its start, as one stream.
type prefixed struct {
	prefix string
	body   io.ReaderAt
}

func (p prefixed) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(p.prefix)) {
		n = copy(b, p.prefix[off:])
		if n == len(b) {
			return n, nil
		}
		off = int64(len(p.prefix))
	}
	m, err := p.body.ReadAt(b[n:], off-int64(len(p.prefix)))
	return n + m, err
}
