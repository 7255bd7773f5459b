package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// WriterSink writes entries as JSON lines ({"seq","hash","prev","auditEvent"}, the file sink's
// format) to a stream, typically os.Stdout for a container's log collector. Each batch is one
// Write of whole lines, so lines never interleave with other writers of the stream that also
// write whole lines at once.
type WriterSink struct {
	name string
	mu   sync.Mutex
	w    io.Writer
}

// NewWriterSink returns a sink named name writing to w; Close does not close w.
func NewWriterSink(name string, w io.Writer) *WriterSink { return &WriterSink{name: name, w: w} }

// Name implements Sink.
func (s *WriterSink) Name() string { return s.name }

// Write implements Sink.
func (s *WriterSink) Write(_ context.Context, entries []Entry) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("audit: %s sink: %w", s.name, err)
	}
	return nil
}

// Close implements Sink.
func (s *WriterSink) Close() error { return nil }
