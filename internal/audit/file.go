package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// FileSink writes entries as JSON lines ({"seq","hash","prev","auditEvent"}) to a file, rotating
// it when it would grow past MaxBytes: path becomes path.1, path.1 becomes path.2, and so on up to
// MaxFiles old files.
type FileSink struct {
	path     string
	maxBytes int64
	maxFiles int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// NewFileSink opens (appending) or creates path with mode 0600. maxBytes <= 0 disables rotation;
// maxFiles <= 0 keeps one old file.
func NewFileSink(path string, maxBytes int64, maxFiles int) (*FileSink, error) {
	if maxFiles <= 0 {
		maxFiles = 1
	}
	s := &FileSink{path: path, maxBytes: maxBytes, maxFiles: maxFiles}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: file sink: %w", err)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: file sink: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: file sink: %w", err)
	}
	s.f, s.size = f, fi.Size()
	return nil
}

// Name implements Sink.
func (s *FileSink) Name() string { return "file" }

// Write implements Sink. Each batch is written and flushed to the OS before Write returns.
func (s *FileSink) Write(_ context.Context, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return fmt.Errorf("audit: file sink closed")
	}
	w := bufio.NewWriter(s.f)
	for _, e := range entries {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		line = append(line, '\n')
		if s.maxBytes > 0 && s.size > 0 && s.size+int64(len(line)) > s.maxBytes {
			if err := w.Flush(); err != nil {
				return fmt.Errorf("audit: file sink: %w", err)
			}
			if err := s.rotate(); err != nil {
				return err
			}
			w.Reset(s.f)
		}
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("audit: file sink: %w", err)
		}
		s.size += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("audit: file sink: %w", err)
	}
	return nil
}

func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("audit: file sink: %w", err)
	}
	s.f = nil
	for i := s.maxFiles - 1; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", s.path, i)
		if _, err := os.Stat(from); err == nil {
			if err := os.Rename(from, fmt.Sprintf("%s.%d", s.path, i+1)); err != nil {
				return fmt.Errorf("audit: file sink rotate: %w", err)
			}
		}
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		return fmt.Errorf("audit: file sink rotate: %w", err)
	}
	return s.open()
}

// Close implements Sink.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
